"""What a run's phases share, one small object per job: provider resolution (:class:`Providers`),
where an answer may be reused (:class:`AnswerScope`), events and hooks (:class:`Events`), and
the agent call that uses them (:meth:`Runtime.call`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, Protocol, TypeVar

from prefect import State, Task, task
from prefect import tags as _tags
from prefect.events import emit_event
from prefect.logging.loggers import get_run_logger

from taskmark.blocks import (
    CallLabels,
    ChatModel,
    Completion,
    Message,
    ProviderOverrides,
    agent_messages,
    aresolve_provider,
    llm_cache_options,
    merge_llm_settings,
    request_record,
)
from taskmark.context import SNAPSHOT_TAG
from taskmark.definition import Agent, Definition, LLMSettings, Phase
from taskmark.errors import ProviderError
from taskmark.runs.record import CallRecord, RunRecord, Totals

__all__ = ["CURRENT_RUNTIME", "RecordSink", "Runtime"]

T = TypeVar("T")


@task(persist_result=False)
async def _infer(
    provider: ChatModel,
    messages: list[Message],
    schema: dict[str, Any] | None,
    overrides: dict[str, Any],
    labels: CallLabels,
    scope: str | None,
) -> Completion:
    # The parameter names are those the response cache policy keys on.
    completion = await provider.acomplete(messages, schema=schema, labels=labels, **overrides)
    get_run_logger().info(call_line(labels.agent, completion))  # on the call's own task run
    return completion


def call_line(agent: str | None, completion: Completion) -> str:
    """One log line for an answered call: who, which model, tokens, cost, time, requests."""
    usage, requests = completion.usage, completion.attempts
    cost = "unpriced" if completion.cost_usd is None else f"${completion.cost_usd:.4f}"
    return (
        f"{agent} answered by {completion.model} · {usage.prompt_tokens} tokens in, {usage.completion_tokens} out"
        f" · {cost} · {completion.latency_s:.2f} s · {requests} request{'s' if requests != 1 else ''}"
        + (" (one to repair its JSON)" if completion.repaired else "")
    )


class RecordSink(Protocol):
    """Where calls and stages are told as they end: the run record's writer (the scheduler's)."""

    run: RunRecord
    """The run's header; its outcome once the phases ended."""

    def call_ended(self, phase: str, stage: str, call: CallRecord) -> None: ...

    def record(self) -> RunRecord:
        """The run's record as it stands."""
        ...

    def totals(self, phase: str | None = None) -> Totals:
        """Sums over this attempt's calls: of ``phase``, or of the whole run."""
        ...

    def stage_ended(
        self,
        phase: str,
        name: str,
        state: str,
        *,
        duration_s: float,
        data: Any = None,  # noqa: ANN401
        flags: dict[str, Any] | None = None,
        logs: list[str] | None = None,
        error: str | None = None,
    ) -> None: ...


@dataclass
class Providers:
    """Provider resolution: the provider of each (provider, model) a call names, resolved once per run."""

    overrides: ProviderOverrides | None = None
    """What `--model`, `--api-base` and `--api-key` change for every call."""
    _resolved: dict[tuple[str | None, str | None], ChatModel] = field(default_factory=dict)

    async def get(self, name: str | None, model: str | None) -> ChatModel:
        """The provider for merged settings."""
        if (name, model) not in self._resolved:
            self._resolved[(name, model)] = await aresolve_provider(name, model=model, overrides=self.overrides)
        return self._resolved[(name, model)]

    async def for_call(self, agent: Agent, layers: tuple[LLMSettings, ...]) -> tuple[ChatModel, LLMSettings]:
        """The provider and the settings of a call of ``agent``: step → phase → definition → agent → block."""
        settings = merge_llm_settings(*layers, agent.llm)
        return await self.get(settings.provider, settings.model), settings


@dataclass
class AnswerScope:
    """Where an answer may be reused (the response cache's scope).

    With a `cache:` TTL, by any identical request; else only by the same call of the same run
    (the n-th call of this agent in this stage), so a retried run gets back what it already
    paid for and a new run asks afresh. ``refresh`` (`--no-cache`) asks afresh every time.
    """

    definition: Definition
    refresh: bool = False
    _calls: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def ttl(self, phase: Phase) -> float | None:
        """How long, in seconds, an answer of ``phase`` may answer identical requests (its `cache:`), or None."""
        cache = phase.options.cache or self.definition.metadata.cache
        return None if cache is None else cache.ttl

    def key(self, run_id: str | None, phase: Phase, stage: str, agent: str) -> str | None:
        """The scope of the next call of ``agent`` in ``stage``: None where identical requests share answers."""
        if (phase.options.cache or self.definition.metadata.cache) is not None:
            return None
        place = (phase.name, stage, agent)
        self._calls[place] = n = self._calls.get(place, 0) + 1
        return f"{run_id}/{phase.name}/{stage}/{agent}/{n}"


@dataclass
class Events:
    """A run's events: Python hooks by moment (``phase:start``, ``phase:complete``, ...) and
    Prefect's event stream (`taskmark.phase.completed`, ...)."""

    definition: str
    hooks: dict[str, list[Callable[[dict[str, Any]], Any]]] = field(default_factory=dict)

    def emit(self, moment: str, **payload: Any) -> None:  # noqa: ANN401
        """Tell the hooks, then Prefect's event stream."""
        payload = {"definition": self.definition, **payload}
        for hook in self.hooks.get(moment, []):
            hook(payload)
        kind, _, what = moment.partition(":")
        past = {"start": "started", "complete": "completed", "failed": "failed"}.get(what, what)
        resource = {
            "prefect.resource.id": f"taskmark.{kind}.{self.definition}"
            + (f".{payload['phase']}" if "phase" in payload else "")
        }
        emit_event(
            event=f"taskmark.{kind}.{past}",
            resource=resource,
            payload={k: v for k, v in payload.items() if v is not None},
        )


