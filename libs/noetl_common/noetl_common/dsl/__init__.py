"""NoETL playbook DSL: typed model, parser with step/field-naming errors, templates."""

from .model import Arc, Loop, Playbook, Step
from .errors import PlaybookError
from .parser import ensure_end_step, parse_playbook

__all__ = ["Arc", "Loop", "Playbook", "PlaybookError", "Step", "ensure_end_step", "parse_playbook"]
