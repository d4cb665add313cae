"""A run's Prefect records (flow runs, task runs, events) assembled into a trace tree.

Pure: no I/O, so the tree and its completeness can be checked on records built by hand.

How a run is recorded (see ``taskmark.flows._schedule`` and ``taskmark.tasks._runtime``):

- the run is a flow run named after nothing in particular, of the flow named after the
  definition; each phase is a subflow run `Phase: NAME` whose parent is a tracking task run
  in the run;
- each stage that ran is a task run `PHASE/stage-xyz` of its phase's subflow run (a skipped
  stage leaves no record); each LLM call is a task run `PHASE/stage: agent` there too;
- each call that reached a provider emits `taskmark.llm.completed` or `taskmark.llm.failed`,
  related to its task run, with tokens, cost, model and attempts (or the error);
- a retried run (`taskmark retry`) runs again under the same flow run id: each attempt starts
  with a Running state after a final one, and creates phase subflow runs of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import FlowRun, State, StateType, TaskRun
from prefect.events import Event

from taskmark.blocks import COMPLETED_EVENT, FAILED_EVENT, redact
from taskmark.context import SNAPSHOT_TAG
from taskmark.history._model import AttemptTrace, CallTrace, PhaseTrace, RunTrace, StageTrace, TraceTotals

__all__ = ["PHASE_PREFIX", "RunRecords", "build_trace"]

PHASE_PREFIX = "Phase: "
"""How a phase's subflow run is named."""

_FINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


@dataclass
class RunRecords:
    """Everything the Prefect API holds about one run."""

    run: FlowRun
    definition: str
    subflows: list[FlowRun] = field(default_factory=list)
    task_runs: list[TaskRun] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    usage_total: Mapping[str, Any] | None = None
    """The `total` row of the latest usage artifact of the run, when it wrote one."""
    states: list[State[Any]] = field(default_factory=list)
    """The run's state history."""


@dataclass(frozen=True)
class _Attempt:
    """One execution of the run: from a Running state to the final state that ended it."""

    number: int
    start: datetime | None
    ended: State[Any] | None


def _attempts(records: RunRecords) -> list[_Attempt]:
    """The run's attempts: a Running state after a final one begins a new attempt (a resumed
    pause does not)."""
    run = records.run
    current = run.state if run.state is not None and run.state.is_final() else None
    history = sorted(records.states, key=lambda s: s.timestamp)
    starts: list[int] = []
    for i, state in enumerate(history):
        if state.type == StateType.RUNNING and (not starts or any(h.is_final() for h in history[starts[-1] : i])):
            starts.append(i)
    if not starts:
        return [_Attempt(1, run.start_time, current)]
    attempts = []
    for n, i in enumerate(starts):
        following = history[i + 1 : starts[n + 1]] if n + 1 < len(starts) else []
        ended = current if n + 1 == len(starts) else next((h for h in following if h.is_final()), None)
        attempts.append(_Attempt(n + 1, history[i].timestamp, ended))
    return attempts


def _type(state: State[Any] | None) -> str:
    return state.type.value if state is not None else "PENDING"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 3)


def _message(state: State[Any] | None) -> str | None:
    return redact(state.message) if state is not None and state.message else None


def _node(
    state: State[Any] | None, start: datetime | None, end: datetime | None, ended: State[Any] | None, now: datetime
) -> dict[str, Any]:
    """State and times of a node; one left unfinished when its attempt ended takes that end's state."""
    recorded = _type(state)
    fields: dict[str, Any] = {
        "state": recorded,
        "state_name": state.name if state else None,
        "message": _message(state),
        "start": start,
        "end": end,
    }
    if recorded not in _FINAL and ended is not None:
        what = ((state.name if state else None) or recorded).lower()
        fields.update(
            state=_type(ended),
            state_name=ended.name,
            recorded_state=recorded,
            message=f"the run ended {(ended.name or _type(ended)).lower()} while this was {what}",
            end=ended.timestamp if start is not None else None,
        )
    fields["duration_s"] = _seconds(
        start, fields["end"] or (now if start is not None and fields["state"] not in _FINAL else None)
    )
    return fields


def _related(event: Event, role: str) -> str | None:
    for related in event.related:
        if related.role == role:
            return related.id.removeprefix(f"prefect.{role}.")
    return None


def _task_run_id(event: Event) -> str | None:
    return _related(event, "task-run")


def _flow_run_id(event: Event) -> str | None:
    return _related(event, "flow-run")


