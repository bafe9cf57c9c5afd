"""The e2e paginated server's `/api/v1/patient-records` (pagination/fetch_load_test): per patient
a FHIR-like searchset of `pageSize` entries per page, 2-5 pages (fixed by the patient id), each
answered after a delay between `min_delay` and `max_delay` seconds and padded to about
`payload_kb` KB; past the last page 404; more than `rate_limit` requests in a second 429 with
Retry-After. Same patient, same pages, so a rerun fetches the same counts."""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any

from aiohttp import web

from .state import RateWindow

RATE = web.AppKey("patient_records_rate", RateWindow)
MAX_DELAY = 30.0
MAX_PAYLOAD_KB = 1024


def total_pages(patient_id: str) -> int:
    return 2 + zlib.crc32(patient_id.encode()) % 4


def page_body(patient_id: str, page: int, page_size: int, payload_kb: int) -> dict[str, Any]:
    pages = total_pages(patient_id)
    pad = "x" * (payload_kb * 1024 // max(page_size, 1))
    first = (page - 1) * page_size
    entry = [{"fullUrl": f"MedicationRequest/{patient_id}-{first + i + 1}",
              "resource": {"resourceType": "MedicationRequest", "id": f"{patient_id}-{first + i + 1}",
                           "status": "active", "subject": {"reference": f"Patient/{patient_id}"}, "note": pad}}
             for i in range(page_size)]
    return {"resourceType": "Bundle", "type": "searchset", "total": pages * page_size,
            "meta": {"patientId": patient_id, "page": page, "pageSize": page_size, "totalPages": pages},
            "entry": entry}


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    try:
        value = float(raw) if raw not in (None, "") else default
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"detail": "query parameter {name} must be a number"}}',
                                 content_type="application/json") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f'{{"detail": "query parameter {name} must be within {low:g}..{high:g}"}}',
                                 content_type="application/json")
    return value


async def patient_records(request: web.Request) -> web.Response:
    patient_id = request.query.get("patientId", "")
    if not patient_id:
        return web.json_response({"detail": "query parameter patientId is required"}, status=400)
    page = int(_number(request, "page", 1, 1, 10_000))
    page_size = int(_number(request, "pageSize", 10, 1, 1000))
    low = _number(request, "min_delay", 0.0, 0.0, MAX_DELAY)
    high = max(low, _number(request, "max_delay", low, 0.0, MAX_DELAY))
    payload_kb = int(_number(request, "payload_kb", 1, 0, MAX_PAYLOAD_KB))
    limit = int(_number(request, "rate_limit", 0, 0, 100_000))
    if limit:
        wait = request.app[RATE].admit(limit, time.monotonic())
        if wait is not None:
            return web.json_response({"detail": "Rate limit exceeded", "limit": limit}, status=429,
                                     headers={"Retry-After": str(max(1, int(wait) + 1))})
    if page > total_pages(patient_id):
        return web.json_response({"detail": f"page {page} not found for patient {patient_id}"}, status=404)
    spread = zlib.crc32(f"{patient_id}/{page}".encode()) % 1000 / 1000
    await asyncio.sleep(low + (high - low) * spread)
    return web.json_response(page_body(patient_id, page, page_size, payload_kb))


def add_routes(app: web.Application) -> None:
    app[RATE] = RateWindow()
    app.router.add_get("/api/v1/patient-records", patient_records)
