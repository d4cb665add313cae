"""The phase lifecycle: eleven stages in order, each with work a Prefect task named `PHASE/stage`.

A stage with nothing to do is recorded as skipped without a task run. Every agent call is a
task of its own (`PHASE/inference`, `PHASE/critique`, ...), so a parallel phase's calls run at
the same time and one failing call does not stop its siblings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskmark._engine import run_stage
from taskmark.context import Bundle, Choice, render
from taskmark.definition import (
    Agent,
    AgentStep,
    AggregateStep,
    Approval,
    ContextOptions,
    CustomStep,
    Definition,
    LLMSettings,
    Phase,
    evaluate,
    merge_context,
    render_template,
)
from taskmark.definition._graph import ancestors
from taskmark.errors import ProviderError, TaskmarkError
from taskmark.tasks._answers import Answer, aggregate, check_quality, check_structure, output_schema, parse_text
from taskmark.tasks._approval import Waiter, wait_for_approval, wait_for_review, wait_until_resumed
from taskmark.tasks._assembly import Sources, bundle_for, gather_sources, uses_context
from taskmark.tasks._context import PhaseEnd, PhaseOutcome, StageResult, StageStatus
from taskmark.tasks._handlers import call_handler
from taskmark.tasks._rendering import render_prompt
from taskmark.tasks._runtime import RecordSink, Runtime
from taskmark.tasks._snapshots import store_snapshot
from taskmark.tasks._strategies import run_custom_step

__all__ = ["PhaseFailed", "StepPreview", "preview_context", "run_lifecycle"]


class PhaseFailed(TaskmarkError):
    """A phase could not produce its outputs; the message says which stage and why."""

    def __init__(self, phase: str, stage: str, reason: str) -> None:
        self.phase, self.stage, self.reason = phase, stage, reason
        super().__init__(f"phase '{phase}' failed in {stage}: {reason}")


class _Lifecycle:
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
        if hold:
            await wait_until_resumed(self.waiter)
        if self.phase.options.approval is not None:
            await self.approve(self.phase.options.approval)
        await self.stage("ingestion", self.ingest)
        await self.stage("preProcessing", None)
        await self.stage("promptTemplating", self.template if self.answers else None)
        if self.phase.options.review == "context" and self.sources is not None:
            await self.review()
        await self.stage("inference", self.infer if self.answers or self.custom_steps else None)
        await self.stage("parsing", self.parse if self.answers else None)
        has_checks = bool(self.phase.outputs) or any(s.kind == "validation" for s in self.phase.steps)
        await self.stage("validateStructure", self.validate_structure if self.phase.outputs and self.answers else None)
        await self.stage("validateQuality", self.validate_quality if has_checks and self.answers else None)
        needs_loop = (
            self.answers
            and (self.phase.critique or self.phase.refine)
            and any(self.wants_loop(a) for a in self.answers)
        )
        await self.stage("critique", self.loop if needs_loop else None)
        await self.stage("refine", self.refinements if needs_loop and self.phase.refine else None)
        await self.stage("finalValidation", self.final_validation if has_checks and self.answers else None)
        await self.stage("integration", self.integrate)

    async def approve(self, approval: Approval) -> None:
        """Wait for a person's decision; a rejection fails the phase with their note."""
        prompt = (
            await self.render(
                approval.prompt,
                f"the approval prompt of phase '{self.phase.name}' ({approval.location or self.phase.location})",
            )
            if approval.prompt
            else f"Start phase '{self.phase.name}' of {self.definition.name}?"
        )
        started = time.perf_counter()
        try:
            answer = await wait_for_approval(approval, prompt, self.waiter)
        except Exception as exc:  # a pause that timed out or could not be made
            self.ended("approval", "failed", duration_s=time.perf_counter() - started, error=str(exc))
            raise PhaseFailed(self.phase.name, "approval", str(exc) or type(exc).__name__) from exc
        rejected = answer["decision"] != "approve"
        self.ended(
            "approval",
            "failed" if rejected else "completed",
            StageResult(data=answer),
            duration_s=time.perf_counter() - started,
        )
        if rejected:
            raise PhaseFailed(self.phase.name, "approval", f"rejected: {answer['note'] or 'no reason given'}")
        self.approval = answer

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

    async def ingest(self) -> StageResult:
        data: dict[str, Any] = {"inputs": sorted(self.inputs), "phases": sorted(self.upstream)}
        if self.needs_context:
            done = {n: o.outputs for n, o in self.finished.items() if o.state == "COMPLETED" and n != self.phase.name}
            self.sources = await gather_sources(self.definition, self.phase, self.upstream, done)
            data |= {"context": self.sources.ids, "absent": {a.id: a.reason for a in self.sources.absent}}
        return StageResult(data=data)

    async def review(self) -> None:
        """Show each step's candidate bundle and wait for a person to pin and exclude items."""
        from prefect.artifacts import acreate_markdown_artifact

        assert self.sources is not None
        started = time.perf_counter()
        previews = [
            (
                a.key,
                await self.bundle(
                    self.definition.agents[a.step.agent], (a.step.llm, *self.layers), a.prompt or a.step.prompt
                ),
            )
            for a in self.answers
        ]
        await acreate_markdown_artifact(
            markdown=review_markdown(self.phase.name, previews),
            description=f"Context for {self.phase.name}: pin or exclude items",
        )
        try:
            answer = await wait_for_review(
                self.sources.ids,
                f"Review the context of phase '{self.phase.name}': pin items every call must get, exclude items none may get.",
                self.waiter,
            )
        except Exception as exc:  # a pause that timed out or could not be made
            self.ended("review", "failed", duration_s=time.perf_counter() - started, error=str(exc))
            raise PhaseFailed(self.phase.name, "review", str(exc) or type(exc).__name__) from exc
        self.choice = Choice(pin=tuple(answer["pin"]), exclude=tuple(answer["exclude"]), note=answer["note"])
        self.ended("review", "completed", StageResult(data=answer), duration_s=time.perf_counter() - started)

    async def template(self) -> StageResult:
        # Prompts that read earlier steps are rendered just before their call (inference).
        for answer in self.answers:
            if "steps" not in answer.step.prompt:
                answer.prompt = await self.render(answer.step.prompt, _prompt_of("agent", answer.step))
        return StageResult(data={a.key: a.prompt for a in self.answers if a.prompt is not None})

    async def pick_branches(self) -> None:
        """Run the route step: only the agent steps it names run (``executed_branches``)."""
        route = self.phase.route()
        if route is None:
            return
        branches = [a.key for a in self.answers]
        if route.expression is not None:
            picked = evaluate(route.expression, self.names(branches=branches))
        else:
            assert route.agent is not None and route.prompt is not None
            schema = {
                "type": "object",
                "properties": {"branches": {"type": "array", "items": {"type": "string", "enum": branches}}},
                "required": ["branches"],
            }
            prompt = await self.render(
                route.prompt, f"the prompt of route by '{route.agent}' ({route.location})", branches=branches
            )
            completion = await self.ask(
                "inference",
                AgentStep(agent=route.agent, prompt=route.prompt, location=route.location),
                prompt,
                schema=schema,
            )
            parsed = completion.parsed if isinstance(completion.parsed, dict) else None
            if parsed is None:
                raise PhaseFailed(
                    self.phase.name,
                    "inference",
                    f'route by {route.agent}: expected JSON {{"branches": [...]}}; found {completion.text[:80]!r}',
                )
            picked = parsed.get("branches", [])
        picked = [picked] if isinstance(picked, str) else list(picked or [])
        unknown = [p for p in picked if p not in branches]
        if unknown:
            raise PhaseFailed(
                self.phase.name, "inference", f"route picked unknown branches {unknown}; branches are {branches}"
            )
        for answer in self.answers:
            answer.routed_out = answer.key not in picked
        self.executed_branches = [b for b in branches if b in picked]

    async def infer(self) -> StageResult:
        await self.pick_branches()

        async def one(answer: Answer) -> None:
            if answer.routed_out:
                return
            if answer.prompt is None:
                answer.prompt = await self.render(answer.step.prompt, _prompt_of("agent", answer.step))
            try:
                completion = await self.ask("inference", answer.step, answer.prompt, schema=self.schema)
            except ProviderError as error:
                answer.failure = str(error)
                return
            answer.text, answer.model = completion.text, completion.model
            # The parsing stage decides the value; until then later steps see the provider's parse.
            answer.value = completion.parsed if isinstance(completion.parsed, dict) else completion.text

        if self.phase.parallel:
            await asyncio.gather(*(one(a) for a in self.answers))
        else:
            for answer in self.answers:
                await one(answer)
                if answer.failure:
                    raise PhaseFailed(self.phase.name, "inference", answer.failure)
        failed = [a for a in self.answers if a.failure]
        if self.answers and failed and len(failed) == sum(1 for a in self.answers if not a.routed_out):
            raise PhaseFailed(self.phase.name, "inference", failed[0].failure or "every call failed")
        custom = {s.kind: await run_custom_step(s, self.names()) for s in self.custom_steps}
        return StageResult(
            data={
                "answers": {a.key: a.text for a in self.answers},
                "models": {a.key: a.model for a in self.answers if a.model},
                "custom": custom,
            },
            logs=[f"{a.key}: {a.failure}" for a in failed],
        )

    async def parse(self) -> StageResult:
        problems = {}
        for answer in self.answers:
            if answer.usable:
                answer.value, problem = parse_text(
                    answer.text or "", answer.value if isinstance(answer.value, dict) else None, self.phase.outputs
                )
                if problem:
                    answer.errors = [problem]
                    problems[answer.key] = problem
        return StageResult(
            data={a.key: a.value for a in self.answers if a.usable}, logs=[f"{k}: {p}" for k, p in problems.items()]
        )

    def check(self, answer: Answer) -> list[str]:
        if answer.value is None:
            return answer.errors or ["the reply could not be parsed"]
        return check_structure(answer.value, self.schema) + check_quality(answer.value, self.phase, self.names())

    async def validate_structure(self) -> StageResult:
        found = {a.key: check_structure(a.value, self.schema) for a in self.answers if a.usable}
        return StageResult(data=found, flags={"structure_ok": not any(found.values())})

    async def validate_quality(self) -> StageResult:
        for answer in self.answers:
            if answer.usable:
                answer.errors = self.check(answer)
        failing = {a.key: a.errors for a in self.answers if a.usable and a.errors}
        if failing and not (self.phase.critique or self.phase.refine):
            self.fail_answers("validateQuality", failing)
        return StageResult(data=failing, flags={"quality_ok": not failing})

    def wants_loop(self, answer: Answer) -> bool:
        always = self.phase.critique is not None and getattr(self.phase.critique.options, "when", "") == "always"
        return answer.usable and (bool(answer.errors) or always)

    async def loop(self) -> StageResult:
        """Critique and refine each answer that needs it, at most maxRefinements times.

        Each round's revised answer is parsed and checked again before the next.
        """
        refine = self.phase.refine
        limit = getattr(refine.options, "max_refinements", 0) if refine else 0
        critiques: dict[str, list[str]] = {}

        async def one(answer: Answer) -> None:
            rounds = 0
            # The first round runs when quality failed (or always); later ones while it fails.
            while self.wants_loop(answer) and (rounds == 0 or answer.errors):
                if refine is not None and rounds >= limit:
                    break
                try:
                    critique = await self.critique(answer, rounds + 1)
                    critiques.setdefault(answer.key, []).append(critique)
                    if refine is None:
                        break
                    rounds += 1
                    await self.revise(answer, critique, rounds)
                except (ProviderError, PhaseFailed) as error:
                    answer.failure = f"Loop body failed: {error}"
                    return
            answer.refinements = rounds

        await asyncio.gather(*(one(a) for a in self.answers))
        return StageResult(data=critiques)

    async def refinements(self) -> StageResult:
        # The reviser's calls ran inside the loop (tasks named PHASE/refine); this records them.
        return StageResult(data={a.key: a.refinements for a in self.answers})

    async def critique(self, answer: Answer, loop_round: int) -> str:
        errors = "; ".join(answer.errors) or "none"
        if self.phase.critique is None:
            return errors
        texts = []
        for step in self.phase.critique.steps:
            prompt = await self.render(step.prompt, _prompt_of("critique", step), output=answer.value, errors=errors)
            texts.append((await self.ask("critique", step, prompt, schema=None, loop_round=loop_round)).text)
        return "\n\n".join(texts)

    async def revise(self, answer: Answer, critique: str, loop_round: int) -> None:
        assert self.phase.refine is not None
        for step in self.phase.refine.steps:
            prompt = await self.render(
                step.prompt,
                _prompt_of("refine", step),
                output=answer.value,
                critique=critique,
                errors="; ".join(answer.errors) or "none",
            )
            completion = await self.ask("refine", step, prompt, schema=self.schema, loop_round=loop_round)
            answer.text = completion.text
            answer.value, problem = parse_text(completion.text, completion.parsed, self.phase.outputs)
            answer.errors = [problem] if problem else []
        answer.errors = self.check(answer)

    async def final_validation(self) -> StageResult:
        remaining = {}
        for answer in self.answers:
            if answer.usable:
                answer.errors = self.check(answer)
                if answer.errors:
                    remaining[answer.key] = answer.errors
        if remaining and not self.phase.refine:
            self.fail_answers("finalValidation", remaining)
        # A refine loop that ended at its limit passes its last output on, flagged.
        return StageResult(data=remaining, flags={"accepted_with_errors": sorted(remaining)} if remaining else {})

    def fail_answers(self, stage: str, failing: dict[str, list[str]]) -> None:
        """Drop answers that failed checks; fail the phase when its output cannot be formed."""
        for answer in self.answers:
            if answer.key in failing:
                answer.failure = failing[answer.key][0]
        if not self.phase.parallel or not any(a.usable for a in self.answers):
            first = next(iter(failing.values()))[0]
            raise PhaseFailed(self.phase.name, stage, first)

    async def integrate(self) -> StageResult:
        usable = [a for a in self.answers if a.usable]
        if any(not a.routed_out for a in self.answers) and not usable:
            reasons = "; ".join(f"{a.key}: {a.failure}" for a in self.answers)
            raise PhaseFailed(self.phase.name, "integration", f"no answer to aggregate ({reasons})")
        step = next((s for s in self.phase.steps if isinstance(s, AggregateStep)), None)
        if step is not None and step.method == "consensus":
            assert step.agent is not None
            answers = "\n\n".join(f"### {a.key}\n{a.text}" for a in usable)
            prompt = f"Reconcile these answers into one that the group can stand behind.\n\n{answers}"
            completion = await self.ask(
                "integration",
                AgentStep(agent=step.agent, prompt=prompt, location=step.location),
                prompt,
                schema=self.schema,
            )
            outputs, problem = parse_text(completion.text, completion.parsed, self.phase.outputs)
            if problem:
                raise PhaseFailed(self.phase.name, "integration", f"consensus by {step.agent}: {problem}")
        elif step is not None:
            outputs = aggregate(step.method, usable)
        elif len(usable) == 1:
            outputs = usable[0].value
        elif usable:
            outputs = aggregate("merge", usable) if self.phase.parallel else usable[-1].value
        else:
            outputs = (
                {s.kind: v for s, v in zip(self.custom_steps, self.data["inference"]["custom"].values(), strict=False)}
                if self.custom_steps
                else None
            )
        self.outputs = outputs
        return StageResult(data=outputs)


