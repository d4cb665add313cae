"""Stage tasks, step strategies and the run's context.

``run_lifecycle`` runs one phase's stages as Prefect tasks; ``Runtime`` is what a run's
phases share; ``step_strategy`` registers a custom step kind.
"""

from __future__ import annotations

from taskmark.tasks._context import PhaseFailed, PhaseOutcome, StageResult
from taskmark.tasks._lifecycle import run_lifecycle
from taskmark.tasks._preview import StepPreview, preview_context
from taskmark.tasks._runtime import CURRENT_RUNTIME, Runtime
from taskmark.tasks._strategies import step_strategy

__all__ = [
    "CURRENT_RUNTIME",
    "PhaseFailed",
    "PhaseOutcome",
    "Runtime",
    "StageResult",
    "StepPreview",
    "preview_context",
    "run_lifecycle",
    "step_strategy",
]
