"""The e2e test server's PFT and patient endpoints (noetl/e2e fixtures/servers/paginated_api.py),
for the pft_flow_test and patient_batch_parallel_queue playbooks: per-patient pages in the PCC
shape `{data, paging: {hasMore, page, pageSize, total}}`, demographics, MDS assessment ids and
details, and the batch endpoint that returns normalized rows for many patients at once.

Everything is a pure function of the request (page counts and values derive from an md5 of the
patient id and data type), so reruns see the same data. The per-patient and MDS endpoints share
the e2e server's 50 requests/second cap (429 with Retry-After: 1); the batch endpoint has none."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from aiohttp import web

from .state import RateWindow

PFT_RATE = web.AppKey("pft_rate", RateWindow)
RATE_LIMIT = 50  # requests per second, the e2e server's PFT_RATE_LIMIT default
MAX_BATCH = 500  # patient ids per batch request
# (fewest, most) pages per patient of each paginated data type
PAGE_BOUNDS = {"assessments": (2, 4), "conditions": (1, 3), "medications": (2, 3), "vital_signs": (1, 1)}


def _seed(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest(), 16)


def page_count(patient_id: str, data_type: str) -> int:
    low, high = PAGE_BOUNDS[data_type]
    return low + _seed(f"{patient_id}:{data_type}") % (high - low + 1)


def records(patient_id: str, data_type: str, page: int, size: int) -> list[dict[str, Any]]:
    seed = _seed(f"{patient_id}:{data_type}:{page}")
    out: list[dict[str, Any]] = []
    for i in range(size):
        row: dict[str, Any] = {"id": f"{data_type[:4].upper()}-{patient_id}-p{page}-i{i}",
                               "patientId": str(patient_id), "dataType": data_type, "value": (seed + i) % 100}
        if data_type == "assessments":  # each assessment names the MDS assessments behind it
            count = 5 + (seed + i) % 6
            row["mdsAssessmentIds"] = [f"MDS-{patient_id}-p{page}-{i}-{n:02d}" for n in range(1, count + 1)]
            row["mdsCount"] = count
        out.append(row)
    return out


def demographics(patient_id: str) -> dict[str, Any]:
    seed = _seed(f"{patient_id}:demographics")
    return {"patientId": str(patient_id), "firstName": f"First{seed % 1000}", "lastName": f"Last{(seed >> 8) % 1000}",
            "dob": f"19{50 + seed % 50}-{1 + seed % 12:02d}-{1 + (seed >> 4) % 28:02d}",
            "gender": "M" if seed % 2 == 0 else "F", "status": "active"}


def mds_detail(assessment_id: str) -> dict[str, Any]:
    seed = _seed(assessment_id)
    return {"assessmentId": assessment_id, "status": "completed",
            "sections": [{"sectionId": f"S{s}",
                          "questions": [{"key": f"B{s}0{q}", "responses": [{"responseValue": str((seed + s * 10 + q) % 5)}]}
                                        for q in range(1, 4)]}
                         for s in range(1, 4)]}


def facility_of(patient_id: int, per_facility: int) -> int:
    """Facility N holds patients (N-1)*per_facility+1 .. N*per_facility."""
    return (patient_id - 1) // max(1, per_facility) + 1


def batch_rows(data_type: str, patient_ids: list[int], page_size: int, per_facility: int) -> list[dict[str, Any]]:
    """The batch endpoint's rows: every page of every patient (paginated types), one row per
    patient (demographics), or the detail of the MDS assessment of its last assessments page."""
    rows: list[dict[str, Any]] = []
    for pid in patient_ids:
        facility = facility_of(pid, per_facility)
        if data_type in PAGE_BOUNDS:
            pages = page_count(str(pid), data_type)
            rows += [{"patient_id": pid, "facility_mapping_id": facility, "page_number": page,
                      "payload": {"data": records(str(pid), data_type, page, page_size),
                                  "paging": {"hasMore": page < pages, "page": page, "pageSize": page_size,
                                             "total": pages * page_size}},
                      "is_last_page": page == pages} for page in range(1, pages + 1)]
        elif data_type == "demographics":
            rows.append({"patient_id": pid, "facility_mapping_id": facility, "payload": demographics(str(pid))})
        else:  # mds
            assessment_id = f"MDS-{pid}-{page_count(str(pid), 'assessments')}"
            rows.append({"patient_id": pid, "facility_mapping_id": facility, "assessment_id": assessment_id,
                         "payload": mds_detail(assessment_id)})
    return rows


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


def _int_param(request: web.Request, name: str, default: int | None, minimum: int = 1) -> int:
    raw = request.query.get(name)
    if raw in (None, ""):
        if default is None:
            raise web.HTTPUnprocessableEntity(text=f'{{"detail": "query parameter {name} is required"}}',
                                              content_type="application/json")
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise web.HTTPUnprocessableEntity(
            text=f'{{"detail": "query parameter {name} must be an integer >= {minimum}, got {raw!r}"}}',
            content_type="application/json")
    return value


def _patient_id(request: web.Request) -> str:
    patient = request.query.get("patientId", "")
    if not patient:
        raise web.HTTPUnprocessableEntity(text='{"detail": "query parameter patientId is required"}',
                                          content_type="application/json")
    return patient


def _admit(request: web.Request) -> None:
    if request.app[PFT_RATE].admit(RATE_LIMIT, time.monotonic()) is not None:
        raise web.HTTPTooManyRequests(text='{"detail": "Too Many Requests"}', content_type="application/json",
                                      headers={"Retry-After": "1"})


async def patient_pages(request: web.Request) -> web.Response:
    """One record per page; a page past the patient's last is a 404."""
    _admit(request)
    data_type, patient = request.match_info["data_type"], _patient_id(request)
    page = _int_param(request, "page", 1)
    pages = page_count(patient, data_type)
    if page > pages:
        return web.json_response({"error": "page not found"}, status=404)
    return web.json_response({"data": records(patient, data_type, page, 1),
                              "paging": {"hasMore": page < pages, "page": page, "pageSize": 1, "total": pages}})