def _prompt_of(kind: str, step: AgentStep) -> str:
    """A step's prompt, for messages: "the prompt of agent 'writer' (flow.md:12:3)"."""
    return f"the prompt of {kind} '{step.agent}' ({step.location})"


def review_markdown(phase: str, previews: list[tuple[str, Bundle]]) -> str:
    """Each step's candidate bundle as markdown: what is in, what is out, and why."""
    lines = [f"# Context of {phase}", ""]
    for key, bundle in previews:
        lines += [
            f"## {key} — {bundle.used} of {bundle.budget} tokens",
            "",
            "| item | kind | tokens | why |",
            "| --- | --- | --- | --- |",
        ]
        lines += [f"| `{i.id}` | {i.kind} | {i.tokens} | {i.reason} |" for i in bundle.items]
        lines += [f"| ~~`{o.id}`~~ | {o.kind} | {o.tokens} | {o.reason} |" for o in bundle.left_out]
        lines.append("")
    return "\n".join(lines)


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
    return await _Lifecycle(definition, phase, inputs, upstream, runtime, finished).run(hold=hold)


@dataclass(frozen=True)
class StepPreview:
    """The bundle one agent step of a phase would get (`taskmark context`)."""

    step: str
    prompt: str
    bundle: Bundle
    problem: str | None = None
    """Why the prompt could not be rendered (the template is ranked as written instead)."""


