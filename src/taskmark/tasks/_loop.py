"""The critique and refine stages: each answer that failed its checks (or every answer, with
`when: always`) is critiqued and revised, round by round, until it passes or the limit is hit."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from taskmark.errors import ProviderError
from taskmark.tasks._answers import Answer, parse_text
from taskmark.tasks._checks import check
from taskmark.tasks._context import PhaseFailed, StageResult
from taskmark.tasks._rendering import prompt_of

if TYPE_CHECKING:
    from taskmark.tasks._lifecycle import Lifecycle

__all__ = ["loop", "refinements", "wants_loop"]


def wants_loop(run: Lifecycle, answer: Answer) -> bool:
    always = run.phase.critique is not None and getattr(run.phase.critique.options, "when", "") == "always"
    return answer.usable and (bool(answer.errors) or always)


async def loop(run: Lifecycle) -> StageResult:
    """Critique and refine each answer that needs it, at most maxRefinements times.

    Each round's revised answer is parsed and checked again before the next.
    """
    refine = run.phase.refine
    limit = getattr(refine.options, "max_refinements", 0) if refine else 0
    critiques: dict[str, list[str]] = {}

    async def one(answer: Answer) -> None:
        rounds = 0
        # The first round runs when quality failed (or always); later ones while it fails.
        while wants_loop(run, answer) and (rounds == 0 or answer.errors):
            if refine is not None and rounds >= limit:
                break
            try:
                critique = await _critique(run, answer, rounds + 1)
                critiques.setdefault(answer.key, []).append(critique)
                if refine is None:
                    break
                rounds += 1
                await _revise(run, answer, critique, rounds)
            except (ProviderError, PhaseFailed) as error:
                answer.failure = f"Loop body failed: {error}"
                return
        answer.refinements = rounds

    await asyncio.gather(*(one(a) for a in run.answers))
    return StageResult(data=critiques)


async def refinements(run: Lifecycle) -> StageResult:
    # The reviser's calls ran inside the loop (tasks named PHASE/refine); this records them.
    return StageResult(data={a.key: a.refinements for a in run.answers})


async def _critique(run: Lifecycle, answer: Answer, loop_round: int) -> str:
    errors = "; ".join(answer.errors) or "none"
    if run.phase.critique is None:
        return errors
    texts = []
    for step in run.phase.critique.steps:
        prompt = await run.render(step.prompt, prompt_of("critique", step), output=answer.value, errors=errors)
        texts.append((await run.ask("critique", step, prompt, schema=None, loop_round=loop_round)).text)
    return "\n\n".join(texts)


async def _revise(run: Lifecycle, answer: Answer, critique: str, loop_round: int) -> None:
    assert run.phase.refine is not None
    for step in run.phase.refine.steps:
        prompt = await run.render(
            step.prompt,
            prompt_of("refine", step),
            output=answer.value,
            critique=critique,
            errors="; ".join(answer.errors) or "none",
        )
        completion = await run.ask("refine", step, prompt, schema=run.schema, loop_round=loop_round)
        answer.text = completion.text
        answer.value, problem = parse_text(completion.text, completion.parsed, run.phase.outputs)
        answer.errors = [problem] if problem else []
    answer.errors = check(run, answer)