def _apply_event(call: CallTrace, event: Event) -> None:
    payload = event.payload
    call.model = payload.get("model") or call.model
    call.latency_s = payload.get("latency_s")
    call.temperature, call.max_tokens, call.messages_sha256 = (
        payload.get("temperature"),
        payload.get("max_tokens"),
        payload.get("messages_sha256"),
    )
    if event.event == COMPLETED_EVENT:
        call.attempts = payload.get("attempts")
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            setattr(call, name, int(payload.get(name) or 0))
        call.cost_usd = payload.get("cost_usd")
    else:
        call.status_code = payload.get("status_code")
        call.error = redact(str(payload.get("error") or "the call failed"))
        call.attempts = payload.get("attempts", 1)
    if call.attempts is not None:
        call.retries = max(call.attempts - 1, 0)


def _split(phase: str, task_name: str) -> tuple[str, str | None]:
    """(stage, agent) from `PHASE/stage-xyz` or `PHASE/stage: agent`."""
    rest = task_name.removeprefix(f"{phase}/")
    if ": " in rest:
        stage, agent = rest.split(": ", 1)
        return stage, agent
    return rest.rsplit("-", 1)[0] if "-" in rest else rest, None


def _call_from_event(event: Event) -> CallTrace:
    """A call whose task run is not (yet) recorded: what its event says."""
    state = "COMPLETED" if event.event == COMPLETED_EVENT else "FAILED"
    call = CallTrace(
        agent=event.resource.get("taskmark.agent") or "?",
        state=state,
        end=event.occurred,
        task_run_id=_task_run_id(event),
    )
    _apply_event(call, event)
    return call


def _sort_key(start: datetime | None, created: datetime | None) -> tuple[bool, str]:
    when = start or created
    return (start is None, when.isoformat() if when else "")


_WORST_FIRST = ("CRASHED", "CANCELLED", "FAILED", "RUNNING", "PENDING", "COMPLETED")


def _stage_of_calls(name: str, calls: list[CallTrace], now: datetime) -> StageTrace:
    """A stage known only by its calls: a stage records itself when it ends (a crash loses
    the record), and a call may be labelled with the stage it serves rather than the one
    that made it. Its state is its calls' worst, its time theirs."""
    state = next((s for s in _WORST_FIRST if any(c.state == s for c in calls)), "COMPLETED")
    start = min((c.start for c in calls if c.start), default=None)
    end = max((c.end for c in calls if c.end), default=None) if state in _FINAL else None
    return StageTrace(
        name=name, state=state, start=start, end=end, duration_s=_seconds(start, end or (now if start else None))
    )


def _phase_trace(
    sub: FlowRun,
    ended: State[Any] | None,
    by_flow_run: Mapping[str, list[TaskRun]],
    events: Mapping[str, Event],
    now: datetime,
) -> PhaseTrace:
    name = sub.name.removeprefix(PHASE_PREFIX)
    stages: dict[str, StageTrace] = {}
    calls: dict[str, list[CallTrace]] = {}
    for task_run in sorted(by_flow_run.get(str(sub.id), []), key=lambda t: _sort_key(t.start_time, t.created)):
        stage, agent = _split(name, task_run.name)
        node = _node(task_run.state, task_run.start_time, task_run.end_time, ended, now)
        if agent is None:
            stages[stage] = StageTrace(name=stage, task_run_id=str(task_run.id), run_count=task_run.run_count, **node)
            continue
        context = next((t.removeprefix(SNAPSHOT_TAG) for t in task_run.tags if t.startswith(SNAPSHOT_TAG)), None)
        call = CallTrace(
            agent=agent, task_run_id=str(task_run.id), cached=task_run.state_name == "Cached", context=context, **node
        )
        event = events.get(str(task_run.id))
        if event is not None:
            _apply_event(call, event)
        calls.setdefault(stage, []).append(call)
    seen = {c.task_run_id for cs in calls.values() for c in cs}
    for event in events.values():
        if _flow_run_id(event) == str(sub.id) and _task_run_id(event) not in seen:
            calls.setdefault(event.resource.get("taskmark.stage") or "inference", []).append(_call_from_event(event))
    for stage, stage_calls in calls.items():
        if stage not in stages:
            stages[stage] = _stage_of_calls(stage, stage_calls, now)
        stages[stage].calls = stage_calls
        for call in stage_calls:
            stages[stage].totals.add(call)
    phase = PhaseTrace(name=name, flow_run_id=str(sub.id), **_node(sub.state, sub.start_time, sub.end_time, ended, now))
    phase.stages = sorted(stages.values(), key=lambda s: _sort_key(s.start, None))
    for stage_trace in phase.stages:
        phase.totals.merge(stage_trace.totals)
    return phase


