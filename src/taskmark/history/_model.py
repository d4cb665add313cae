"""What `taskmark runs` and `taskmark trace` print: runs, and a run as a tree, as plain models.

A trace is read back from the Prefect API, never from the memory of the process that ran
it: each node carries the state Prefect recorded. ``state`` is the effective state: a phase,
stage or call still recorded as running when its run ended (a crash, a cancellation) takes
the run's final state, and ``recorded_state`` keeps what Prefect had.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["AttemptTrace", "CallTrace", "PhaseTrace", "RunSummary", "RunTrace", "StageTrace", "TraceTotals"]


class TraceTotals(BaseModel):
    """Sums over a set of LLM calls, as their `taskmark.llm.*` events recorded them."""

    calls: int = Field(default=0, description="Calls that returned an answer.")
    failed_calls: int = Field(default=0, description="Calls that ended in an error.")
    cached_calls: int = Field(default=0, description="Calls answered from the response cache (no request).")
    attempts: int = Field(default=0, description="HTTP requests made: first tries, retries, fallbacks and repairs.")
    retries: int = Field(
        default=0, description="Requests beyond each call's first: attempts minus calls that made a request."
    )
    prompt_tokens: int = Field(default=0, description="Tokens sent.")
    completion_tokens: int = Field(default=0, description="Tokens generated.")
    total_tokens: int = Field(default=0, description="Prompt plus completion tokens.")
    cost_usd: float = Field(default=0.0, description="Sum of the known costs, in US dollars.")
    unpriced_calls: int = Field(default=0, description="Answered calls whose price is unknown (not in cost_usd).")

    def add(self, call: CallTrace) -> None:
        """Count one call."""
        if call.cached:
            self.cached_calls += 1
            return
        if call.error is not None or call.state == "FAILED":
            self.failed_calls += 1
        elif call.state == "COMPLETED":
            self.calls += 1
            if call.model is not None and call.cost_usd is None:
                self.unpriced_calls += 1
        if call.attempts:
            self.attempts += call.attempts
            self.retries += call.attempts - 1
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.total_tokens += call.total_tokens
        self.cost_usd += call.cost_usd or 0.0

    def merge(self, other: TraceTotals) -> None:
        """Add another set of sums to this one."""
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class _Node(BaseModel):
    """What every node of a trace has: a state and when it ran."""

    state: str = Field(
        description="Prefect state type (COMPLETED, FAILED, CRASHED, CANCELLED, RUNNING, ...), effective."
    )
    state_name: str | None = Field(
        default=None, description="Prefect state name (Completed, TimedOut, NotRun, Cached, ...)."
    )
    recorded_state: str | None = Field(
        default=None, description="The state Prefect recorded, when it differs from ``state``."
    )
    message: str | None = Field(
        default=None, description="The state's message: why it failed, was cancelled or crashed."
    )
    start: datetime | None = Field(default=None, description="When it started running.")
    end: datetime | None = Field(default=None, description="When it reached its final state.")
    duration_s: float | None = Field(default=None, description="Seconds between start and end (or now, while running).")


class CallTrace(_Node):
    """One LLM call: a task run `PHASE/stage: agent` and its `taskmark.llm.*` event."""

    agent: str = Field(description="The agent that was asked.")
    task_run_id: str | None = Field(default=None, description="The Prefect task run, when it was recorded.")
    cached: bool = Field(default=False, description="Answered from the response cache, without a request.")
    model: str | None = Field(default=None, description="The model that answered, or was asked.")
    attempts: int | None = Field(
        default=None, description="HTTP requests the call made; None when its event does not say."
    )
    retries: int | None = Field(default=None, description="Attempts beyond the first.")
    prompt_tokens: int = Field(default=0, description="Tokens sent.")
    completion_tokens: int = Field(default=0, description="Tokens generated.")
    total_tokens: int = Field(default=0, description="Prompt plus completion tokens.")
    cost_usd: float | None = Field(default=None, description="Cost in US dollars; None where unknown.")
    latency_s: float | None = Field(default=None, description="Wall time of the request, retries included.")
    status_code: int | None = Field(default=None, description="The HTTP status of a failed call.")
    error: str | None = Field(default=None, description="Why the call failed (secrets redacted).")
    temperature: float | None = Field(
        default=None, description="The sampling temperature sent; None for the model's default."
    )
    max_tokens: int | None = Field(default=None, description="The output limit sent; None for the model's default.")
    messages_sha256: str | None = Field(
        default=None, description="SHA-256 of the messages exactly as sent (system, context and prompt)."
    )
    context: str | None = Field(
        default=None, description="The hash of the context bundle the call used, when it used one."
    )
    bundle: dict[str, Any] | None = Field(
        default=None, description="That bundle's snapshot, when asked for (`trace --context`)."
    )


class StageTrace(_Node):
    """One lifecycle stage of a phase: the task run `PHASE/stage`."""

    name: str = Field(description="The stage (ingestion, inference, parsing, ...).")
    task_run_id: str | None = Field(default=None, description="The Prefect task run; None while unrecorded.")
    run_count: int = Field(default=0, description="How many times Prefect ran it (more than 1: Prefect retried it).")
    calls: list[CallTrace] = Field(default_factory=list, description="The LLM calls it made, by start time.")
    totals: TraceTotals = Field(default_factory=TraceTotals, description="Sums over its calls.")


class PhaseTrace(_Node):
    """One phase: the subflow run `Phase: NAME`."""

    name: str = Field(description="The phase's name.")
    flow_run_id: str = Field(description="The subflow run.")
    stages: list[StageTrace] = Field(
        default_factory=list, description="Its stages that ran, by start time (skipped ones leave no record)."
    )
    totals: TraceTotals = Field(default_factory=TraceTotals, description="Sums over its calls.")


class AttemptTrace(_Node):
    """An earlier attempt of a run that was retried (`taskmark retry` runs it again under its id)."""

    number: int = Field(description="1 for the first attempt.")
    phases: list[PhaseTrace] = Field(default_factory=list, description="Its phases, by start time.")
    totals: TraceTotals = Field(default_factory=TraceTotals, description="Sums over its calls.")


class RunTrace(_Node):
    """A whole run, read back from the Prefect API."""

    id: str = Field(description="The flow run id.")
    name: str = Field(description="The flow run's name.")
    definition: str = Field(description="The definition (the flow's name).")
    attempt: int = Field(default=1, description="The number of the latest attempt (more than 1: the run was retried).")
    phases: list[PhaseTrace] = Field(
        default_factory=list, description="The latest attempt's phases, by start time; phases that never ran last."
    )
    earlier_attempts: list[AttemptTrace] = Field(
        default_factory=list, description="Attempts before the latest, oldest first."
    )
    totals: TraceTotals = Field(
        default_factory=TraceTotals, description="Sums over every call of every attempt: the requests the run made."
    )
    artifacts: list[str] = Field(default_factory=list, description="Keys of the artifacts the run wrote.")
    complete: bool = Field(
        description="Whether every record of the run had reached the API; False while it runs, or "
        "when events or task runs were still missing when reading stopped."
    )


class RunSummary(BaseModel):
    """One line of `taskmark runs`."""

    id: str = Field(description="The flow run id.")
    name: str = Field(description="The flow run's name.")
    definition: str = Field(description="The definition (the flow's name).")
    state: str = Field(description="Prefect state type.")
    state_name: str | None = Field(default=None, description="Prefect state name.")
    start: datetime | None = Field(default=None, description="When it started running.")
    duration_s: float | None = Field(default=None, description="Seconds from start to end (or now, while running).")
    calls: int | None = Field(default=None, description="LLM calls answered; None when unknown.")
    failed_calls: int | None = Field(default=None, description="LLM calls that failed; None when unknown.")
    cost_usd: float | None = Field(
        default=None, description="Cost in US dollars of the priced calls; None when unknown."
    )
    usage_from: str | None = Field(
        default=None, description="Where calls and cost come from: `artifact` (the run's usage table) or `events`."
    )
