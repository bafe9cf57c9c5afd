"""`kind: shell`: run `command` (a string, or a list run one after another; also spelled `cmds`, the
list NoETL's Python worker reads, or `cmd`) with `/bin/sh -c` on the worker host. Result
`{stdout, stderr, exit_code}` (the last command's exit code); a non-zero exit or a timeout is a
ToolError carrying the stderr tail, so the step fails (semantics rule 1).
Config: `shell` (default /bin/sh), `cwd`, `env` (added to the worker's), `timeout_seconds`."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .base import ToolContext, ToolError

MAX_CAPTURE = 1 << 20  # per stream; the rest is cut (the outcome event must stay small)


async def run(config: dict[str, Any], inputs: dict[str, Any], ctx: ToolContext) -> Any:
    command = config.get("command") or config.get("cmds") or config.get("cmd")
    commands = command if isinstance(command, list) else [command]
    if not commands or not all(isinstance(c, str) and c.strip() for c in commands):
        raise ToolError("shell `command` (or `cmds`) must be a non-empty string or a list of strings")
    env = config.get("env") or {}
    if not isinstance(env, dict):
        raise ToolError("shell `env` must be a mapping of NAME: value")
    shell = str(config.get("shell") or "/bin/sh")
    timeout = float(config.get("timeout_seconds") or ctx.timeout_seconds)
    cwd = config.get("cwd") or None
    if cwd is not None and not os.path.isdir(str(cwd)):
        raise ToolError(f"shell `cwd` {cwd!r} is not a directory on the worker")
    out, err, code = [], [], 0
    for cmd in (str(c) for c in commands):
        stdout, stderr, code = await _one(shell, cmd, cwd, {**os.environ, **{str(k): str(v) for k, v in env.items()}},
                                          timeout)
        out.append(stdout)
        err.append(stderr)
        if code != 0:
            tail = stderr.strip()[-2000:] or stdout.strip()[-2000:]
            raise ToolError(f"shell command exited with {code}: {cmd[:200]!r}" + (f": {tail}" if tail else ""))
    return {"stdout": "".join(out), "stderr": "".join(err), "exit_code": code}


async def _one(shell: str, cmd: str, cwd: str | None, env: dict[str, str], timeout: float) -> tuple[str, str, int]:
    try:
        proc = await asyncio.create_subprocess_exec(shell, "-c", cmd, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    start_new_session=True)
    except OSError as exc:
        raise ToolError(f"shell {shell!r} could not start: {exc}") from None
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise ToolError(f"shell command timed out after {timeout:g}s: {cmd[:200]!r}") from None
    except asyncio.CancelledError:  # the step was cancelled or the worker is stopping: no orphans
        _kill_group(proc)
        raise
    return _text(stdout), _text(stderr), proc.returncode or 0


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, 9)  # the command's children too (it runs in its own session)
    except ProcessLookupError:
        pass


def _text(data: bytes) -> str:
    return data[:MAX_CAPTURE].decode(errors="replace")
