"""The phase lifecycle: eleven stages in order, each with work a Prefect task named `PHASE/stage`.

A stage with nothing to do is recorded as skipped without a task run. Every agent call is a
task of its own (`PHASE/inference`, `PHASE/critique`, ...), so a parallel phase's calls run at
the same time and one failing call does not stop its siblings.

:class:`Lifecycle` holds one phase run's state and what its stages share (rendering, calls,
context bundles, reporting a stage's end); each stage's work is a function of it in a module
named after that work: ``_ingestion``, ``_gates`` (approval, context review), ``_inference``
(templating, routing, calls), ``_checks`` (parsing, structure, quality, final validation),
``_loop`` (critique, refine) and ``_integration``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from taskmark._engine import run_stage
from taskmark.context import Bundle, Choice, render
from taskmark.definition import (
    Agent,
    AgentStep,
    ContextOptions,
    CustomStep,
    Definition,
    LLMSettings,
    Phase,
    merge_context,
    render_template,
)
from taskmark.tasks._answers import Answer, output_schema
from taskmark.tasks._approval import Waiter, wait_until_resumed
from taskmark.tasks._assembly import Sources, bundle_for, uses_context
from taskmark.tasks._checks import final_validation, parse, validate_quality, validate_structure
from taskmark.tasks._context import PhaseEnd, PhaseFailed, PhaseOutcome, StageResult, StageStatus
from taskmark.tasks._gates import approve, review
from taskmark.tasks._handlers import call_handler
from taskmark.tasks._inference import infer, template
from taskmark.tasks._ingestion import ingest
from taskmark.tasks._integration import integrate
from taskmark.tasks._loop import loop, refinements, wants_loop
from taskmark.tasks._rendering import render_prompt
from taskmark.tasks._runtime import RecordSink, Runtime
from taskmark.tasks._snapshots import store_snapshot

__all__ = ["Lifecycle", "run_lifecycle"]


class Lifecycle:
    """One run of one phase."""

    def __init__(
        self,
        definition: Definition,
        phase: Phase,
        inputs: dict[str, Any],
        upstream: dict[str, Any],
        runtime: Runtime,
        finished: Mapping[str, PhaseOutcome],
    ) -> None:
        self.definition, self.phase, self.runtime = definition, phase, runtime
        self.inputs, self.upstream = inputs, upstream
        self.finished = finished
        """The phases that ended before this one asks (context sources read the completed ones)."""
        self.sink: RecordSink | None = runtime.recorder
        self.data: dict[str, Any] = {}
        """Each ended stage's data, by stage."""
        self.flags: dict[str, Any] = {}
        """The flags the stages set, merged."""
        self.outputs: Any = None
        self.executed_branches: list[str] | None = None
        self.answers: list[Answer] = []
        self.approval: dict[str, Any] | None = None
        """The approver's answer, when the phase asks for one."""
        self.sources: Sources | None = None
        """The phase's context candidates, when its calls get a context bundle."""
        self.choice = Choice()
        """What a context reviewer pinned and excluded."""
        self.schema = output_schema(phase.outputs, inputs)
        self.layers = (phase.options.llm, definition.metadata.llm)
        keys: dict[str, int] = {}
        for step in phase.agent_steps():
            keys[step.agent] = keys.get(step.agent, 0) + 1
            key = step.agent if keys[step.agent] == 1 else f"{step.agent}#{keys[step.agent]}"
            self.answers.append(Answer(step=step, key=key))

    # -- running stages --------------------------------------------------------------------

    async def stage(self, name: str, work: Callable[[], Awaitable[StageResult]] | None) -> StageResult | None:
        """Run a stage as a task (or record it skipped); a handler named for it runs after."""
        handler = self.phase.options.handlers.get(name)
        if work is None and handler is None:
            self.ended(name, "skipped")
            return None
        started = time.perf_counter()

        async def both() -> StageResult:
            result = await work() if work is not None else StageResult()
            if handler is not None:
                extra = await call_handler(handler, self.view(stage=name, data=result.data))
                result = StageResult(
                    data=extra.data if extra.data is not None else result.data,
                    flags={**result.flags, **extra.flags},
                    logs=result.logs + extra.logs,
                )
            return result

        try:
            user_code = handler is not None or (name == "inference" and bool(self.custom_steps))
            result: StageResult = await run_stage(self.phase.name, name, both, runs_user_code=user_code)
        except PhaseFailed as failure:
            self.ended(name, "failed", duration_s=time.perf_counter() - started, error=failure.reason)
            raise
        except Exception as exc:
            self.ended(name, "failed", duration_s=time.perf_counter() - started, error=str(exc))
            raise PhaseFailed(self.phase.name, name, str(exc)) from exc
        self.ended(name, "completed", result, duration_s=time.perf_counter() - started)
        return result

    def ended(
        self,
        stage: str,
        status: StageStatus,
        result: StageResult | None = None,
        *,
        duration_s: float = 0.0,
        error: str | None = None,
    ) -> None:
        """Keep a stage's data under its own name, merge its flags, and report its end."""
        result = result or StageResult()
        self.data[stage] = result.data
        self.flags.update(result.flags)
        if self.sink is not None:
            self.sink.stage_ended(
                self.phase.name,
                stage,
                status,
                duration_s=duration_s,
                data=result.data,
                flags=result.flags,
                logs=result.logs,
                error=error,
            )

    def view(self, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
        """What handlers see of the run."""
        return {
            "phase": self.phase.name,
            "inputs": self.inputs,
            "phases": self.upstream,
            "flags": dict(self.flags),
            **extra,
        }

    def names(self, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
        """What templates and expressions see."""
        steps = {a.key: a.value for a in self.answers if a.usable}
        return {
            **self.inputs,
            "inputs": self.inputs,
            "phases": self.upstream,
            "steps": steps,
            "approval": self.approval,
            **extra,
        }

    async def render(self, template: str, what: str, **extra: Any) -> str:  # noqa: ANN401
        """Render one of the definition's templates off the event loop; ``what`` names it in errors."""
        return await render_prompt(what, render_template, template, self.names(**extra))

    async def layout(self, bundle: Bundle, prompt: str, agent: Agent) -> str:
        """The prompt with its context bundle before it, in the context layout."""
        return await render_prompt(
            f"the context template of agent '{agent.id}'", render, bundle, prompt, self.context_options(agent).template
        )

    async def ask(
        self, stage: str, step: AgentStep, prompt: str, *, schema: dict[str, Any] | None, loop_round: int | None = None
    ) -> Any:  # noqa: ANN401
        """One agent call as a task of its own; with context, its bundle goes before the prompt
        and the call's task run names the bundle's snapshot."""
        agent = self.definition.agents[step.agent]
        layers = (step.llm, *self.layers)
        tags: tuple[str, ...] = ()
        if self.sources is not None:
            bundle = await self.bundle(agent, layers, prompt)
            prompt = await self.layout(bundle, prompt, agent)
            tags = (await store_snapshot(bundle),)
        return await self.runtime.call(
            self.phase, stage, agent, prompt, layers, schema, tags=tags, loop_round=loop_round
        )

    def context_options(self, agent: Agent) -> ContextOptions:
        return merge_context(agent.context, self.phase.options.context, self.definition.metadata.context)

    async def bundle(self, agent: Agent, layers: tuple[LLMSettings, ...], prompt: str) -> Bundle:
        """The context bundle of one call of ``agent`` with ``prompt``."""
        assert self.sources is not None
        provider, settings = await self.runtime.providers.for_call(agent, layers)

        async def summarise(text: str, tokens: int) -> str:
            ask = f"Summarise the text below in at most {tokens} tokens. Keep names, numbers and conclusions; add nothing.\n\n{text}"
            summary = await self.runtime.call(
                self.phase, "summarize", agent, ask, (LLMSettings(max_tokens=tokens), *layers), None
            )
            return str(summary.text)

        return await bundle_for(
            self.sources,
            prompt,
            options=self.context_options(agent),
            provider=provider,
            system=agent.system_prompt,
            max_output=settings.max_tokens,
            choice=self.choice,
            summarise=summarise,
        )

    # -- the lifecycle ---------------------------------------------------------------------

    async def run(self, *, hold: bool = False) -> PhaseOutcome:
        """The phase's stages in order; a phase that fails says in which stage and why."""
        try:
            await self.stages(hold=hold)
        except PhaseFailed as failure:
            return self.outcome("FAILED", error=str(failure))
        return self.outcome("COMPLETED")

    def outcome(self, state: PhaseEnd, *, error: str | None = None) -> PhaseOutcome:
        final = self.data.get("finalValidation")
        accepted_with_errors = state == "COMPLETED" and self.flags.get("accepted_with_errors")
        return PhaseOutcome(
            name=self.phase.name,
            state=state,
            outputs=self.outputs,
            flags=dict(self.flags),
            error=error,
            failed_checks=dict(final) if accepted_with_errors and isinstance(final, dict) else {},
            approval=self.data.get("approval"),
            executed_branches=self.executed_branches,
        )

    async def stages(self, *, hold: bool) -> None:
        """The stages in order, each from the module named after its work."""
        if hold:
            await wait_until_resumed(self.waiter)
        if self.phase.options.approval is not None:
            await approve(self, self.phase.options.approval)
        has_answers = bool(self.answers)
        await self.stage("ingestion", partial(ingest, self))
        await self.stage("preProcessing", None)
        await self.stage("promptTemplating", partial(template, self) if has_answers else None)
        if self.phase.options.review == "context" and self.sources is not None:
            await review(self)
        await self.stage("inference", partial(infer, self) if has_answers or self.custom_steps else None)
        await self.stage("parsing", partial(parse, self) if has_answers else None)
        has_checks = has_answers and (bool(self.phase.outputs) or any(s.kind == "validation" for s in self.phase.steps))
        structure = has_answers and bool(self.phase.outputs)
        await self.stage("validateStructure", partial(validate_structure, self) if structure else None)
        await self.stage("validateQuality", partial(validate_quality, self) if has_checks else None)
        needs_loop = (
            has_answers
            and (self.phase.critique or self.phase.refine)
            and any(wants_loop(self, a) for a in self.answers)
        )
        await self.stage("critique", partial(loop, self) if needs_loop else None)
        await self.stage("refine", partial(refinements, self) if needs_loop and self.phase.refine else None)
        await self.stage("finalValidation", partial(final_validation, self) if has_checks else None)
        await self.stage("integration", partial(integrate, self))

    @property
    def waiter(self) -> Waiter:
        """Who waits when the phase pauses for a person: this phase, in this run."""
        return Waiter(phase=self.phase.name, definition=self.definition.name, run_id=self.runtime.flow_run_id)

    @property
    def custom_steps(self) -> list[CustomStep]:
        return [s for s in self.phase.steps if isinstance(s, CustomStep)]

    @property
    def needs_context(self) -> bool:
        return uses_context(self.definition, self.phase) or any(
            self.definition.agents[a.step.agent].context for a in self.answers
        )


async def run_lifecycle(
    definition: Definition,
    phase: Phase,
    inputs: dict[str, Any],
    upstream: dict[str, Any],
    runtime: Runtime,
    *,
    finished: Mapping[str, PhaseOutcome],
    hold: bool = False,
) -> PhaseOutcome:
    """Run the stages of ``phase`` and return how it ended (COMPLETED, or FAILED with the stage
    and the reason); each stage's end goes to the run's record as it happens. With ``hold``, first
    pause until resumed (`taskmark pause`). ``finished`` holds the phases that have ended so far."""
    return await Lifecycle(definition, phase, inputs, upstream, runtime, finished).run(hold=hold)
