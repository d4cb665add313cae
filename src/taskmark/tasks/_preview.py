"""What each agent step of a phase would get as context, without calling a model
(`taskmark context`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskmark.context import Bundle, Choice
from taskmark.definition import Definition, Phase
from taskmark.definition._graph import ancestors
from taskmark.tasks._assembly import gather_sources
from taskmark.tasks._lifecycle import Lifecycle
from taskmark.tasks._rendering import prompt_of
from taskmark.tasks._runtime import Runtime

__all__ = ["StepPreview", "preview_context"]


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
    lifecycle = Lifecycle(definition, phase, inputs, upstream, runtime, {})
    lifecycle.sources = await gather_sources(definition, phase, upstream, {})
    lifecycle.choice = choice
    previews = []
    for answer in lifecycle.answers:
        try:
            prompt, problem = await lifecycle.render(answer.step.prompt, prompt_of("agent", answer.step)), None
        except Exception as exc:  # noqa: BLE001 - a template that needs what a preview lacks
            prompt, problem = answer.step.prompt, str(exc)
        agent = definition.agents[answer.step.agent]
        bundle = await lifecycle.bundle(agent, (answer.step.llm, *lifecycle.layers), prompt)
        previews.append(StepPreview(answer.key, await lifecycle.layout(bundle, prompt, agent), bundle, problem))
    return (previous.flow_run_id if previous else None), previews
