"""How `taskmark trace` and `taskmark runs` draw what they read: pure rendering, no server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rich.console import Console

from taskmark.cli.runs import runs_table, seconds
from taskmark.cli.trace import trace_tree
from taskmark.history import CallTrace, PhaseTrace, RunSummary, RunTrace, StageTrace, TraceTotals

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


def rendered(renderable: object) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(renderable)
    return console.export_text()


def a_trace() -> RunTrace:
    ok = CallTrace(
        agent="writer",
        state="COMPLETED",
        state_name="Completed",
        duration_s=1.5,
        model="openai/m",
        attempts=3,
        retries=2,
        prompt_tokens=11,
        completion_tokens=7,
        total_tokens=18,
        cost_usd=0.0012,
    )
    bad = CallTrace(
        agent="critic",
        state="FAILED",
        state_name="Failed",
        duration_s=0.1,
        model="openai/m",
        attempts=1,
        retries=0,
        status_code=401,
        error="openai/m: 401 invalid key [x]",
    )
    inference = StageTrace(
        name="inference",
        state="FAILED",
        state_name="Failed",
        duration_s=1.6,
        run_count=1,
        calls=[ok, bad],
        message="PhaseFailed: phase 'Draft' failed in inference: invalid key",
    )
    for call in (ok, bad):
        inference.totals.add(call)
    phase = PhaseTrace(
        name="Draft",
        flow_run_id="p1",
        state="FAILED",
        state_name="Failed",
        duration_s=1.7,
        stages=[StageTrace(name="ingestion", state="COMPLETED", duration_s=0.001), inference],
        message="phase 'Draft' failed in inference: invalid key",
        totals=inference.totals.model_copy(),
    )
    never = PhaseTrace(
        name="Polish",
        flow_run_id="p2",
        state="CANCELLED",
        state_name="NotRun",
        message="a phase it depends on did not complete",
    )
    return RunTrace(
        id="r1",
        name="brave-owl",
        definition="two-steps",
        state="FAILED",
        state_name="Failed",
        duration_s=2.0,
        phases=[phase, never],
        totals=inference.totals.model_copy(),
        artifacts=["two-steps-summary"],
        complete=True,
        message="phase 'Draft' failed in inference: invalid key",
    )


def test_trace_tree_shows_phases_stages_calls_retries_and_reasons() -> None:
    text = rendered(trace_tree(a_trace()))
    lines = [line.strip(" │├└─") for line in text.splitlines()]
    assert (
        lines[0]
        == "two-steps brave-owl (r1) — failed in 2.00s · 1 call (1 failed) · 4 requests (2 retries) · 18 tokens · $0.0012"
    )
    assert "Draft — failed 1.70s · 1 call (1 failed) · 4 requests (2 retries) · 18 tokens · $0.0012" in lines
    assert "ingestion — completed 0.00s" in lines
    assert "writer — completed 1.50s · openai/m · 3 attempts (2 retries) · 18 tokens (11 in, 7 out) · $0.0012" in lines
    assert "critic — failed 0.10s · openai/m · 1 attempt" in lines
    assert "openai/m: 401 invalid key [x]" in lines  # markup in messages is printed as it is
    assert "Polish — NotRun - · 0 calls · 0 tokens · $0.0000" in lines
    assert "a phase it depends on did not complete" in lines
    assert lines.index(
        "Draft — failed 1.70s · 1 call (1 failed) · 4 requests (2 retries) · 18 tokens · $0.0012"
    ) < lines.index("ingestion — completed 0.00s")


def test_totals_count_cached_calls_apart_and_retries_per_request() -> None:
    totals = TraceTotals()
    totals.add(CallTrace(agent="a", state="COMPLETED", attempts=2, model="m", total_tokens=5))
    totals.add(CallTrace(agent="a", state="COMPLETED", cached=True))
    totals.add(CallTrace(agent="b", state="FAILED", error="boom", attempts=3))
    assert (
        totals.calls,
        totals.cached_calls,
        totals.failed_calls,
        totals.attempts,
        totals.retries,
        totals.unpriced_calls,
    ) == (1, 1, 1, 5, 3, 1)


def test_runs_table_lists_id_definition_state_start_duration_calls_cost() -> None:
    runs = [
        RunSummary(
            id="r2",
            name="n2",
            definition="two-steps",
            state="FAILED",
            state_name="TimedOut",
            start=T0 + timedelta(minutes=1),
            duration_s=75.0,
            calls=3,
            failed_calls=1,
            cost_usd=0.5,
        ),
        RunSummary(
            id="r1", name="n1", definition="two-steps", state="CRASHED", state_name="Crashed", start=T0, duration_s=None
        ),
    ]
    lines = [line.split() for line in rendered(runs_table(runs)).splitlines()]
    assert lines[0] == ["run", "id", "definition", "state", "start", "duration", "calls", "cost", "$"]
    assert lines[1][:3] == ["r2", "two-steps", "TimedOut"] and lines[1][-5:] == [
        "1m15s",
        "3",
        "(1",
        "failed)",
        "0.5000",
    ]
    assert lines[2][:3] == ["r1", "two-steps", "crashed"] and lines[2][-3:] == ["-", "-", "-"]


def test_seconds_reads_well_at_every_scale() -> None:
    assert [seconds(v) for v in (None, 0.421, 12.34, 245.0)] == ["-", "0.42s", "12.3s", "4m05s"]


def test_history_exports_resolve() -> None:
    import taskmark.history

    exported = taskmark.history.__all__
    assert sorted(exported) == sorted(set(exported))
    assert all(hasattr(taskmark.history, name) for name in exported)


def test_a_stage_known_only_by_its_calls_takes_their_state() -> None:
    import uuid

    from prefect.client.schemas.objects import FlowRun, TaskRun
    from prefect.states import Completed, Running

    from taskmark.history import RunRecords, build_trace

    run = FlowRun(
        id=uuid.uuid4(),
        name="r",
        flow_id=uuid.uuid4(),
        state=Completed(timestamp=T0 + timedelta(seconds=9)),
        start_time=T0,
        end_time=T0 + timedelta(seconds=9),
    )
    sub = FlowRun(
        id=uuid.uuid4(),
        name="Phase: A",
        flow_id=uuid.uuid4(),
        state=Completed(timestamp=T0 + timedelta(seconds=8)),
        start_time=T0 + timedelta(seconds=1),
        end_time=T0 + timedelta(seconds=8),
    )
    call = TaskRun(
        id=uuid.uuid4(),
        name="A/refine: reviser",
        flow_run_id=sub.id,
        task_key="_infer",
        dynamic_key="0",
        state=Completed(timestamp=T0 + timedelta(seconds=4)),
        start_time=T0 + timedelta(seconds=2),
        end_time=T0 + timedelta(seconds=4),
    )
    stuck = FlowRun(
        id=uuid.uuid4(), name="Phase: B", flow_id=uuid.uuid4(), state=Running(), start_time=T0 + timedelta(seconds=2)
    )
    trace = build_trace(
        RunRecords(
            run=run, definition="d", subflows=[sub, stuck], task_runs=[call], states=[Running(timestamp=T0), run.state]
        ),
        T0,
    )

    [refine] = trace.phases[0].stages
    assert (refine.name, refine.state, refine.recorded_state, refine.duration_s, refine.task_run_id) == (
        "refine",
        "COMPLETED",
        None,
        2.0,
        None,
    )
    assert (trace.phases[1].state, trace.phases[1].recorded_state, trace.phases[1].duration_s) == (
        "COMPLETED",
        "RUNNING",
        7.0,
    )
    assert trace.complete is False  # a finished call without its event: the event is on its way


def test_a_completed_phase_whose_integration_stage_is_not_recorded_yet_is_incomplete() -> None:
    import uuid

    from prefect.client.schemas.objects import FlowRun, TaskRun
    from prefect.states import Completed, Running

    from taskmark.history import RunRecords, build_trace

    run = FlowRun(
        id=uuid.uuid4(),
        name="r",
        flow_id=uuid.uuid4(),
        state=Completed(timestamp=T0 + timedelta(seconds=9)),
        start_time=T0,
        end_time=T0 + timedelta(seconds=9),
    )
    sub = FlowRun(
        id=uuid.uuid4(),
        name="Phase: A",
        flow_id=uuid.uuid4(),
        state=Completed(timestamp=T0 + timedelta(seconds=8)),
        start_time=T0 + timedelta(seconds=1),
        end_time=T0 + timedelta(seconds=8),
    )

    def stage(name: str, second: int) -> TaskRun:
        return TaskRun(
            id=uuid.uuid4(),
            name=f"A/{name}",
            flow_run_id=sub.id,
            task_key=name,
            dynamic_key="0",
            state=Completed(timestamp=T0 + timedelta(seconds=second)),
            start_time=T0 + timedelta(seconds=second),
        )

    stages = [stage("ingestion", 2), stage("integration", 7)]
    records = RunRecords(
        run=run, definition="d", subflows=[sub], task_runs=stages[:1], states=[Running(timestamp=T0), run.state]
    )
    assert build_trace(records, T0).complete is False  # the server stores task runs seconds after the phase's state
    records.task_runs = stages
    assert build_trace(records, T0).complete is True
