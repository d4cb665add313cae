"""What a phase waiting for a person tells its run's log, and how an answer reads."""

from __future__ import annotations

from taskmark.tasks._approval import decision_text, waiting_text

PAGE = "http://127.0.0.1:4200/runs/flow-run/phase-1"


def test_an_approval_names_the_phase_question_page_and_command() -> None:
    text = waiting_text("approval", "Publish", "phase-1", "run-1", PAGE, "Publish the draft?")
    assert text == (
        "Phase 'Publish' waits for approval: Publish the draft? — answer it in the Prefect UI "
        f"(Resume on {PAGE}) or with `taskmark resume phase-1 --approve|--reject [--note TEXT]`"
    )


def test_a_review_and_a_hold_say_how_to_go_on() -> None:
    review = waiting_text("review", "Analyse", "phase-1", "run-1", None)
    assert review == (
        "Phase 'Analyse' waits for a review of its context — answer it with "
        "`taskmark resume phase-1 --pin ITEM --exclude ITEM`; `taskmark resume run-1` goes on with the context as it is"
    )
    hold = waiting_text("hold", "Two", "phase-1", "run-1", PAGE)
    assert (
        hold
        == f"Phase 'Two' holds (taskmark pause) — let it go on in the Prefect UI (Resume on {PAGE}) or with `taskmark resume run-1`"
    )


def test_decisions_read_as_one_line_with_time_note_and_fields() -> None:
    at = "2026-01-02T09:30:00+00:00"
    approved = {"decision": "approve", "note": "ship it", "channel": "blog", "copies": 3, "answered_at": at}
    assert (
        decision_text("approval", approved)
        == "approved at 2026-01-02 09:30:00 UTC; note: ship it; channel=blog, copies=3"
    )
    assert decision_text("approval", {"decision": "reject", "note": ""}) == "rejected"
    review = {"pin": ["doc:a"], "exclude": ["doc:b", "doc:c"], "note": "", "answered_at": at}
    assert (
        decision_text("review", review)
        == "context reviewed at 2026-01-02 09:30:00 UTC; pinned doc:a; excluded doc:b, doc:c"
    )
    assert decision_text("hold", {"answered_at": at}) == "resumed at 2026-01-02 09:30:00 UTC after a hold"
