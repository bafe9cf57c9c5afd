"""The one error the CLI reports: a sentence for the operator, printed on one line, never a traceback."""

from __future__ import annotations


class OpsError(Exception):
    """Something the operator must fix or know (bad input, unreachable API, refused request)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Exit codes: 1 = failed / bad input, 2 = usage (argparse), 3 = a scale-in is waiting for its
# shards to drain (re-run the same command to finish it).
EXIT_DRAINING = 3
