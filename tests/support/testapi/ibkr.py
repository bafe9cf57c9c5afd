"""A stand-in for the Interactive Brokers Client Portal gateway (its Web API v1 as IB documents it,
for the paths the interactive_brokers playbooks call): session status (`/iserver/auth/status`,
`/tickle`, `/sso/validate`, `/logout`, `/v1/portal/iserver/reauthenticate`), portfolio accounts,
ledger and positions, open orders, futures contracts and historical bars, for one paper account.
The session starts authenticated (as after a browser login to the gateway); `/logout` ends it and
a reauthentication brings it back. Market data is generated from the contract id, the same on every run."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from aiohttp import web

ACCOUNT = "DU1234567"
SERVER_INFO = {"serverName": "StandInGateway", "serverVersion": "Build 10.30.0, Jan 1 2026"}
MAX_BARS = 1000  # IB answers at most 1000 bars per request
UNIT_SECONDS = {"min": 60, "mins": 60, "h": 3600, "hrs": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400,
                "y": 365 * 86400}
BASE_TIME_MS = 1767225600000  # 2026-01-01T00:00:00Z: bars end here, so every run sees the same ones


class Session:
    def __init__(self) -> None:
        self.authenticated = True


SESSION = web.AppKey("ibkr_session", Session)


def duration_seconds(text: str) -> int | None:
    """IB's period/bar spellings (`2d`, `5mins`, `1h`, `1w`) -> seconds; None when not one."""
    match = re.fullmatch(r"(\d+)\s*(mins?|hrs?|h|d|w|m|y)", text.strip().lower())
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)] if match else None


def _seed(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest(), 16)


def auth_status(session: Session) -> dict[str, Any]:
    return {"authenticated": session.authenticated, "competing": False, "connected": True,
            "message": "", "MAC": "00:00:5E:00:53:01", "serverInfo": SERVER_INFO, "fail": ""}


def futures(symbol: str, exchange: str) -> list[dict[str, Any]]:
    """The next four quarterly contracts of `symbol` (IB: conid, underlyingConid, expirationDate, ltd)."""
    base = 100000000 + _seed(f"{symbol}:{exchange}") % 800000000
    expiries = [20260227, 20260529, 20260828, 20261127]
    return [{"symbol": symbol, "conid": base + i, "underlyingConid": base - 1,
             "expirationDate": day, "ltd": day - 1} for i, day in enumerate(expiries)]


