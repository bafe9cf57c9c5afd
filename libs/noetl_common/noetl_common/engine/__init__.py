"""The orchestration engine: a pure function from (state, event) to (state, decisions)."""

from .core import apply, start
from .decisions import Decision, EmitEvent, Finish, IssueCommand, StartChild
from .events import EngineEvent
from .replay import checksum, replay
from .state import State

__all__ = ["Decision", "EmitEvent", "EngineEvent", "Finish", "IssueCommand", "StartChild", "State", "apply",
           "checksum", "replay", "start"]
