"""The run record's shape and how a record is put together from its parts (no server)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled, Completed, Crashed, Running

from taskmark.runs._read import RecordMissing, record_of
from taskmark.runs.record import SCHEMA_VERSION, CallRecord, RunRecord, Totals

SCHEMA = Path(__file__).parents[3] / "docs" / "run-record.schema.json"
T0 = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)


def test_the_published_schema_is_the_models() -> None:
    published = json.loads(SCHEMA.read_text())
    assert published == RunRecord.model_json_schema(mode="serialization"), (
        "docs/run-record.schema.json is stale: regenerate it from RunRecord.model_json_schema(mode='serialization')"
    )
    assert published["properties"]["schema_version"]["default"] == SCHEMA_VERSION


def test_totals_count_each_paid_request_once() -> None:
    calls = [
        CallRecord(agent="a", state="completed", attempts=2, prompt_tokens=10, completion_tokens=5, cost_usd=0.5),
        CallRecord(agent="b", state="completed", attempts=1, prompt_tokens=3, completion_tokens=1, cost_usd=None),
        CallRecord(agent="a", state="completed", cached=True),
        CallRecord(agent="c", state="failed", attempts=3, error="HTTP 503"),
    ]
    assert Totals.of(calls) == Totals(
        calls=2,
        failed_calls=1,
        cached_calls=1,
        requests=6,
        prompt_tokens=13,
        completion_tokens=6,
        cost_usd=0.5,
        unpriced_calls=1,
    )


def _run(state: Any, run_count: int = 1) -> FlowRun:
    return FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="r", state=state, run_count=run_count)


def _header(**extra: Any) -> dict[str, Any]:
    return {
        "part": "run",
        "attempt": 1,
        "phase_order": ["A", "B"],
        "run_id": "x",
        "definition": {"name": "d"},
        "outcome": "running",
        "started": T0.isoformat(),
        **extra,
    }


def _phase(name: str, state: str, attempt: int = 1, **extra: Any) -> dict[str, Any]:
    return {"part": "phase", "name": name, "state": state, "run_attempt": attempt, **extra}


def test_a_run_crashed_from_outside_takes_that_outcome_where_it_had_not_ended() -> None:
    run = _run(Crashed(message="no heartbeat for 90 s"))
    record = record_of(run, [_header(), _phase("B", "running"), _phase("A", "completed", outputs="x")])
    assert record.outcome == "crashed" and record.error == "no heartbeat for 90 s"
    assert [(p.name, p.state) for p in record.phases] == [("A", "completed"), ("B", "crashed")]


def test_a_cancelled_run_overrides_even_a_written_outcome() -> None:
    record = record_of(_run(Cancelled(message="stopped")), [_header(outcome="completed"), _phase("A", "pending")])
    assert record.outcome == "cancelled" and record.phases[0].state == "cancelled"


def test_a_live_run_reads_as_running_and_a_lost_last_write_reads_from_the_state() -> None:
    assert record_of(_run(Running()), [_header()]).outcome == "running"
    assert record_of(_run(Completed()), [_header()]).outcome == "completed"


def test_attempts_keep_earlier_phase_records_and_the_latest_wins() -> None:
    parts = [
        _header(),
        _phase("A", "completed"),
        _phase("B", "failed", error="boom"),
        _header(attempt=2, outcome="completed"),
        _phase("B", "completed", attempt=2),
        _phase("A", "completed", attempt=2),
    ]
    record = record_of(_run(Completed(), run_count=2), parts)
    assert record.attempts == 2 and record.outcome == "completed"
    assert [(p.name, p.run_attempt) for p in record.phases] == [("A", 2), ("B", 2)]
    assert [(p.name, p.state) for p in record.earlier] == [("A", "completed"), ("B", "failed")]


def test_a_run_without_a_record_says_an_older_taskmark_ran_it() -> None:
    with pytest.raises(RecordMissing, match="older than the run record"):
        record_of(_run(Completed()), [])


def test_durations_are_computed_from_start_and_end() -> None:
    call = CallRecord(agent="a", state="completed", started=T0, ended=T0 + timedelta(seconds=1.5))
    assert call.duration_s == 1.5
    assert CallRecord(agent="a", state="completed", started=T0).duration_s is None


def test_phases_that_never_started_are_pending_or_not_run() -> None:
    assert [p.state for p in record_of(_run(Running()), [_header()]).phases] == ["pending", "pending"]
    crashed = record_of(_run(Crashed()), [_header(), _phase("A", "running")])
    assert [(p.name, p.state) for p in crashed.phases] == [("A", "crashed"), ("B", "not_run")]


def test_a_run_not_started_says_so_rather_than_blaming_an_older_taskmark() -> None:
    from prefect.states import Scheduled

    with pytest.raises(RecordMissing, match="has not started yet \\(scheduled\\)"):
        record_of(_run(Scheduled()), [])
    with pytest.raises(RecordMissing, match="no run record yet"):
        record_of(_run(Running()), [])