async def patient_demographics(request: web.Request) -> web.Response:
    _admit(request)
    return web.json_response(demographics(_patient_id(request)))


async def mds_ids(request: web.Request) -> web.Response:
    _admit(request)
    patient = _patient_id(request)
    count = 2 + _seed(f"{patient}:mds") % 4
    return web.json_response({"patientId": patient, "assessmentIds": [f"MDS-{patient}-{i:03d}" for i in range(1, count + 1)],
                              "count": count})


async def mds_assessment(request: web.Request) -> web.Response:
    _admit(request)
    return web.json_response(mds_detail(request.match_info["assessment_id"]))


async def pft_mds_details(request: web.Request) -> web.Response:
    """Deliberately one assessment per request, as the real API answers."""
    _admit(request)
    assessment = request.query.get("assessmentId", "").strip()
    if not assessment:
        return _detail(400, "assessmentId must contain one assessment id")
    if "," in assessment:
        return _detail(400, "assessmentId must contain exactly one assessment id")
    return web.json_response({"rowCount": 1, "rows": [{"assessment_id": assessment, "payload": mds_detail(assessment)}]})


async def pft_batch(request: web.Request) -> web.Response:
    data_type = request.match_info["data_type"]
    if data_type not in {*PAGE_BOUNDS, "demographics", "mds"}:
        return _detail(400, f"unsupported PFT batch data_type: {data_type}")
    raw = request.query.get("patientIds")
    if raw is None:
        return _detail(422, "query parameter patientIds is required")
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        return _detail(400, "patientIds must be comma-separated integers")
    if not ids:
        return _detail(400, "patientIds must contain at least one patient id")
    if len(ids) > MAX_BATCH:
        return _detail(400, f"patientIds batch size must be <= {MAX_BATCH}")
    rows = batch_rows(data_type, ids, _int_param(request, "pageSize", 10),
                      _int_param(request, "patientsPerFacility", 1000))
    return web.json_response({"dataType": data_type, "patientCount": len(ids), "rowCount": len(rows), "rows": rows})


def add_routes(app: web.Application) -> None:
    app[PFT_RATE] = RateWindow()
    v1 = "/api/v1"
    app.router.add_get(f"{v1}/patient/demographics", patient_demographics)
    app.router.add_get(v1 + "/patient/{data_type:assessments|conditions|medications|vital_signs}", patient_pages)
    app.router.add_get(f"{v1}/mds/assessment_ids", mds_ids)
    app.router.add_get(v1 + "/mds/assessment/{assessment_id}", mds_assessment)
    app.router.add_get(f"{v1}/pft/mds/details", pft_mds_details)
    app.router.add_get(v1 + "/pft/batch/{data_type}", pft_batch)
