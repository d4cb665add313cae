"""Reading the records of many runs at once: their parts come back mixed in one query and are
told apart by flow run (no server)."""

from __future__ import annotations

import uuid
from typing import Any

from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.states import Completed, Failed

from taskmark.runs._read import records_of
from taskmark.runs.record import RECORD_ARTIFACT_TYPE


def _run(state: Any) -> FlowRun:
    return FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="r", state=state)


def _part(run: FlowRun, data: Any) -> Artifact:
    return Artifact(type=RECORD_ARTIFACT_TYPE, data=data, flow_run_id=run.id)


def _header(run: FlowRun, attempt: int = 1, **extra: Any) -> Artifact:
    data = {"part": "run", "attempt": attempt, "phase_order": ["A"], "run_id": str(run.id), "definition": {"name": "d"}}
    return _part(run, {**data, **extra})


def _phase(run: FlowRun, tokens: int, attempt: int = 1, state: str = "completed") -> Artifact:
    call = {"agent": "a", "state": "completed", "attempts": 1, "prompt_tokens": tokens, "run_attempt": attempt}
    stage = {"name": "inference", "state": "completed", "calls": [call]}
    return _part(run, {"part": "phase", "name": "A", "state": state, "run_attempt": attempt, "stages": [stage]})


def test_each_run_gets_its_own_parts_and_a_run_without_any_gets_none() -> None:
    done, retried, old = _run(Completed()), _run(Completed()), _run(Failed())
    parts = [  # oldest first, as the query returns them: runs interleaved
        _header(retried),
        _header(done),
        _phase(retried, 5, state="failed"),
        _phase(done, 3),
        _header(done, outcome="completed"),
        _header(retried, attempt=2, outcome="completed"),
        _phase(retried, 7, attempt=2),
        _part(old, "not a record part"),
    ]
    records = records_of([done, retried, old], parts)

    assert list(records) == [done.id, retried.id, old.id]
    first, second = records[done.id], records[retried.id]
    assert first is not None and second is not None and records[old.id] is None
    assert (first.run_id, first.outcome, first.totals.calls, first.totals.prompt_tokens) == (
        str(done.id),
        "completed",
        1,
        3,
    )
    assert (second.attempts, second.totals.calls, second.totals.prompt_tokens) == (2, 2, 12)  # both attempts, once


def test_no_runs_no_records() -> None:
    assert records_of([], []) == {}


def test_a_phase_whose_end_was_never_written_ends_with_its_run() -> None:
    # Prefect's own flow timeout stopped the run before the phase's end was written.
    run = _run(Failed(name="TimedOut", message="Flow run exceeded timeout of 50.0 second(s)"))
    records = records_of([run], [_header(run, outcome="timed_out"), _phase(run, 3, state="running")])

    record = records[run.id]
    assert record is not None and record.outcome == "timed_out"
    assert [(p.name, p.state) for p in record.phases] == [("A", "timed_out")]
