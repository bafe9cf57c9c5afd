"""In-process tool runners shared by the simulator and the reference worker."""

from .pipeline import run_pipeline
from .python_tool import run_python
from .result import ToolResult

__all__ = ["ToolResult", "run_pipeline", "run_python"]
