"""`GET /api/dashboard/stats` and `/api/dashboard/widgets`, shaped like NoETL's (the Python
server's flat counts and `stats`, plus the Rust server's cancelled/running/workers counts)."""

from __future__ import annotations

from typing import Any

import msgspec

# Counted per shard (its own executions): the router sums them. The rest are cluster-wide.
EXECUTION_COUNTS = ("total_executions", "successful_executions", "failed_executions", "cancelled_executions",
                    "running_executions", "pending_executions", "active_workflows")
CLUSTER_COUNTS = ("total_playbooks", "total_workers")


class DashboardStats(msgspec.Struct, kw_only=True):
    status: str = "ok"
    stats: dict[str, int]                # every count below, by name (NoETL's Python server has both)
    total_executions: int = 0
    successful_executions: int = 0       # COMPLETED
    failed_executions: int = 0
    cancelled_executions: int = 0
    running_executions: int = 0
    pending_executions: int = 0
    active_workflows: int = 0            # running + pending
    total_playbooks: int = 0             # latest versions, not archived
    total_workers: int = 0               # worker pools registered and not offline
    shards: dict[str, dict[str, int]] | None = None  # through the router: each shard's execution counts


class DashboardWidget(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    type: str
    title: str
    description: str | None = None
    config: dict[str, Any] | None = None


class DashboardWidgets(msgspec.Struct):
    widgets: list[DashboardWidget]
