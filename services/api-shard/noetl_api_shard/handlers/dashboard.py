"""NoETL's dashboard routes on one shard: this shard's execution counts and the cluster's
playbook and worker counts (the router sums the execution counts over the shards), and the
widget list NoETL's UI lays out."""

from __future__ import annotations

from aiohttp import web

from noetl_common.errors import json_response
from noetl_common.openapi import Op, route
from noetl_common.wire.dashboard import DashboardStats, DashboardWidget, DashboardWidgets

from ..state import services

WIDGETS = DashboardWidgets(widgets=[
    DashboardWidget(id="execution_stats", type="metric", title="Execution Statistics",
                    description="Execution counts by outcome"),
    DashboardWidget(id="recent_executions", type="table", title="Recent Executions",
                    description="The newest executions", config={"limit": 10}),
    DashboardWidget(id="execution_trend", type="chart", title="Execution Trend",
                    description="Executions over time", config={"timeRange": "24h", "chartType": "line"}),
    DashboardWidget(id="success_rate", type="metric", title="Success Rate",
                    description="Share of finished executions that completed"),
    DashboardWidget(id="active_playbooks", type="list", title="Active Playbooks",
                    description="Playbooks with executions under way", config={"limit": 5}),
])


def register(app: web.Application) -> None:
    route(app, "GET", "/api/dashboard/stats", stats, Op(
        summary="Execution, playbook and worker counts (through the router: every shard's executions)",
        ok=DashboardStats))
    route(app, "GET", "/api/dashboard/widgets", widgets, Op(summary="The dashboard's widgets", ok=DashboardWidgets))


async def stats(request: web.Request) -> web.Response:
    svc = services(request)
    by_status = {r["status"]: r["n"] for r in await svc.shard_pool.fetch(
        "SELECT status, count(*) AS n FROM noetl.execution GROUP BY status")}
    cluster = await svc.cluster_pool.fetchrow(
        """SELECT (SELECT count(DISTINCT path) FROM noetl.catalog
                    WHERE lower(kind) = 'playbook' AND archived_at IS NULL) AS playbooks,
                  (SELECT count(*) FROM noetl.runtime WHERE kind = 'worker_pool' AND status <> 'offline') AS workers""")
    counts = {
        "total_executions": sum(by_status.values()),
        "successful_executions": by_status.get("COMPLETED", 0),
        "failed_executions": by_status.get("FAILED", 0),
        "cancelled_executions": by_status.get("CANCELLED", 0),
        "running_executions": by_status.get("RUNNING", 0),
        "pending_executions": by_status.get("PENDING", 0),
        "active_workflows": by_status.get("RUNNING", 0) + by_status.get("PENDING", 0),
        "total_playbooks": cluster["playbooks"],
        "total_workers": cluster["workers"],
    }
    return json_response(DashboardStats(stats=counts, **counts))


async def widgets(request: web.Request) -> web.Response:
    return json_response(WIDGETS)
