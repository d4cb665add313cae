"""Accounting: a Prefect event per call, and costs as people read them.

Events (``taskmark.llm.completed`` / ``taskmark.llm.failed``) go through Prefect's own
event stream, so the UI's event feed, automations and the API see them; inside a flow or
task run Prefect relates them to that run. A run's sums are its record's
(``taskmark.runs.record.Totals``), never a second count kept beside it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from taskmark.errors import ProviderError

from ._types import CallLabels, Completion, Message

__all__ = [
    "COMPLETED_EVENT",
    "FAILED_EVENT",
    "describe_cost",
    "emit_completed",
    "emit_failed",
    "request_record",
    "should_emit",
]

COMPLETED_EVENT = "taskmark.llm.completed"
FAILED_EVENT = "taskmark.llm.failed"


def describe_cost(cost_usd: float, unpriced_calls: int = 0, calls: int = 0, *, sign: str = "$") -> str:
    """A cost for people: `$0.0012`; `unpriced` when no answered call had a known price (the
    local model, a model litellm has no price for), where `$0.0000` would say it was free;
    `$0.0012 (+2 unpriced)` when some had none.

    Example:
        >>> describe_cost(0.0, unpriced_calls=3, calls=3)
        'unpriced'
    """
    if unpriced_calls and unpriced_calls >= calls:
        return "unpriced"
    return f"{sign}{cost_usd:.4f}" + (f" (+{unpriced_calls} unpriced)" if unpriced_calls else "")


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
