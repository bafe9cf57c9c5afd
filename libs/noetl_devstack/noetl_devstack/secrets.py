"""Dev secrets made once and reused (credentials stay decryptable across runs); mode 0600."""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path


def load_or_create(path: Path) -> dict[str, str]:
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "NOETL_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "NOETL_INTERNAL_API_TOKEN": secrets.token_urlsafe(32),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle, indent=2)
    return values
