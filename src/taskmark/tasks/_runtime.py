"""What a run shares across its phases: provider resolution, usage, task options, records."""

from __future__ import annotations

from contextvars import ContextVar
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect import State, Task, task
from prefect.events import emit_event

from taskmark.blocks import (
    CallLabels,
    ChatModel,
    Completion,
    Message,
    ProviderOverrides,
    UsageLedger,
    agent_messages,
    aresolve_provider,
    llm_cache_options,
    merge_llm_settings,
)
from taskmark.definition import Agent, Definition, LLMSettings, Phase
from taskmark.tasks._context import PhaseRecord

__all__ = ["CURRENT_RUNTIME", "Runtime"]


@task(persist_result=False)
async def _infer(
    provider: ChatModel,
    messages: list[Message],
    schema: dict[str, Any] | None,
    overrides: dict[str, Any],
    labels: CallLabels,
) -> Completion:
    # The parameter names are those the response cache policy keys on.
    return await provider.acomplete(messages, schema=schema, labels=labels, **overrides)


@dataclass
class Runtime:
    """One run's shared state; lives in the flow's process, never in a parameter."""

    definition: Definition
    overrides: ProviderOverrides | None = None
    no_cache: bool = False
    ledger: UsageLedger = field(default_factory=UsageLedger)
    records: dict[str, PhaseRecord] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    """Every model that answered."""
    flow_run_id: str | None = None
    hooks: dict[str, list[Callable[[dict[str, Any]], Any]]] = field(default_factory=dict)
    """Python callbacks by moment (``phase:start``, ``phase:complete``, ...)."""
    _tasks: dict[tuple[str, ...], Task[Any, Any]] = field(default_factory=dict)
    _providers: dict[tuple[str | None, str | None], ChatModel] = field(default_factory=dict)

    def emit(self, moment: str, **payload: Any) -> None:  # noqa: ANN401
        """Tell the hooks, and Prefect's event stream (`taskmark.phase.completed`, ...)."""
        payload = {"definition": self.definition.name, **payload}
        for hook in self.hooks.get(moment, []):
            hook(payload)
        kind, _, what = moment.partition(":")
        past = {"start": "started", "complete": "completed", "failed": "failed"}.get(what, what)
        resource = {"prefect.resource.id": f"taskmark.{kind}.{self.definition.name}" + (f".{payload['phase']}" if "phase" in payload else "")}
        emit_event(event=f"taskmark.{kind}.{past}", resource=resource, payload={k: v for k, v in payload.items() if v is not None})

    def stage_task(self, base: Task[Any, Any], phase: str, stage: str) -> Task[Any, Any]:
        """``base`` named `PHASE/stage` (configured once per run)."""
        key = ("stage", phase, stage)
        if key not in self._tasks:
            self._tasks[key] = base.with_options(name=f"{phase}/{stage}")
        return self._tasks[key]

    def _infer_task(self, phase: Phase, stage: str, agent: str) -> Task[Any, Any]:
        key = ("infer", phase.name, stage, agent)
        if key not in self._tasks:
            cache = phase.options.cache or self.definition.metadata.cache
            ttl = None if self.no_cache or cache is None else cache.ttl
            self._tasks[key] = _infer.with_options(
                name=f"{phase.name}/{stage}", task_run_name=f"{phase.name}/{stage}: {agent}", **llm_cache_options(ttl)
            )
        return self._tasks[key]

    async def provider(self, name: str | None, model: str | None) -> ChatModel:
        """The provider for merged settings, resolved once per run."""
        if (name, model) not in self._providers:
            self._providers[(name, model)] = await aresolve_provider(name, model=model, overrides=self.overrides)
        return self._providers[(name, model)]

    async def call(self, phase: Phase, stage: str, agent: Agent, prompt: str, layers: tuple[LLMSettings, ...], schema: dict[str, Any] | None) -> Completion:
        """Ask ``agent``: settings merged step → phase → definition → agent → block."""
        settings = merge_llm_settings(*layers, agent.llm)
        provider = await self.provider(settings.provider, settings.model)
        retry = self.definition.metadata.retry
        overrides = {
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "max_retries": retry.max_attempts - 1,
            "retry_backoff_s": retry.backoff_ms / 1000,
        }
        labels = CallLabels(definition=self.definition.name, phase=phase.name, stage=stage, agent=agent.id)
        infer = self._infer_task(phase, stage, agent.id)
        state: State[Any] = await infer(provider, agent_messages(agent, prompt), schema, overrides, labels, return_state=True)
        if state.is_failed():
            self.ledger.add_failure(labels)
        completion: Completion = await state.result()  # raises the call's error
        if state.name != "Cached":
            self.ledger.add(completion, labels)
        self.models.add(completion.model)
        return completion


CURRENT_RUNTIME: ContextVar[Runtime] = ContextVar("taskmark_runtime")
"""The runtime of the run in progress; phase subflows read it (it is no flow parameter)."""