def history(conid: int, period: str, bar: str) -> dict[str, Any] | None:
    period_s, bar_s = duration_seconds(period), duration_seconds(bar)
    if not period_s or not bar_s:
        return None
    count = min(max(period_s // bar_s, 1), MAX_BARS)
    seed = _seed(str(conid))
    price = 2.5 + (seed % 200) / 100
    bars = []
    for i in range(count):
        step = ((seed >> (i % 64)) % 11 - 5) / 1000
        open_, close = round(price, 3), round(price + step, 3)
        bars.append({"o": open_, "c": close, "h": round(max(open_, close) + 0.004, 3),
                     "l": round(min(open_, close) - 0.004, 3), "v": 50 + (seed + i) % 400,
                     "t": BASE_TIME_MS - (count - i) * bar_s * 1000})
        price = close
    return {"serverId": f"{seed % 100000}", "symbol": "", "text": "", "priceFactor": 1000,
            "startTime": "", "high": f"{max(b['h'] for b in bars)}", "low": f"{min(b['l'] for b in bars)}",
            "timePeriod": period, "barLength": bar_s, "mdAvailability": "S", "mktDataDelay": 0,
            "outsideRth": False, "volumeFactor": 1, "priceDisplayRule": 1, "priceDisplayValue": "3",
            "negativeCapable": False, "messageVersion": 2, "data": bars, "points": len(bars) - 1, "travelTime": 12}


def _not_authenticated() -> web.Response:
    return web.json_response({"error": "not authenticated", "statusCode": 401}, status=401)


async def status(request: web.Request) -> web.Response:
    return web.json_response(auth_status(request.app[SESSION]))


async def tickle(request: web.Request) -> web.Response:
    session = request.app[SESSION]
    return web.json_response({"session": "f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6", "ssoExpires": 460000,
                              "collission": False, "userId": 12345678, "hmds": {"error": "no bridge"},
                              "iserver": {"authStatus": auth_status(session)}})


async def sso_validate(request: web.Request) -> web.Response:
    return web.json_response({"USER_ID": 12345678, "USER_NAME": "standin", "RESULT": True, "AUTH_TIME": 1767225600000,
                              "SF_ENABLED": False, "IS_FREE_TRIAL": False, "CREDENTIAL": "standin", "IP": "127.0.0.1",
                              "EXPIRES": 415000, "QUALIFIED_FOR_MOBILE_AUTH": None, "LANDING_APP": "UNIVERSAL",
                              "IS_MASTER": False, "lastAccessed": 1767225600000, "loginType": 2,
                              "PAPER_USER_NAME": "standin", "region": "NJ"})


async def logout(request: web.Request) -> web.Response:
    request.app[SESSION].authenticated = False
    return web.json_response({"status": True})


async def reauthenticate(request: web.Request) -> web.Response:
    request.app[SESSION].authenticated = True
    return web.json_response({"message": "triggered"})


async def accounts(request: web.Request) -> web.Response:
    if not request.app[SESSION].authenticated:
        return _not_authenticated()
    return web.json_response([{"id": ACCOUNT, "accountId": ACCOUNT, "accountVan": ACCOUNT, "accountTitle": "Paper Trading",
                               "displayName": ACCOUNT, "accountAlias": None, "currency": "USD", "type": "DEMO",
                               "tradingType": "PMRGN", "faclient": False, "clearingStatus": "O", "covestor": False,
                               "desc": ACCOUNT}])


def _account(request: web.Request) -> web.Response | None:
    if not request.app[SESSION].authenticated:
        return _not_authenticated()
    if request.match_info["account"] != ACCOUNT:
        return web.json_response({"error": f"account {request.match_info['account']} not found"}, status=404)
    return None


async def ledger(request: web.Request) -> web.Response:
    if (refused := _account(request)) is not None:
        return refused

    def entry(currency: str) -> dict[str, Any]:
        return {"commoditymarketvalue": 0.0, "futuremarketvalue": 0.0, "settledcash": 1000000.0, "exchangerate": 1,
                "sessionid": 1, "cashbalance": 1000000.0, "corporatebondsmarketvalue": 0.0, "warrantsmarketvalue": 0.0,
                "netliquidationvalue": 1012500.0, "interest": 0.0, "unrealizedpnl": 2500.0, "stockmarketvalue": 12500.0,
                "moneyfunds": 0.0, "currency": currency, "realizedpnl": 0.0, "funds": 0.0, "acctcode": ACCOUNT,
                "issueroptionsmarketvalue": 0.0, "key": "LedgerList", "timestamp": 1767225600, "severity": 0}
    return web.json_response({"USD": entry("USD"), "BASE": entry("BASE")})


async def positions(request: web.Request) -> web.Response:
    if (refused := _account(request)) is not None:
        return refused
    if request.match_info["page"] != "0":  # one page of positions: later pages are empty
        return web.json_response([])
    return web.json_response([{"acctId": ACCOUNT, "conid": 265598, "contractDesc": "AAPL", "position": 50.0,
                               "mktPrice": 250.0, "mktValue": 12500.0, "currency": "USD", "avgCost": 200.0,
                               "avgPrice": 200.0, "realizedPnl": 0.0, "unrealizedPnl": 2500.0, "assetClass": "STK",
                               "ticker": "AAPL"}])


async def orders(request: web.Request) -> web.Response:
    if not request.app[SESSION].authenticated:
        return _not_authenticated()
    return web.json_response({"orders": [], "snapshot": True})


async def trsrv_futures(request: web.Request) -> web.Response:
    symbols = [s for s in request.query.get("symbols", "").split(",") if s]
    if not symbols:
        return web.json_response({"error": "symbols is required"}, status=400)
    exchange = request.query.get("exchange", "")
    return web.json_response({s: futures(s, exchange) for s in symbols})


async def market_history(request: web.Request) -> web.Response:
    if not request.app[SESSION].authenticated:
        return _not_authenticated()
    raw = request.query.get("conid", "")
    if not raw.isdigit():
        return web.json_response({"error": "conid must be a contract id (digits)"}, status=400)
    answer = history(int(raw), request.query.get("period", "1d"), request.query.get("bar", "1min"))
    if answer is None:
        return web.json_response({"error": "period and bar must be like 2d and 5mins"}, status=400)
    return web.json_response(answer)


def add_routes(app: web.Application, prefix: str = "/v1/api") -> None:
    app[SESSION] = Session()
    app.router.add_get(f"{prefix}/iserver/auth/status", status)
    app.router.add_post(f"{prefix}/iserver/auth/status", status)
    app.router.add_get(f"{prefix}/tickle", tickle)
    app.router.add_post(f"{prefix}/tickle", tickle)
    app.router.add_get(f"{prefix}/sso/validate", sso_validate)
    app.router.add_post(f"{prefix}/logout", logout)
    app.router.add_post("/v1/portal/iserver/reauthenticate", reauthenticate)
    app.router.add_get(f"{prefix}/portfolio/accounts", accounts)
    app.router.add_get(prefix + "/portfolio/{account}/ledger", ledger)
    app.router.add_get(prefix + "/portfolio/{account}/positions/{page}", positions)
    app.router.add_get(f"{prefix}/iserver/account/orders", orders)
    app.router.add_get(f"{prefix}/trsrv/futures", trsrv_futures)
    app.router.add_get(f"{prefix}/iserver/marketdata/history", market_history)
