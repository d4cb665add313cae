"""The prompt templating and inference stages: each agent step's prompt, the route that picks
which steps run, and the calls (at once in a parallel phase, else in order), then custom steps."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from taskmark.definition import AgentStep, evaluate
from taskmark.errors import ProviderError
from taskmark.tasks._answers import Answer
from taskmark.tasks._context import PhaseFailed, StageResult
from taskmark.tasks._rendering import prompt_of
from taskmark.tasks._strategies import run_custom_step

if TYPE_CHECKING:
    from taskmark.tasks._lifecycle import Lifecycle

__all__ = ["infer", "template"]


async def template(run: Lifecycle) -> StageResult:
    # Prompts that read earlier steps are rendered just before their call (inference).
    for answer in run.answers:
        if "steps" not in answer.step.prompt:
            answer.prompt = await run.render(answer.step.prompt, prompt_of("agent", answer.step))
    return StageResult(data={a.key: a.prompt for a in run.answers if a.prompt is not None})


async def _pick_branches(run: Lifecycle) -> None:
    """Run the route step: only the agent steps it names run (``executed_branches``)."""
    route = run.phase.route()
    if route is None:
        return
    branches = [a.key for a in run.answers]
    if route.expression is not None:
        picked = evaluate(route.expression, run.names(branches=branches))
    else:
        assert route.agent is not None and route.prompt is not None
        schema = {
            "type": "object",
            "properties": {"branches": {"type": "array", "items": {"type": "string", "enum": branches}}},
            "required": ["branches"],
        }
        prompt = await run.render(
            route.prompt, f"the prompt of route by '{route.agent}' ({route.location})", branches=branches
        )
        completion = await run.ask(
            "inference",
            AgentStep(agent=route.agent, prompt=route.prompt, location=route.location),
            prompt,
            schema=schema,
        )
        parsed = completion.parsed if isinstance(completion.parsed, dict) else None
        if parsed is None:
            raise PhaseFailed(
                run.phase.name,
                "inference",
                f'route by {route.agent}: expected JSON {{"branches": [...]}}; found {completion.text[:80]!r}',
            )
        picked = parsed.get("branches", [])
    picked = [picked] if isinstance(picked, str) else list(picked or [])
    unknown = [p for p in picked if p not in branches]
    if unknown:
        raise PhaseFailed(
            run.phase.name, "inference", f"route picked unknown branches {unknown}; branches are {branches}"
        )
    for answer in run.answers:
        answer.routed_out = answer.key not in picked
    run.executed_branches = [b for b in branches if b in picked]


async def infer(run: Lifecycle) -> StageResult:
    await _pick_branches(run)

    async def one(answer: Answer) -> None:
        if answer.routed_out:
            return
        if answer.prompt is None:
            answer.prompt = await run.render(answer.step.prompt, prompt_of("agent", answer.step))
        try:
            completion = await run.ask("inference", answer.step, answer.prompt, schema=run.schema)
        except ProviderError as error:
            answer.failure = str(error)
            return
        answer.text, answer.model = completion.text, completion.model
        # The parsing stage decides the value; until then later steps see the provider's parse.
        answer.value = completion.parsed if isinstance(completion.parsed, dict) else completion.text

    if run.phase.parallel:
        await asyncio.gather(*(one(a) for a in run.answers))
    else:
        for answer in run.answers:
            await one(answer)
            if answer.failure:
                raise PhaseFailed(run.phase.name, "inference", answer.failure)
    failed = [a for a in run.answers if a.failure]
    if run.answers and failed and len(failed) == sum(1 for a in run.answers if not a.routed_out):
        raise PhaseFailed(run.phase.name, "inference", failed[0].failure or "every call failed")
    custom = {s.kind: await run_custom_step(s, run.names()) for s in run.custom_steps}
    return StageResult(
        data={
            "answers": {a.key: a.text for a in run.answers},
            "models": {a.key: a.model for a in run.answers if a.model},
            "custom": custom,
        },
        logs=[f"{a.key}: {a.failure}" for a in failed],
    )
