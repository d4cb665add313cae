"""What `taskmark runs` prints: one line per run, as a plain model."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from taskmark.runs.record import Outcome

__all__ = ["RunSummary"]


class RunSummary(BaseModel):
    """One line of `taskmark runs`. Calls and cost are the run record's totals (what
    :func:`taskmark.read_run` says, every attempt included); None for a run without a record
    (an older taskmark ran it), whose calls are unknown, not 0."""

    id: str = Field(description="The flow run id.")
    name: str = Field(description="The flow run's name.")
    definition: str = Field(description="The definition (the flow's name).")
    state: str = Field(description="Prefect state type.")
    state_name: str | None = Field(default=None, description="Prefect state name.")
    outcome: Outcome | None = Field(
        default=None, description="How the run record says it ended (or running); None without a record."
    )
    start: datetime | None = Field(default=None, description="When it started running.")
    duration_s: float | None = Field(default=None, description="Seconds from start to end (or now, while running).")
    calls: int | None = Field(default=None, description="LLM calls answered by a provider; None without a record.")
    failed_calls: int | None = Field(default=None, description="LLM calls that failed; None without a record.")
    cost_usd: float | None = Field(
        default=None, description="Cost in US dollars of the priced calls; None without a record."
    )
    unpriced_calls: int | None = Field(
        default=None, description="Answered calls whose price is unknown (not in cost_usd); None without a record."
    )
