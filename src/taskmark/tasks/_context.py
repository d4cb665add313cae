"""What a stage hands back, what it reports as it ends, and how a phase ended.

A stage handler returns a :class:`StageResult`; the lifecycle keeps its ``data`` under the
stage's name and merges its ``flags`` into the phase's flags key by key, so no stage can
overwrite another's data. Each stage's end goes to the run record's writer as it happens; the
lifecycle returns one frozen :class:`PhaseOutcome`, which the phase
scheduler owns from then on. Nothing here is shared or mutated by two owners.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskmark.errors import TaskmarkError

__all__ = ["PhaseEnd", "PhaseFailed", "PhaseOutcome", "StageResult", "StageStatus"]

StageStatus = Literal["completed", "skipped", "failed"]
PhaseEnd = Literal["COMPLETED", "FAILED", "NOT_RUN", "TIMED_OUT"]


class StageResult(BaseModel):
    """What a stage handler returns."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    data: Any = Field(default=None, description="Stored under the phase and stage.")
    flags: dict[str, Any] = Field(default_factory=dict, description="Control flow, merged into the phase's flags.")
    logs: list[str] = Field(default_factory=list, description="Lines for the stage's log.")


class PhaseOutcome(BaseModel):
    """How one phase ended; made once, when it ends, and never changed."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The phase's name.")
    state: PhaseEnd = Field(description="COMPLETED, FAILED, NOT_RUN or TIMED_OUT.")
    outputs: Any = Field(default=None, description="The phase's outputs, fixed by integration.")
    flags: dict[str, Any] = Field(default_factory=dict, description="Flags merged from the stages.")
    error: str | None = Field(default=None, description="Why the phase did not complete.")
    duration_s: float = Field(default=0.0, description="Wall time of the phase.")
    failed_checks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per answer, the checks it still failed when a refine loop ended at its limit.",
    )
    approval: dict[str, Any] | None = Field(default=None, description="The approver's decision and note.")
    executed_branches: list[str] | None = Field(default=None, description="The branches a route step picked.")

    @property
    def outcome(self) -> str:
        """The state a user sees: ACCEPTED_WITH_ERRORS for a completed phase that failed checks."""
        return "ACCEPTED_WITH_ERRORS" if self.state == "COMPLETED" and self.failed_checks else self.state


class PhaseFailed(TaskmarkError):
    """A phase could not produce its outputs; the message says which stage and why."""

    def __init__(self, phase: str, stage: str, reason: str) -> None:
        self.phase, self.stage, self.reason = phase, stage, reason
        super().__init__(f"phase '{phase}' failed in {stage}: {reason}")