def _is_complete(records: RunRecords, trace: RunTrace, events: Mapping[str, Event]) -> bool:
    """Whether everything the run recorded has reached the API (the server stores events and
    task runs a few seconds after they happen)."""
    run_state = _type(records.run.state)
    if run_state not in _FINAL:
        return False
    known = {str(t.id) for t in records.task_runs}
    if any(task_run_id not in known for task_run_id in events):
        return False
    # A completed phase ran its last stage, integration, as a task; the server stores task runs
    # in the order they were sent, so with it recorded, the phase's earlier stages are too.
    if any(
        p.state == "COMPLETED" and not any(s.name == "integration" and s.task_run_id for s in p.stages)
        for p in trace.phases
    ):
        return False
    # A failed phase's message names the stage that failed (PhaseFailed); that stage records
    # itself as it ends, so until its task run is stored, the stage is known only by its calls.
    if any(
        s.task_run_id is None and f"failed in {s.name}:" in (p.message or "")
        for p in trace.phases
        if p.state == "FAILED"
        for s in p.stages
    ):
        return False
    phases = [*trace.phases, *(p for a in trace.earlier_attempts for p in a.phases)]
    calls = [c for p in phases for s in p.stages for c in s.calls]
    if any(
        c.task_run_id is not None
        and c.recorded_state is None
        and c.state in ("COMPLETED", "FAILED")
        and not c.cached
        and c.task_run_id not in events
        for c in calls
    ):
        return False
    if records.usage_total is not None:
        latest = TraceTotals()
        for phase in trace.phases:
            latest.merge(phase.totals)
        expected = int(records.usage_total.get("calls") or 0) + int(records.usage_total.get("failed calls") or 0)
        if expected != latest.calls + latest.failed_calls:
            return False
    # An orderly end leaves every task run final; a crash or a cancellation may not.
    return run_state not in ("COMPLETED", "FAILED") or all(_type(t.state) in _FINAL for t in records.task_runs)


def build_trace(records: RunRecords, now: datetime) -> RunTrace:
    """The tree of a run: phases → stages → LLM calls, with sums at each level.

    Args:
        records: What the API holds about the run.
        now: The time durations of unfinished nodes run to.

    Returns:
        The trace; ``complete`` says whether every expected record was there.
    """
    run = records.run
    by_flow_run: dict[str, list[TaskRun]] = {}
    for task_run in records.task_runs:
        by_flow_run.setdefault(str(task_run.flow_run_id), []).append(task_run)
    events: dict[str, Event] = {}
    for event in _llm_events(records.events):
        events[_task_run_id(event) or str(event.id)] = event
    attempts = _attempts(records)
    phases: dict[int, list[PhaseTrace]] = {a.number: [] for a in attempts}
    for sub in sorted(records.subflows, key=lambda s: _sort_key(s.start_time, s.created)):
        if not sub.name.startswith(PHASE_PREFIX):
            continue
        # A phase starts after its attempt's Running state, timed by the same client's clock.
        began = sub.start_time or sub.created or now
        attempt = ([a for a in attempts if a.start is None or a.start <= began] or attempts)[-1]
        phases[attempt.number].append(_phase_trace(sub, attempt.ended, by_flow_run, events, now))
    last = attempts[-1]
    trace = RunTrace(
        id=str(run.id),
        name=run.name,
        definition=records.definition,
        attempt=last.number,
        phases=phases[last.number],
        artifacts=sorted(set(records.artifacts)),
        complete=False,
        **_node(run.state, last.start or run.start_time, run.end_time, None, now),
    )
    for attempt in attempts[:-1]:
        ended = attempt.ended
        node = AttemptTrace(
            number=attempt.number,
            phases=phases[attempt.number],
            **_node(ended, attempt.start, ended.timestamp if ended else None, None, now),
        )
        for phase in node.phases:
            node.totals.merge(phase.totals)
        trace.earlier_attempts.append(node)
        trace.totals.merge(node.totals)
    for phase in trace.phases:
        trace.totals.merge(phase.totals)
    trace.complete = _is_complete(records, trace, events)
    return trace


def _llm_events(events: Iterable[Event]) -> list[Event]:
    return sorted((e for e in events if e.event in (COMPLETED_EVENT, FAILED_EVENT)), key=lambda e: e.occurred)
