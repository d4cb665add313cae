"""The stages where a person decides: the approval a phase waits for before it starts, and the
review of the context its calls would get (pin or exclude items) before they are sent."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from taskmark.context import Bundle, Choice
from taskmark.definition import Approval
from taskmark.tasks._approval import wait_for_approval, wait_for_review
from taskmark.tasks._context import PhaseFailed, StageResult

if TYPE_CHECKING:
    from taskmark.tasks._lifecycle import Lifecycle

__all__ = ["approve", "review", "review_markdown"]


async def approve(run: Lifecycle, approval: Approval) -> None:
    """Wait for a person's decision; a rejection fails the phase with their note."""
    prompt = (
        await run.render(
            approval.prompt,
            f"the approval prompt of phase '{run.phase.name}' ({approval.location or run.phase.location})",
        )
        if approval.prompt
        else f"Start phase '{run.phase.name}' of {run.definition.name}?"
    )
    started = time.perf_counter()
    try:
        answer = await wait_for_approval(approval, prompt, run.waiter)
    except Exception as exc:  # a pause that timed out or could not be made
        run.ended("approval", "failed", duration_s=time.perf_counter() - started, error=str(exc))
        raise PhaseFailed(run.phase.name, "approval", str(exc) or type(exc).__name__) from exc
    rejected = answer["decision"] != "approve"
    run.ended(
        "approval",
        "failed" if rejected else "completed",
        StageResult(data=answer),
        duration_s=time.perf_counter() - started,
    )
    if rejected:
        raise PhaseFailed(run.phase.name, "approval", f"rejected: {answer['note'] or 'no reason given'}")
    run.approval = answer


async def review(run: Lifecycle) -> None:
    """Show each step's candidate bundle and wait for a person to pin and exclude items."""
    from prefect.artifacts import acreate_markdown_artifact

    assert run.sources is not None
    started = time.perf_counter()
    previews = [
        (
            a.key,
            await run.bundle(run.definition.agents[a.step.agent], (a.step.llm, *run.layers), a.prompt or a.step.prompt),
        )
        for a in run.answers
    ]
    await acreate_markdown_artifact(
        markdown=review_markdown(run.phase.name, previews),
        description=f"Context for {run.phase.name}: pin or exclude items",
    )
    try:
        answer = await wait_for_review(
            run.sources.ids,
            f"Review the context of phase '{run.phase.name}': pin items every call must get, exclude items none may get.",
            run.waiter,
        )
    except Exception as exc:  # a pause that timed out or could not be made
        run.ended("review", "failed", duration_s=time.perf_counter() - started, error=str(exc))
        raise PhaseFailed(run.phase.name, "review", str(exc) or type(exc).__name__) from exc
    run.choice = Choice(pin=tuple(answer["pin"]), exclude=tuple(answer["exclude"]), note=answer["note"])
    run.ended("review", "completed", StageResult(data=answer), duration_s=time.perf_counter() - started)


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
