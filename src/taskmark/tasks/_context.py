"""The run's state: inputs, each phase's outputs, each stage's result and status.

A stage handler returns a :class:`StageResult`; the runner stores its ``data`` under
``phase.stages[STAGE]`` and merges its ``flags`` into the phase's flags key by key, so no stage
can overwrite another's data. Records are appended or set in place: a merge costs what it
changes, never a copy of the whole context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = ["PhaseRecord", "StageRecord", "StageResult", "StageStatus"]

StageStatus = Literal["completed", "skipped", "failed"]
PhaseState = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "NOT_RUN", "TIMED_OUT"]


class StageResult(BaseModel):
    """What a stage handler returns."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    data: Any = Field(default=None, description="Stored under the phase and stage.")
    flags: dict[str, Any] = Field(default_factory=dict, description="Control flow, merged into the phase's flags.")
    logs: list[str] = Field(default_factory=list, description="Lines for the stage's log.")


class StageRecord(BaseModel):
    """One stage of one phase, as it ran (or did not)."""

    status: StageStatus = Field(description="completed, skipped or failed.")
    duration_s: float = Field(default=0.0, description="Wall time of the stage.")
    data: Any = Field(default=None, description="The stage's result data.")
    logs: list[str] = Field(default_factory=list, description="What the stage logged.")
    error: str | None = Field(default=None, description="Why it failed.")


class PhaseRecord(BaseModel):
    """One phase of a run."""

    name: str = Field(description="The phase's name.")
    state: PhaseState = Field(default="PENDING", description="Where the phase is.")
    outputs: Any = Field(default=None, description="The phase's outputs, fixed by integration.")
    stages: dict[str, StageRecord] = Field(default_factory=dict, description="Each stage's record, by stage.")
    flags: dict[str, Any] = Field(default_factory=dict, description="Flags merged from the stages.")
    error: str | None = Field(default=None, description="Why the phase failed.")
    started_at: float | None = Field(default=None, description="time.time() when it started.")
    duration_s: float = Field(default=0.0, description="Wall time of the phase.")
    executed_branches: list[str] | None = Field(default=None, description="The branches a route step picked.")
    _listener: Callable[..., None] | None = PrivateAttr(default=None)

    @property
    def failed_checks(self) -> dict[str, list[str]]:
        """Per answer, the checks it still failed when a refine loop ended at its limit."""
        final = self.stages.get("finalValidation")
        if self.state != "COMPLETED" or not self.flags.get("accepted_with_errors") or final is None:
            return {}
        return dict(final.data) if isinstance(final.data, dict) else {}

    @property
    def outcome(self) -> str:
        """The state a user sees: ACCEPTED_WITH_ERRORS for a completed phase that failed checks."""
        return "ACCEPTED_WITH_ERRORS" if self.failed_checks else self.state

    def listen(self, listener: Callable[..., None]) -> None:
        """Tell ``listener`` of each stage's outcome as it is stored (the run record's writer)."""
        self._listener = listener

    def record(
        self,
        stage: str,
        status: StageStatus,
        result: StageResult | None = None,
        *,
        duration_s: float = 0.0,
        error: str | None = None,
    ) -> None:
        """Store a stage's outcome: its data under its own name, its flags merged."""
        result = result or StageResult()
        self.stages[stage] = StageRecord(
            status=status, duration_s=duration_s, data=result.data, logs=result.logs, error=error
        )
        self.flags.update(result.flags)
        if self._listener is not None:
            self._listener(
                stage,
                status,
                duration_s=duration_s,
                data=result.data,
                flags=result.flags,
                logs=result.logs,
                error=error,
            )