async def preview_context(
    definition: Definition, phase: Phase, inputs: dict[str, Any], runtime: Runtime, choice: Choice
) -> tuple[str | None, list[StepPreview]]:
    """Each agent step's bundle, without calling a model: inputs not given take their defaults,
    and the phases before ``phase`` are taken from the definition's most recent completed run.
    Returns that run's id (None when there is none) and the previews."""
    from taskmark.tasks._referred import latest_runs

    inputs = definition.metadata.inputs.filled(inputs)
    previous = (await latest_runs({definition.name})).get(definition.name)
    outputs = previous.outputs if previous else {}
    edges = {p.name: p.depends_on for p in definition.phases}
    upstream = {n: outputs[n] for n in sorted(ancestors(edges, phase.name)) if n in outputs}
    lifecycle = _Lifecycle(definition, phase, inputs, upstream, runtime, {})
    lifecycle.sources = await gather_sources(definition, phase, upstream, {})
    lifecycle.choice = choice
    previews = []
    for answer in lifecycle.answers:
        try:
            prompt, problem = await lifecycle.render(answer.step.prompt, _prompt_of("agent", answer.step)), None
        except Exception as exc:  # noqa: BLE001 - a template that needs what a preview lacks
            prompt, problem = answer.step.prompt, str(exc)
        agent = definition.agents[answer.step.agent]
        bundle = await lifecycle.bundle(agent, (answer.step.llm, *lifecycle.layers), prompt)
        previews.append(StepPreview(answer.key, await lifecycle.layout(bundle, prompt, agent), bundle, problem))
    return (previous.flow_run_id if previous else None), previews
