"""Registers, runs and checks every fixture of a directory against a running fleet."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec

from .checks import failures


class Outcome(msgspec.Struct):
    fixture: str
    passed: bool
    detail: str
    execution_id: str | None = None


class Runner:
    def __init__(self, api_url: str, directory: Path, *, scratch_dsn: str | None, pg_credential: dict | None,
                 available: set[str], timeout: float = 120.0) -> None:
        self.api = api_url.rstrip("/")
        self.dir = directory
        self.index = json.loads((directory / "index.json").read_text())
        self.scratch_dsn = scratch_dsn
        self.pg_credential = pg_credential
        self.available = available
        self.timeout = timeout
        self.executions: dict[str, str] = {}

    async def run(self, only: set[str] | None = None) -> list[Outcome]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as self.http:
            if self.pg_credential:
                for name in ("pg_local", "pg_k8s"):
                    await self.post("/api/credentials", {"name": name, "type": "postgres", "data": self.pg_credential})
            results = []
            for fixture in self.index["fixtures"]:
                if only and fixture["id"] not in only:
                    continue
                results.append(await self.run_fixture(fixture))
            return results

    async def post(self, path: str, body: dict) -> tuple[int, Any]:
        async with self.http.post(self.api + path, json=body) as r:
            return r.status, await r.json(content_type=None)

    async def register(self, relative: str) -> tuple[int, Any]:
        content = (self.dir / relative).read_bytes()
        return await self.post("/api/catalog/register", {"content": base64.b64encode(content).decode(),
                                                         "resource_type": "Playbook"})

    async def run_fixture(self, fixture: dict) -> Outcome:
        fid = fixture["id"]
        missing = set(fixture.get("needs") or []) - self.available
        if missing:
            return Outcome(fid, False, f"needs {', '.join(sorted(missing))}, not available in this run")
        try:
            for extra in fixture.get("register_first") or []:
                status, body = await self.register(extra)
                if status != 200:
                    return Outcome(fid, False, f"register_first {extra}: {status} {body}")
            for earlier in fixture.get("run_first") or []:
                if earlier not in self.executions:
                    dep = next(f for f in self.index["fixtures"] if f["id"] == earlier)
                    first = await self.run_fixture(dep)
                    if not first.passed:
                        return Outcome(fid, False, f"run_first {earlier} failed: {first.detail}")
            status, body = await self.register(fixture["file"])
            if status != 200:
                if fixture.get("rejected_ok") and 400 <= status < 500:
                    return Outcome(fid, True, f"rejected at registration ({status}), as allowed")
                return Outcome(fid, False, f"register: {status} {body}")
            status, started = await self.post("/api/execute", {"path": body["path"],
                                                               "workload": fixture.get("payload") or {}})
            if status != 200:
                return Outcome(fid, False, f"execute: {status} {started}")
            execution_id = started["execution_id"]
            self.executions[fid] = execution_id
            final = await self.wait(execution_id)
            sql_rows = await self.sql(fixture, execution_id) if fixture.get("sql") else None
            problems = failures(fixture, final["status"], final.get("steps") or {}, final.get("issued") or {},
                                sql_rows)
            problems += await self.replay_problems(execution_id)
            if problems:
                detail = "; ".join(problems)
                if final.get("error"):
                    detail += f" (error: {str(final['error'])[:300]})"
                return Outcome(fid, False, detail, execution_id)
            return Outcome(fid, True, final["status"], execution_id)
        except Exception as exc:  # one broken fixture must not stop the suite
            return Outcome(fid, False, f"{type(exc).__name__}: {exc}")

    async def replay_problems(self, execution_id: str) -> list[str]:
        """The event log folded again must give the stored engine state and data (a logged event
        read differently by ingest and by replay shows up here)."""
        async with self.http.get(f"{self.api}/api/replay/state", params={"execution_id": execution_id}) as r:
            body = await r.json(content_type=None)
        if r.status != 200:
            return [f"replay: {r.status} {body}"]
        if body.get("matches") and body.get("data_checksum") == body.get("stored_data_checksum"):
            return []
        return [f"replay does not match the stored state and data: {body}"]

    async def wait(self, execution_id: str) -> dict:
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            async with self.http.get(f"{self.api}/api/executions/{execution_id}/status",
                                     params={"steps": "true"}) as r:
                body = await r.json()
            if body.get("completed"):
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"execution {execution_id} not terminal after {self.timeout:.0f}s "
                                   f"(status {body.get('status')})")
            await asyncio.sleep(0.1)

    async def sql(self, fixture: dict, execution_id: str) -> list[list[dict]]:
        conn = await asyncpg.connect(self.scratch_dsn)
        try:
            out = []
            for check in fixture["sql"]:
                rows = await conn.fetch(check["query"].replace("{execution_id}", execution_id))
                out.append([dict(r) for r in rows])
            return out
        finally:
            await conn.close()
