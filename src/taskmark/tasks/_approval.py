"""A phase waits for a person before it starts: for an approval (its flow run pauses with
a typed form), or because `taskmark pause` asked the run to hold.

A phase with `review: context` pauses the same way before its inference, with a form to
pin and exclude context items (`taskmark resume RUN_ID --pin ID --exclude ID`).

The form is a Prefect ``RunInput``: the Prefect UI shows it on the paused run, and
`taskmark resume RUN_ID --approve|--reject` answers it from a terminal; `taskmark resume
RUN_ID` (or the UI's Resume) ends a hold.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model

from taskmark.definition import Approval

__all__ = [
    "HOLD_TIMEOUT_S",
    "REVIEW_TIMEOUT_S",
    "approval_form",
    "review_form",
    "wait_for_approval",
    "wait_for_review",
    "wait_until_resumed",
]

POLL_S = 2
"""Seconds between checks for an answer while paused (Prefect's default is 10)."""

HOLD_TIMEOUT_S = 7 * 24 * 3600
"""How long a held run waits to be resumed before its next phase fails."""

REVIEW_TIMEOUT_S = 24 * 3600
"""How long a phase with `review: context` waits for its reviewer before it fails."""


def approval_form(approval: Approval) -> Any:  # noqa: ANN401 - a RunInput subclass
    """The form an approver fills in: approve or reject, a note, and the declared fields."""
    from prefect.input import RunInput

    fields: dict[str, Any] = {
        "decision": (Literal["approve", "reject"], Field(description="Run the phase, or fail the run.")),
        "note": (str, Field(default="", description="Why; a rejection's note becomes the run's failure reason.")),
    }
    for name, requirement in approval.fields.items():
        default = ... if requirement.required else requirement.default
        fields[name] = (requirement.annotation, Field(default=default, description=requirement.description))
    return create_model("Approval", __base__=RunInput, **fields)


async def wait_for_approval(approval: Approval, prompt: str) -> dict[str, Any]:
    """Pause the current flow run until someone answers; the answer as a mapping.

    Raises:
        prefect.flow_runs.FlowPauseTimeout: Nobody answered within the approval's timeout.
    """
    from prefect.flow_runs import apause_flow_run

    form = approval_form(approval).with_initial_data(description=prompt)
    answer = await apause_flow_run(wait_for_input=form, timeout=int(approval.timeout), poll_interval=POLL_S)
    return dict(answer.model_dump(exclude={"metadata"}))


async def wait_until_resumed() -> None:
    """Pause the current flow run, with no form, until it is resumed."""
    from prefect.flow_runs import apause_flow_run

    await apause_flow_run(timeout=HOLD_TIMEOUT_S, poll_interval=POLL_S)


def review_form(ids: list[str]) -> Any:  # noqa: ANN401 - a RunInput subclass
    """The form a context reviewer fills in: items to pin, items to exclude, a note."""
    from prefect.input import RunInput

    item: Any = Literal[tuple(ids)] if ids else str
    fields: dict[str, Any] = {
        "pin": (list[item], Field(default_factory=list, description="Items every call of the phase must get.")),
        "exclude": (list[item], Field(default_factory=list, description="Items no call of the phase may get.")),
        "note": (str, Field(default="", description="Why; kept with the run.")),
    }
    return create_model("ContextReview", __base__=RunInput, **fields)


async def wait_for_review(ids: list[str], description: str) -> dict[str, Any]:
    """Pause the current flow run until someone reviews its context; their choice as a mapping.

    Raises:
        prefect.flow_runs.FlowPauseTimeout: Nobody answered within a day.
    """
    from prefect.flow_runs import apause_flow_run

    form = review_form(ids).with_initial_data(description=description)
    answer = await apause_flow_run(wait_for_input=form, timeout=REVIEW_TIMEOUT_S, poll_interval=POLL_S)
    return dict(answer.model_dump(exclude={"metadata"}))
