"""The typed record of a run: run → phases → stages → calls.

It is the one home of a run's data. The phase scheduler writes it, as JSON artifacts of the
run's flow run, as each call and stage ends; :func:`taskmark.read_run` reads it back, and
every view (`taskmark trace`, `runs`, the summary artifact, `refers:`, the watch folder's
runs.jsonl) shows what it holds. Totals are computed from the calls, never stored beside
them, so no two views can disagree.

Its JSON Schema is published as docs/run-record.schema.json; ``SCHEMA_VERSION`` changes
whenever a reader of the previous version would misread it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = [
    "RECORD_ARTIFACT_TYPE",
    "SCHEMA_VERSION",
    "CallRecord",
    "DefinitionRef",
    "Outcome",
    "PhaseRecord",
    "PhaseState",
    "RequestRecord",
    "RunRecord",
    "StageRecord",
    "Totals",
]

SCHEMA_VERSION = 1

RECORD_ARTIFACT_TYPE = "taskmark-record"
"""The Prefect artifact type of a record's parts (a run's header, each phase attempt)."""

Outcome = Literal["running", "completed", "accepted_with_errors", "failed", "timed_out", "cancelled", "crashed"]
PhaseState = Literal[
    "pending", "running", "completed", "accepted_with_errors", "failed", "timed_out", "cancelled", "crashed", "not_run"
]
StageState = Literal["running", "completed", "skipped", "failed"]

FINAL_OUTCOMES: frozenset[str] = frozenset(
    {"completed", "accepted_with_errors", "failed", "timed_out", "cancelled", "crashed"}
)


class _Part(BaseModel):
    """What every level has: when it ran and why it failed."""

    model_config = ConfigDict(extra="ignore")

    started: datetime | None = Field(default=None, description="When it started.")
    ended: datetime | None = Field(default=None, description="When it ended; None while it runs.")
    error: str | None = Field(default=None, description="Why it failed, was cancelled or timed out.")

    @computed_field(description="Seconds from start to end; None until it ended.")  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return round((self.ended - self.started).total_seconds(), 4)


class RequestRecord(BaseModel):
    """One HTTP request of a call: the first try, a retry, a fallback's or a repair."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = Field(description="The model it asked.")
    purpose: Literal["answer", "repair"] = Field(
        default="answer", description="answer: asked for the answer; repair: asked to fix an unparseable reply."
    )
    outcome: Literal["answered", "failed"] = Field(description="Whether the provider answered it.")
    status_code: int | None = Field(default=None, description="The HTTP status of a failed request.")
    transient: bool | None = Field(
        default=None, description="For a failed request: whether it was worth trying again (a retry or fallback)."
    )
    error: str | None = Field(default=None, description="Why it failed (never a key).")
    latency_s: float = Field(default=0.0, description="Wall time of the request (a rate limit's wait not included).")


class CallRecord(_Part):
    """One LLM call: a request to a provider (with its retries, fallback and repair), or an
    answer taken from the response cache."""

    agent: str = Field(description="The agent that was asked.")
    state: Literal["completed", "failed"] = Field(description="Whether an answer came back.")
    model: str | None = Field(default=None, description="The model that answered (or was asked, when none did).")
    provider: str | None = Field(default=None, description="The provider block, when it was loaded by name.")
    round: int | None = Field(default=None, description="The critique/refine round; None outside a refine loop.")
    cached: bool = Field(default=False, description="Answered from the response cache: no request was made.")
    attempts: int = Field(default=0, description="HTTP requests made: the first, retries, fallbacks and a repair.")
    requests: list[RequestRecord] = Field(
        default_factory=list, description="Each HTTP request, in the order made, with its outcome (empty when cached)."
    )
    prompt_tokens: int = Field(default=0, description="Tokens sent, over every request.")
    completion_tokens: int = Field(default=0, description="Tokens generated, over every request.")
    cost_usd: float | None = Field(default=None, description="Cost in US dollars; None: unpriced (or cached).")
    latency_s: float | None = Field(default=None, description="Wall time of the requests, retries included.")
    status_code: int | None = Field(default=None, description="The HTTP status of a failed call.")
    validation: list[str] | None = Field(
        default=None, description="What its answer failed of the declared outputs and checks; [] when it passed."
    )
    run_attempt: int = Field(default=1, description="The attempt of the run that made it (a retry is the next).")
    temperature: float | None = Field(default=None, description="The sampling temperature sent; None: the model's.")
    max_tokens: int | None = Field(default=None, description="The output limit sent; None: the model's.")
    messages_sha256: str | None = Field(
        default=None, description="SHA-256 of the messages as sent (system, context and prompt), not the text."
    )
    context: str | None = Field(default=None, description="The hash of the context bundle it used, if any.")


