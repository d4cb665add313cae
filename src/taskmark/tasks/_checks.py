"""The parsing and checking stages: each answer parsed into the phase's outputs, checked for
structure (the declared outputs) and quality (the validation steps), and checked again last."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskmark.tasks._answers import Answer, check_quality, check_structure, parse_text
from taskmark.tasks._context import PhaseFailed, StageResult

if TYPE_CHECKING:
    from taskmark.tasks._lifecycle import Lifecycle

__all__ = ["check", "final_validation", "parse", "validate_quality", "validate_structure"]


async def parse(run: Lifecycle) -> StageResult:
    problems = {}
    for answer in run.answers:
        if answer.usable:
            answer.value, problem = parse_text(
                answer.text or "", answer.value if isinstance(answer.value, dict) else None, run.phase.outputs
            )
            if problem:
                answer.errors = [problem]
                problems[answer.key] = problem
    return StageResult(
        data={a.key: a.value for a in run.answers if a.usable}, logs=[f"{k}: {p}" for k, p in problems.items()]
    )


def check(run: Lifecycle, answer: Answer) -> list[str]:
    if answer.value is None:
        return answer.errors or ["the reply could not be parsed"]
    return check_structure(answer.value, run.schema) + check_quality(answer.value, run.phase, run.names())


async def validate_structure(run: Lifecycle) -> StageResult:
    found = {a.key: check_structure(a.value, run.schema) for a in run.answers if a.usable}
    return StageResult(data=found, flags={"structure_ok": not any(found.values())})


async def validate_quality(run: Lifecycle) -> StageResult:
    for answer in run.answers:
        if answer.usable:
            answer.errors = check(run, answer)
    failing = {a.key: a.errors for a in run.answers if a.usable and a.errors}
    if failing and not (run.phase.critique or run.phase.refine):
        fail_answers(run, "validateQuality", failing)
    return StageResult(data=failing, flags={"quality_ok": not failing})


async def final_validation(run: Lifecycle) -> StageResult:
    remaining = {}
    for answer in run.answers:
        if answer.usable:
            answer.errors = check(run, answer)
            if answer.errors:
                remaining[answer.key] = answer.errors
    if remaining and not run.phase.refine:
        fail_answers(run, "finalValidation", remaining)
    # A refine loop that ended at its limit passes its last output on, flagged.
    return StageResult(data=remaining, flags={"accepted_with_errors": sorted(remaining)} if remaining else {})


def fail_answers(run: Lifecycle, stage: str, failing: dict[str, list[str]]) -> None:
    """Drop answers that failed checks; fail the phase when its output cannot be formed."""
    for answer in run.answers:
        if answer.key in failing:
            answer.failure = failing[answer.key][0]
    if not run.phase.parallel or not any(a.usable for a in run.answers):
        first = next(iter(failing.values()))[0]
        raise PhaseFailed(run.phase.name, stage, first)
