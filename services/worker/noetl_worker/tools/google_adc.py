"""Google access tokens from Application Default Credentials, for the http tool's
`auth: {source: adc}` (NoETL's Rust tools spell it `auth: {type: gcp_adc, scopes}`). google-auth
finds the credentials the way gcloud and Google's client libraries do: the file
GOOGLE_APPLICATION_CREDENTIALS names (a service account key, or gcloud's authorized user), then
gcloud's application_default_credentials.json, then the metadata server; the token comes from the
credentials' token_uri. A worker keeps one credentials object per set of scopes (`GoogleTokens`),
so a token is fetched again only when it nears expiry. Failures are `AdcError`s naming what is
missing or refused, never the key (the http tool makes them step errors)."""

from __future__ import annotations

import asyncio
from typing import Any

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"  # NoETL's default scope


class AdcError(Exception):
    """`kind`/`retryable` classify it as the http tool's failures are (`output.error`)."""

    def __init__(self, message: str, *, kind: str = "auth", retryable: bool = False) -> None:
        super().__init__(message)
        self.kind, self.retryable = kind, retryable


def adc_scopes(auth: Any) -> tuple[str, ...] | None:
    """The scopes an http `auth` asks ADC for; None when `auth` is not an ADC one."""
    if not isinstance(auth, dict):
        return None
    source, kind = str(auth.get("source") or "").lower(), str(auth.get("type") or "").lower()
    if source != "adc" and kind != "gcp_adc":
        return None
    scopes = auth.get("scopes", auth.get("scope"))
    if scopes is None:
        return (CLOUD_PLATFORM,)
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, (list, tuple)) or not scopes or not all(isinstance(s, str) and s for s in scopes):
        raise AdcError("http `auth.scopes` must be a list of OAuth scope URLs", kind="error")
    return tuple(scopes)


def _reason(exc: BaseException) -> str:
    """google-auth's message (and its cause's), without the nested reprs it packs into args."""
    parts = [a for a in exc.args if isinstance(a, str)]
    parts += [f"{type(a).__name__}: {a.args[0]}" for a in exc.args
              if isinstance(a, BaseException) and a.args and isinstance(a.args[0], str)]
    return ("; ".join(parts) or type(exc).__name__)[:300]


def _refreshed(credentials: Any, scopes: tuple[str, ...]) -> Any:
    """Blocking (google-auth's transport is requests): run in a thread."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests

    try:
        if credentials is None:
            credentials, _ = google.auth.default(scopes=list(scopes))
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise AdcError(f"no usable Application Default Credentials: {_reason(exc)}") from None
    try:
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as exc:
        # a refused grant is not worth retrying; the token endpoint out of reach may be
        retryable = not isinstance(exc, google.auth.exceptions.RefreshError) or bool(getattr(exc, "retryable", False))
        raise AdcError(f"could not get an access token: {_reason(exc)}", retryable=retryable) from None
    except Exception as exc:  # e.g. a credentials type google-auth cannot refresh this way
        raise AdcError(f"could not get an access token: {type(exc).__name__}: {_reason(exc)}") from None
    return credentials


class GoogleTokens:
    """One worker's ADC credentials, by scopes; a token is refreshed when google-auth says it is
    no longer valid (expired, or within its refresh margin)."""

    def __init__(self) -> None:
        self._credentials: dict[tuple[str, ...], Any] = {}
        self._lock = asyncio.Lock()

    async def access_token(self, scopes: tuple[str, ...], timeout: float) -> str:
        async with self._lock:  # concurrent steps wait for one refresh instead of each asking
            credentials: Any = self._credentials.get(scopes)
            if credentials is None or not credentials.valid:
                try:
                    credentials = await asyncio.wait_for(asyncio.to_thread(_refreshed, credentials, scopes), timeout)
                except TimeoutError:
                    raise AdcError(f"no access token within {timeout:g}s", kind="timeout", retryable=True) from None
                self._credentials[scopes] = credentials
            return str(credentials.token)