class StageRecord(_Part):
    """One stage of a phase's lifecycle."""

    name: str = Field(description="ingestion, preProcessing, ..., integration (or approval, review).")
    state: StageState = Field(description="running, completed, skipped or failed.")
    data: Any = Field(default=None, description="What the stage produced.")
    flags: dict[str, Any] = Field(default_factory=dict, description="Flags it set on the phase.")
    logs: list[str] = Field(default_factory=list, description="Lines it logged.")
    calls: list[CallRecord] = Field(default_factory=list, description="Its LLM calls, in the order they ended.")


class PhaseRecord(_Part):
    """One attempt of one phase."""

    name: str = Field(description="The phase's name.")
    state: PhaseState = Field(description="Where the phase is, or how it ended.")
    run_attempt: int = Field(default=1, description="The attempt of the run this record belongs to.")
    outputs: Any = Field(default=None, description="Its outputs, fixed by integration.")
    flags: dict[str, Any] = Field(default_factory=dict, description="Flags merged from its stages.")
    failed_checks: dict[str, list[str]] = Field(
        default_factory=dict, description="Per answer, the checks it still failed when accepted with errors."
    )
    approval: dict[str, Any] | None = Field(default=None, description="The approver's decision and note.")
    executed_branches: list[str] | None = Field(default=None, description="The branches a route step picked.")
    stages: list[StageRecord] = Field(default_factory=list, description="Its stages, in lifecycle order.")

    def calls(self) -> list[CallRecord]:
        """Every call of the phase, stage by stage."""
        return [c for s in self.stages for c in s.calls]


class Totals(BaseModel):
    """Sums over a set of calls: every request a provider answered counts once."""

    calls: int = Field(default=0, description="Calls that got an answer from a provider.")
    failed_calls: int = Field(default=0, description="Calls that ended in an error.")
    cached_calls: int = Field(default=0, description="Calls answered from the response cache (no request).")
    requests: int = Field(default=0, description="HTTP requests made: first tries, retries, fallbacks and repairs.")
    prompt_tokens: int = Field(default=0, description="Tokens sent.")
    completion_tokens: int = Field(default=0, description="Tokens generated.")
    cost_usd: float = Field(default=0.0, description="Sum of the known costs, in US dollars.")
    unpriced_calls: int = Field(default=0, description="Answered calls whose price is unknown (not in cost_usd).")

    @property
    def tokens(self) -> int:
        """Tokens sent and generated (derived, so not part of the stored record)."""
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def of(cls, calls: list[CallRecord]) -> Totals:
        """The sums over ``calls``."""
        totals = cls()
        for call in calls:
            if call.cached:
                totals.cached_calls += 1
                continue
            if call.state == "failed":
                totals.failed_calls += 1
            else:
                totals.calls += 1
                if call.cost_usd is None:
                    totals.unpriced_calls += 1
            totals.requests += call.attempts
            totals.prompt_tokens += call.prompt_tokens
            totals.completion_tokens += call.completion_tokens
            totals.cost_usd += call.cost_usd or 0.0
        totals.cost_usd = round(totals.cost_usd, 10)
        return totals


class DefinitionRef(BaseModel):
    """Which definition a run ran."""

    name: str = Field(description="The definition's name (its flow's name).")
    version: str | None = Field(default=None, description="Its `version:`.")
    content_sha256: str | None = Field(default=None, description="SHA-256 of the file as it ran.")
    path: str | None = Field(default=None, description="Where the file was, on the machine that ran it.")


class RunRecord(_Part):
    """A whole run, as :func:`taskmark.read_run` returns it (`taskmark trace --json` prints it)."""

    schema_version: int = Field(default=SCHEMA_VERSION, description="The version of this record's shape.")
    run_id: str = Field(description="The Prefect flow run.")
    definition: DefinitionRef = Field(description="What ran.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="The run's inputs.")
    outcome: Outcome = Field(description="How the run ended, or running.")
    attempts: int = Field(default=1, description="Attempts of the run: 1, plus one per `taskmark retry`.")
    phases: list[PhaseRecord] = Field(default_factory=list, description="The latest attempt of each phase.")
    earlier: list[PhaseRecord] = Field(
        default_factory=list, description="Phase records of earlier attempts (their calls were paid for too)."
    )

    @computed_field(description="Sums over every call of every attempt.")  # type: ignore[prop-decorator]
    @property
    def totals(self) -> Totals:
        """Computed on read: a record never stores sums beside its calls."""
        return Totals.of([c for p in [*self.earlier, *self.phases] for c in p.calls()])

    def phase(self, name: str) -> PhaseRecord | None:
        """The latest attempt of the phase ``name``."""
        return next((p for p in self.phases if p.name == name), None)
