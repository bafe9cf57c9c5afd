"""The deterministic records every paginated endpoint serves (pure functions of the request)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

PAGE_SIZE = 10
TOTAL_ITEMS = 35          # four pages of ten: the last page is short, as the playbooks expect
HEAVY_TOTAL_ITEMS = 100
CHAIN_TOTAL_ITEMS = 382
CHAIN_MAX_DETAIL_ID = 20000


def window(page: int, size: int, total: int) -> tuple[int, int, bool]:
    """1-based page -> (start, end, has_more) over `total` items."""
    start = max(page - 1, 0) * size
    end = min(start + size, total)
    return start, end, start + size < total


def assessments(page: int, size: int) -> dict[str, Any]:
    start, end, more = window(page, size, TOTAL_ITEMS)
    items = [{"id": i, "name": f"Assessment {i}", "score": 50 + i % 50} for i in range(start + 1, end + 1)]
    return {"data": items, "paging": {"hasMore": more, "page": page, "pageSize": size, "total": TOTAL_ITEMS}}


def users(offset: int, limit: int) -> dict[str, Any]:
    items = [{"id": i, "username": f"user{i}", "email": f"user{i}@example.com"}
             for i in range(offset + 1, min(offset + limit, TOTAL_ITEMS) + 1)]
    return {"users": items, "has_more": offset + limit < TOTAL_ITEMS, "offset": offset, "limit": limit,
            "total": TOTAL_ITEMS}


def encode_cursor(page: int) -> str:
    return base64.b64encode(str(page).encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    """An opaque token to the client; a page number here. A token we did not mint restarts at 1."""
    if not cursor:
        return 1
    try:
        return max(int(base64.b64decode(cursor).decode()), 1)
    except ValueError:
        return 1


def events(cursor: str | None, limit: int) -> dict[str, Any]:
    page = decode_cursor(cursor)
    start, end, more = window(page, limit, TOTAL_ITEMS)
    items = [{"id": i, "type": "user_action", "timestamp": f"2024-01-{i % 28 + 1:02d}T12:00:00Z",
              "data": {"action": f"event_{i}"}} for i in range(start + 1, end + 1)]
    return {"events": items, "next_cursor": encode_cursor(page + 1) if more else None, "limit": limit}


def plain_page(page: int, **extra: Any) -> dict[str, Any]:
    """The page the failure-injection endpoints serve once they let a request through."""
    start, end, more = window(page, PAGE_SIZE, TOTAL_ITEMS)
    items = [{"id": i, "value": f"item_{i}", **extra} for i in range(start + 1, end + 1)]
    return {"data": items, "paging": {"hasMore": more, "page": page, "pageSize": PAGE_SIZE}}


def filler(kb: int, seed: str) -> str:
    """`kb` KiB of text that is the same on every run (no randomness in a conformance run)."""
    size = max(kb, 0) * 1024
    block = hashlib.sha256(seed.encode()).hexdigest()
    return (block * (size // len(block) + 1))[:size]


def heavy(page: int, size: int, payload_kb: int) -> dict[str, Any]:
    start, end, more = window(page, size, HEAVY_TOTAL_ITEMS)
    items = [{"id": i, "name": f"Heavy Assessment {i}", "score": 50 + i % 50,
              "category": ("finance", "technology", "healthcare", "education")[i % 4],
              "metadata": {"created_at": f"2024-01-{i % 28 + 1:02d}T12:00:00Z", "version": f"1.{i % 10}.0",
                           "tags": [f"tag_{t}" for t in range(5)]},
              "description": f"Detailed description for assessment {i}. " * 10,
              "payload": filler(payload_kb, f"heavy-{i}")} for i in range(start + 1, end + 1)]
    return {"data": items, "paging": {"hasMore": more, "page": page, "pageSize": size, "total": HEAVY_TOTAL_ITEMS},
            "meta": {"payload_kb_per_item": payload_kb}}


def chain(kind: str, current: int, mode: str, window_size: int) -> tuple[str, list[str]]:
    """References back from `current`: linked = [previous, current], windowed = the last N,
    expanded = all of them (grows without bound, on purpose)."""
    mode = mode if mode in ("linked", "windowed", "expanded") else "linked"
    first = 1 if mode == "expanded" else max(1, current - (window_size if mode == "windowed" else 2) + 1)
    return mode, [f"{kind}-{n:06d}" for n in range(first, current + 1)]


def chain_items(page: int, size: int, total: int, payload_kb: int, mode: str, window_size: int) -> dict[str, Any]:
    size, total, payload_kb = max(1, min(size, 200)), max(1, min(total, 20000)), max(0, min(payload_kb, 256))
    page = min(max(page, 1), (total + size - 1) // size)
    start, end, more = window(page, size, total)
    records = [{"record_id": r, "record_ref": f"record-{r:06d}", "prev_ref": f"record-{r - 1:06d}" if r > 1 else None,
                "batch": (r - 1) // size + 1, "payload": filler(payload_kb, f"item-{r}")}
               for r in range(start + 1, end + 1)]
    mode, refs = chain("page", page, mode, max(1, min(window_size, 50)))
    return {"data": records,
            "paging": {"hasMore": more, "page": page, "pageSize": size, "total": total,
                       "nextPage": page + 1 if more else None},
            "refs": {"mode": mode, "root_ref": "run-root-000001", "page_ref": f"page-{page:06d}",
                     "prev_page_ref": f"page-{page - 1:06d}" if page > 1 else None,
                     "next_page_ref": f"page-{page + 1:06d}" if more else None, "chain": refs,
                     "chain_length": len(refs)},
            "meta": {"payload_kb_per_record": payload_kb, "approx_response_kb": len(records) * payload_kb + 1}}


def chain_detail(record_id: int, payload_kb: int, mode: str, window_size: int, parent_ref: str) -> dict[str, Any]:
    payload_kb = max(0, min(payload_kb, 256))
    mode, refs = chain("detail", record_id, mode, max(1, min(window_size, 100)))
    return {"record_id": record_id, "status": "ok",
            "refs": {"mode": mode, "detail_ref": f"detail-{record_id:06d}",
                     "prev_detail_ref": f"detail-{record_id - 1:06d}" if record_id > 1 else None,
                     "parent_ref": parent_ref or None, "chain": refs, "chain_length": len(refs)},
            "summary": {"classification": f"class-{record_id % 7}", "score": 40 + record_id % 60,
                        "payload_kb": payload_kb},
            "payload": filler(payload_kb, f"detail-{record_id}")}