@dataclass
class Runtime:
    """One run's shared state; lives in the flow's process, never in a parameter."""

    definition: Definition
    providers: Providers
    answers: AnswerScope
    events: Events
    flow_run_id: str | None = None
    recorder: RecordSink | None = None
    """The run record's writer, while the phases run."""
    models: set[str] = field(default_factory=set)
    """Every model that answered."""

    @classmethod
    def of(
        cls,
        definition: Definition,
        *,
        overrides: ProviderOverrides | None = None,
        no_cache: bool = False,
        hooks: dict[str, list[Callable[[dict[str, Any]], Any]]] | None = None,
    ) -> Runtime:
        """The runtime of a run of ``definition``."""
        return cls(
            definition,
            Providers(overrides),
            AnswerScope(definition, refresh=no_cache),
            Events(definition.name, hooks or {}),
        )

    async def call(
        self,
        phase: Phase,
        stage: str,
        agent: Agent,
        prompt: str,
        layers: tuple[LLMSettings, ...],
        schema: dict[str, Any] | None,
        *,
        tags: tuple[str, ...] = (),
        loop_round: int | None = None,
    ) -> Completion:
        """Ask ``agent`` (settings merged as :meth:`settings` says); ``tags`` go on the call's task run;
        ``loop_round`` is a refine loop's round, which keeps the response cache from answering it with an earlier one."""
        scope = self.answers.key(self.flow_run_id, phase, stage, agent.id)  # before any await: in step order
        provider, settings = await self.providers.for_call(agent, layers)
        retry = self.definition.metadata.retry
        overrides = {
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "max_retries": retry.max_attempts - 1,
            "retry_backoff_s": retry.backoff_ms / 1000,
        }
        labels = CallLabels(
            definition=self.definition.name, phase=phase.name, stage=stage, agent=agent.id, round=loop_round
        )
        infer = _infer_task(phase.name, stage, agent.id, self.answers.ttl(phase), self.answers.refresh)
        messages = agent_messages(agent, prompt)
        began = _now()
        with _tags(*tags) if tags else nullcontext():
            state: State[Any] = await infer(provider, messages, schema, overrides, labels, scope, return_state=True)
        sent = {
            **request_record(messages, settings.temperature, settings.max_tokens),
            "context": next((t.removeprefix(SNAPSHOT_TAG) for t in tags if t.startswith(SNAPSHOT_TAG)), None),
        }
        ended = _now()
        try:
            completion: Completion = await state.result()  # raises the call's error
        except ProviderError as error:
            sent["started"] = began
            self._record_call(phase.name, stage, agent.id, loop_round, ended, sent, error=error, model=settings.model)
            raise
        if state.name == "Cached":
            _logger().info(f"{agent.id} in {phase.name}/{stage}: answered from the response cache, no request")
        self.models.add(completion.model)
        self._record_call(
            phase.name, stage, agent.id, loop_round, ended, sent, completion, cached=state.name == "Cached"
        )
        return completion

    def _record_call(
        self,
        phase: str,
        stage: str,
        agent: str,
        loop_round: int | None,
        ended: datetime,
        sent: dict[str, Any],
        completion: Completion | None = None,
        *,
        cached: bool = False,
        error: ProviderError | None = None,
        model: str | None = None,
    ) -> None:
        if self.recorder is None:
            return
        if completion is not None:
            latency = 0.0 if cached else completion.latency_s
            call = CallRecord(
                agent=agent,
                state="completed",
                model=completion.model,
                provider=completion.provider,
                round=loop_round,
                cached=cached,
                attempts=0 if cached else completion.attempts,
                requests=[] if cached else list(completion.requests),
                prompt_tokens=0 if cached else completion.usage.prompt_tokens,
                completion_tokens=0 if cached else completion.usage.completion_tokens,
                cost_usd=None if cached else completion.cost_usd,
                latency_s=latency,
                started=ended - timedelta(seconds=latency),
                ended=ended,
                **sent,
            )
        else:
            assert error is not None
            call = CallRecord(
                agent=agent,
                state="failed",
                model=error.model or model,
                round=loop_round,
                attempts=error.attempts,
                requests=error.requests,
                prompt_tokens=error.prompt_tokens,
                completion_tokens=error.completion_tokens,
                cost_usd=error.cost_usd,
                status_code=error.status_code,
                error=error.msg,
                ended=ended,
                **sent,
            )
        self.recorder.call_ended(phase, stage, call)


@cache
def _infer_task(phase: str, stage: str, agent: str, ttl: float | None, refresh: bool) -> Task[Any, Any]:
    """The task of a call, built once per process (``with_options`` costs ~1 ms each)."""
    return _infer.with_options(
        name=f"{phase}/{stage}",
        task_run_name=f"{phase}/{stage}: {agent}",
        **llm_cache_options(ttl, refresh=refresh),
    )


def _logger() -> Any:  # noqa: ANN401 - a logger adapter
    """The current (phase) flow run's logger; a plain logger outside a run."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        import logging

        return logging.getLogger("taskmark.tasks")


def _now() -> datetime:
    return datetime.now(timezone.utc)


CURRENT_RUNTIME: ContextVar[Runtime] = ContextVar("taskmark_runtime")
"""The runtime of the run in progress; phase subflows read it (it is no flow parameter)."""
