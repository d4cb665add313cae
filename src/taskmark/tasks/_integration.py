"""The integration stage: the phase's outputs, from its usable answers (one answer as it is,
several merged or aggregated as the aggregate step says, or reconciled by a consensus agent)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskmark.definition import AgentStep, AggregateStep
from taskmark.tasks._answers import aggregate, parse_text
from taskmark.tasks._context import PhaseFailed, StageResult

if TYPE_CHECKING:
    from taskmark.tasks._lifecycle import Lifecycle

__all__ = ["integrate"]


async def integrate(run: Lifecycle) -> StageResult:
    usable = [a for a in run.answers if a.usable]
    if any(not a.routed_out for a in run.answers) and not usable:
        reasons = "; ".join(f"{a.key}: {a.failure}" for a in run.answers)
        raise PhaseFailed(run.phase.name, "integration", f"no answer to aggregate ({reasons})")
    step = next((s for s in run.phase.steps if isinstance(s, AggregateStep)), None)
    if step is not None and step.method == "consensus":
        assert step.agent is not None
        answers = "\n\n".join(f"### {a.key}\n{a.text}" for a in usable)
        prompt = f"Reconcile these answers into one that the group can stand behind.\n\n{answers}"
        completion = await run.ask(
            "integration",
            AgentStep(agent=step.agent, prompt=prompt, location=step.location),
            prompt,
            schema=run.schema,
        )
        outputs, problem = parse_text(completion.text, completion.parsed, run.phase.outputs)
        if problem:
            raise PhaseFailed(run.phase.name, "integration", f"consensus by {step.agent}: {problem}")
    elif step is not None:
        outputs = aggregate(step.method, usable)
    elif len(usable) == 1:
        outputs = usable[0].value
    elif usable:
        outputs = aggregate("merge", usable) if run.phase.parallel else usable[-1].value
    else:
        outputs = (
            {s.kind: v for s, v in zip(run.custom_steps, run.data["inference"]["custom"].values(), strict=False)}
            if run.custom_steps
            else None
        )
    run.outputs = outputs
    return StageResult(data=outputs)
