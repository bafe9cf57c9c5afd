"""A component that failed to start, with the tail of its log so the cause is on screen."""

from __future__ import annotations

from pathlib import Path


class StartError(RuntimeError):
    def __init__(self, component: str, problem: str, log_file: Path | None = None) -> None:
        tail = ""
        if log_file and log_file.exists():
            lines = log_file.read_text(errors="replace").splitlines()[-25:]
            tail = f"\n--- last lines of {log_file} ---\n" + "\n".join(lines)
        super().__init__(f"{component} failed to start: {problem}{tail}")
        self.component = component
