"""Accounting: a Prefect event per call, and a ledger that sums a run's usage by phase and
stage.

Events (``taskmark.llm.completed`` / ``taskmark.llm.failed``) go through Prefect's own
event stream, so the UI's event feed, automations and the API see them; inside a flow or
task run Prefect relates them to that run. The ledger is the in-process sum a run uses to
write its usage artifact and summary.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from taskmark.errors import ProviderError

from ._types import CallLabels, Completion, Message

__all__ = [
    "COMPLETED_EVENT",
    "FAILED_EVENT",
    "UsageLedger",
    "UsageTotals",
    "emit_completed",
    "emit_failed",
    "request_record",
    "should_emit",
]

COMPLETED_EVENT = "taskmark.llm.completed"
FAILED_EVENT = "taskmark.llm.failed"

StageKey = tuple[str | None, str | None]


class UsageTotals(BaseModel):
    """Sums over a set of calls."""

    calls: int = Field(default=0, description="Requests that returned an answer.")
    failed_calls: int = Field(default=0, description="Requests that ended in an error.")
    prompt_tokens: int = Field(default=0, description="Tokens sent.")
    completion_tokens: int = Field(default=0, description="Tokens generated.")
    total_tokens: int = Field(default=0, description="Prompt plus completion tokens.")
    cost_usd: float = Field(default=0.0, description="Sum of the known costs, in US dollars.")
    unpriced_calls: int = Field(default=0, description="Answered calls whose price is unknown (not in cost_usd).")

    def add(self, completion: Completion) -> None:
        """Count one answered call."""
        self.calls += 1
        self.prompt_tokens += completion.usage.prompt_tokens
        self.completion_tokens += completion.usage.completion_tokens
        self.total_tokens += completion.usage.total_tokens
        if completion.cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += completion.cost_usd

    def merge(self, other: UsageTotals) -> None:
        """Add another set of sums to this one."""
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class UsageLedger:
    """A run's LLM usage by (phase, stage); safe to share between threads.

    Example:
        >>> ledger = UsageLedger()
        >>> ledger.add(completion, CallLabels(phase="Rapid Analysis", stage="inference"))
        >>> ledger.total().cost_usd
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[StageKey, UsageTotals] = {}
        self._models: Counter[str] = Counter()

    def add(self, completion: Completion, labels: CallLabels | None = None) -> None:
        """Record an answered call under its phase and stage."""
        with self._lock:
            self._row(labels).add(completion)
            self._models[completion.model] += 1

    def add_failure(self, labels: CallLabels | None = None) -> None:
        """Record a call that failed (after its retries and fallbacks)."""
        with self._lock:
            self._row(labels).failed_calls += 1

    def by_stage(self) -> dict[StageKey, UsageTotals]:
        """Sums per (phase, stage), in the order they first appeared."""
        with self._lock:
            return {key: row.model_copy() for key, row in self._rows.items()}

    def by_phase(self) -> dict[str | None, UsageTotals]:
        """Sums per phase."""
        out: dict[str | None, UsageTotals] = {}
        for (phase, _stage), row in self.by_stage().items():
            out.setdefault(phase, UsageTotals()).merge(row)
        return out

    def total(self) -> UsageTotals:
        """Sums over the whole run."""
        out = UsageTotals()
        for row in self.by_stage().values():
            out.merge(row)
        return out

    def models(self) -> dict[str, int]:
        """How many answers each model gave: the run summary's "which model answered"."""
        with self._lock:
            return dict(self._models)

    def table(self) -> list[dict[str, Any]]:
        """One row per (phase, stage) plus a total, ready for ``create_table_artifact``."""
        rows = [
            {"phase": phase or "", "stage": stage or "", **totals.model_dump()}
            for (phase, stage), totals in self.by_stage().items()
        ]
        rows.append({"phase": "total", "stage": "", **self.total().model_dump()})
        return rows

    def _row(self, labels: CallLabels | None) -> UsageTotals:
        key: StageKey = (labels.phase, labels.stage) if labels else (None, None)
        return self._rows.setdefault(key, UsageTotals())

    # A ledger travels with results and between processes; its lock does not.
    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"rows": self._rows, "models": self._models}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._rows = state["rows"]
        self._models = state["models"]


def _resource(model: str, labels: CallLabels | None, provider: str | None) -> dict[str, str]:
    resource = {
        "prefect.resource.id": f"taskmark.llm.{model}",
        "prefect.resource.name": model,
        "prefect.resource.role": "llm",
    }
    if provider:
        resource["taskmark.provider"] = provider
    if labels:
        resource.update(labels.as_event_labels())
    return resource


def should_emit() -> bool:
    """Whether there is a Prefect API to tell: inside a run, or with PREFECT_API_URL set.

    A plain script calling a provider must not start Prefect's ephemeral server (7-17 s)
    only to report an event nobody can read afterwards.
    """
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value()) or bool(FlowRunContext.get() or TaskRunContext.get())


def request_record(messages: Sequence[Message], temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    """What an event records of the request: its sampling parameters and a SHA-256 of the
    messages as sent, so that an output traces to its exact prompt without the prompt (and
    the context in it) being copied into every event."""
    sent = json.dumps(list(messages), sort_keys=True, ensure_ascii=False).encode()
    return {"temperature": temperature, "max_tokens": max_tokens, "messages_sha256": hashlib.sha256(sent).hexdigest()}


def emit_completed(completion: Completion, labels: CallLabels | None, request: dict[str, Any]) -> None:
    """Emit ``taskmark.llm.completed`` for an answered call (``request``: :func:`request_record`)."""
    from prefect.events import emit_event

    if not should_emit():
        return
    emit_event(
        COMPLETED_EVENT,
        resource=_resource(completion.model, labels, completion.provider),
        payload={
            "model": completion.model,
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
            "total_tokens": completion.usage.total_tokens,
            "cost_usd": completion.cost_usd,
            "latency_s": round(completion.latency_s, 4),
            "attempts": completion.attempts,
            "repaired": completion.repaired,
            **request,
        },
    )


def emit_failed(
    error: ProviderError,
    labels: CallLabels | None,
    *,
    model: str,
    provider: str | None,
    latency_s: float,
    request: dict[str, Any],
) -> None:
    """Emit ``taskmark.llm.failed`` for a call that ended in ``error``.

    The error's message is built by the classifier with secrets redacted.
    """
    from prefect.events import emit_event

    if not should_emit():
        return
    emit_event(
        FAILED_EVENT,
        resource=_resource(model, labels, provider),
        payload={
            "model": model,
            "status_code": error.status_code,
            "transient": error.transient,
            "error": error.msg,
            "attempts": error.attempts,
            "latency_s": round(latency_s, 4),
            **request,
        },
    )
