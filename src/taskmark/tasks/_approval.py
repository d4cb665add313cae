"""A phase waits for a person before it starts: for an approval (its flow run pauses with
a typed form), or because `taskmark pause` asked the run to hold.

A phase with `review: context` pauses the same way before its inference, with a form to
pin and exclude context items (`taskmark resume RUN_ID --pin ID --exclude ID`).

The form is a Prefect ``RunInput``: the Prefect UI shows it on the paused run, and
`taskmark resume RUN_ID --approve|--reject` answers it from a terminal; `taskmark resume
RUN_ID` (or the UI's Resume) ends a hold.

Only the phase's subflow run is paused: the definition's run shows Running, with no Resume.
So each wait is told on both runs' logs — which phase waits, for what, the paused run's page
in the Prefect UI and the command that answers it — and so is each answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal
from uuid import UUID

from pydantic import Field, create_model

from taskmark.definition import Approval

__all__ = [
    "HOLD_TIMEOUT_S",
    "REVIEW_TIMEOUT_S",
    "Waiter",
    "approval_form",
    "decision_text",
    "review_form",
    "wait_for_approval",
    "wait_for_review",
    "wait_until_resumed",
    "waiting_text",
]

Wait = Literal["approval", "review", "hold"]

POLL_S = 2
"""Seconds between checks for an answer while paused (Prefect's default is 10)."""

HOLD_TIMEOUT_S = 7 * 24 * 3600
"""How long a held run waits to be resumed before its next phase fails."""

REVIEW_TIMEOUT_S = 24 * 3600
"""How long a phase with `review: context` waits for its reviewer before it fails."""


@dataclass(frozen=True)
class Waiter:
    """A phase about to wait for a person, and the run it belongs to."""

    phase: str
    definition: str
    """The definition's name: the parent flow's name."""
    run_id: str | None
    """The definition's flow run (the phase's parent), whose log people read first."""


def waiting_text(
    wait: Wait, phase: str, phase_run_id: str, run_id: str | None, page: str | None, prompt: str = ""
) -> str:
    """What a wait tells the logs: the phase, what it waits for, where and how to answer.

    ``phase_run_id`` is the paused subflow run, ``page`` its page in the Prefect UI (None
    without a UI), ``run_id`` the definition's run (a hold and a review kept as it is are
    resumed through it), ``prompt`` the approval's question.
    """
    parent = run_id or phase_run_id
    after = ""
    if wait == "approval":
        what = f"waits for approval: {prompt}"
        command = f"taskmark resume {phase_run_id} --approve|--reject [--note TEXT]"
    elif wait == "review":
        what = "waits for a review of its context"
        command = f"taskmark resume {phase_run_id} --pin ITEM --exclude ITEM"
        after = f"; `taskmark resume {parent}` goes on with the context as it is"
    else:
        what = "holds (taskmark pause)"
        command = f"taskmark resume {parent}"
    verb = "let it go on" if wait == "hold" else "answer it"
    where = f"in the Prefect UI (Resume on {page}) or with" if page else "with"
    return f"Phase '{phase}' {what} — {verb} {where} `{command}`{after}"


def decision_text(stage: str, answer: Mapping[str, Any]) -> str:
    """An answer to a wait as one line: "approved at 2026-01-02 09:30:00 UTC; note: ship it;
    channel=blog" (for the logs and the run's summary). ``stage``: approval, review or hold."""
    at = answer.get("answered_at")
    when = f" at {datetime.fromisoformat(at):%Y-%m-%d %H:%M:%S %Z}" if at else ""
    if stage == "approval":
        decision = answer.get("decision")
        head = {"approve": "approved", "reject": "rejected"}.get(str(decision), str(decision)) + when
    elif stage == "review":
        head = f"context reviewed{when}"
    else:
        return f"resumed{when} after a hold"
    parts = [head]
    if stage == "review":
        parts += [
            f"{done} {', '.join(answer[k])}"
            for k, done in (("pin", "pinned"), ("exclude", "excluded"))
            if answer.get(k)
        ]
    if answer.get("note"):
        parts.append(f"note: {answer['note']}")
    fields = {k: v for k, v in answer.items() if k not in ("decision", "note", "answered_at", "pin", "exclude")}
    if fields:
        parts.append(", ".join(f"{k}={v}" for k, v in fields.items()))
    return "; ".join(parts)


def _tell(waiter: Waiter, message: str) -> None:
    """Log ``message`` on the phase's flow run and on the definition's."""
    from prefect.logging.loggers import flow_run_logger, get_run_logger

    get_run_logger().info(message)
    if waiter.run_id is not None:
        flow_run_logger(flow_run_id=UUID(waiter.run_id), flow_name=waiter.definition).info(message)


async def _wait(waiter: Waiter, wait: Wait, form: Any, timeout: int, prompt: str = "") -> dict[str, Any]:  # noqa: ANN401 - a RunInput
    """Tell the logs, pause the current (phase) flow run until it is answered, tell the answer;
    the answer as a mapping, with the time it came as ``answered_at``."""
    from prefect.context import FlowRunContext
    from prefect.flow_runs import apause_flow_run
    from prefect.utilities.urls import url_for

    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    paused = str(context.flow_run.id)
    page = url_for("flow-run", obj_id=paused)  # as `taskmark run` prints its run's page
    _tell(waiter, waiting_text(wait, waiter.phase, paused, waiter.run_id, page, prompt))
    answer = await apause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=POLL_S)
    values = {} if answer is None else dict(answer.model_dump(exclude={"metadata"}))
    values["answered_at"] = datetime.now(timezone.utc).isoformat()
    _tell(waiter, f"Phase '{waiter.phase}' {decision_text(wait, values)}")
    return values


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


async def wait_for_approval(approval: Approval, prompt: str, waiter: Waiter) -> dict[str, Any]:
    """Pause the current flow run until someone answers; the answer as a mapping (and
    ``answered_at``, an ISO time).

    Raises:
        prefect.flow_runs.FlowPauseTimeout: Nobody answered within the approval's timeout.
    """
    form = approval_form(approval).with_initial_data(description=prompt)
    return await _wait(waiter, "approval", form, int(approval.timeout), prompt)


async def wait_until_resumed(waiter: Waiter) -> None:
    """Pause the current flow run, with no form, until it is resumed."""
    await _wait(waiter, "hold", None, HOLD_TIMEOUT_S)


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


async def wait_for_review(ids: list[str], description: str, waiter: Waiter) -> dict[str, Any]:
    """Pause the current flow run until someone reviews its context; their choice as a mapping
    (and ``answered_at``).

    Raises:
        prefect.flow_runs.FlowPauseTimeout: Nobody answered within a day.
    """
    form = review_form(ids).with_initial_data(description=description)
    return await _wait(waiter, "review", form, REVIEW_TIMEOUT_S)
