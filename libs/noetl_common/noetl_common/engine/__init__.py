"""The orchestration engine: a pure function from (state, event) to (state, decisions), reading and
writing results and loop data through an ExecutionData the caller owns."""

from .core import apply, start
from .data import DataWrite, ExecutionData, LoopItems, LoopResult, StepResult
from .decisions import Decision, EmitEvent, Finish, IssueCommand, Release, StartChild
from .events import EngineEvent
from .replay import checksum, replay
from .state import State

__all__ = ["DataWrite", "Decision", "EmitEvent", "EngineEvent", "ExecutionData", "Finish", "IssueCommand", "Release",
           "LoopItems", "LoopResult", "StartChild", "State", "StepResult", "apply", "checksum", "replay", "start"]
