"""Phases as concurrent subflow runs: each starts as soon as its dependencies completed.

Each phase is an asyncio task that waits for its dependencies, then for a slot
(maxConcurrentPhases), then runs its lifecycle inside its own Prefect subflow run: flow
`DEFINITION: PHASE`, run named after the parent run, parameter ``phase``.

Prefect's subflow engine makes ~7 API requests one after another before a subflow's first
task runs (parent task run, lookup, flow, flow run, rename, Running, read back) and one more
after its last, all on the critical path: 150–300 ms per phase on the local server. Here the
same objects are written through the same client API, off the critical path:

- at run start every phase's tracking task run (in the parent flow run, its upstream phases'
  subflow runs as inputs, so Prefect's graph draws the phase DAG) and its subflow run
  (parameters ``phase`` and ``inputs``) are created: the first phases' at once and already
  Running, the others Pending while the first phases run;
- when a later phase starts, its Running state is written in the background; its stages run
  at once in a flow-run context of its subflow run, so their task runs belong to it, as under
  Prefect's engine;
- when its lifecycle returns, dependents start at once; its final state (Completed, Failed,
  TimedOut) is written in the background, after its Running state;
- the parent flow run completes only after every such write: no subflow outlives its parent.

Prefect's server orchestrates each state as it would from its own engine (the tracking task
run follows its subflow's state); a phase that never ran ends Cancelled (`NotRun`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from prefect import Flow, State, Task
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import FlowRunCreate
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy, FlowRunResult
from prefect.context import FlowRunContext, TagsContext
from prefect.exceptions import PrefectHTTPStatusError
from prefect.logging.loggers import flow_run_logger, get_run_logger
from prefect.states import Cancelled, Completed, Failed, Pending, Running, to_state_create

from taskmark.blocks import describe_cost
from taskmark.definition import Definition, Phase
from taskmark.definition._graph import ancestors
from taskmark.flows._recorder import Recorder
from taskmark.runs.record import RunRecord, Totals
from taskmark.tasks import PhaseOutcome, Runtime, run_lifecycle

__all__ = ["PAUSE_TAG", "run_phases"]

_log = logging.getLogger("taskmark.flows")

PAUSE_TAG = "taskmark-pause"
"""A run carrying this tag holds before each phase that has not started (`taskmark pause`)."""


async def _phase(phase: str, inputs: dict[str, Any], upstream: dict[str, Any]) -> Any:  # noqa: ANN401
    """What a phase subflow stands for (its name and parameters); taskmark runs its lifecycle."""


_FLOW_IDS: dict[tuple[str, str], uuid.UUID] = {}
"""Each phase flow's id, by API and name: the flow is created (upserted) once per process."""

_FLOWS: dict[str, tuple[Flow[..., Any], Task[..., Any]]] = {}


def phase_flow_name(definition: str, phase: str) -> str:
    """The flow of a definition's phase, `DEFINITION: PHASE`: one per definition, so the UI's
    flows and the run graph (`FLOW / RUN`) say which definition a phase belongs to."""
    return f"{definition}: {phase}"


def _phase_flow(definition: str, phase: str) -> tuple[Flow[..., Any], Task[..., Any]]:
    """The subflow of ``phase`` and its tracking task, built once per process."""
    name = phase_flow_name(definition, phase)
    if name not in _FLOWS:
        subflow: Flow[..., Any] = Flow(_phase, name=name, persist_result=False, validate_parameters=False)
        # As Prefect's engine does: the task run in the parent that stands for the subflow.
        tracking: Task[..., Any] = Task(name=subflow.name, fn=subflow.fn, version=subflow.version)
        _FLOWS[name] = (subflow, tracking)
    return _FLOWS[name]


class _PhaseRun:
    """One phase's subflow run; its API writes run in order, in the background."""

    def __init__(self, runs: _PhaseRuns, phase: Phase, *, first: bool) -> None:
        self.runs, self.phase = runs, phase
        # A phase that starts with the run is created Running: its start time is then the
        # server's time at creation, not that of a write behind it.
        self.first = first
        self.flow, self.tracking = _phase_flow(runs.definition, phase.name)
        self.tracking_id = runs.tracking_ids[phase.name]
        self.created = asyncio.ensure_future(self._create())
        self._last: asyncio.Future[None] = self.created  # type: ignore[assignment]
        self.finished = False

    async def _create(self) -> FlowRun:
        client, parent = self.runs.client, self.runs.parent
        upstream: list[FlowRun] = []
        if self.phase.depends_on:
            # The phases that start first are created first (SQLite takes one writer at a time).
            await asyncio.wait(self.runs.roots)
            made = await asyncio.gather(
                *(asyncio.shield(self.runs.runs[d].created) for d in self.phase.depends_on), return_exceptions=True
            )
            upstream = [run for run in made if isinstance(run, FlowRun)]
        # Edges of the phase graph: Prefect's graph draws a subflow as its flow run, so the
        # upstream phases are named by their subflow runs (a task run's id would match no node).
        inputs = {"wait_for": [FlowRunResult(id=run.id) for run in upstream]}
        await client.create_task_run(
            task=self.tracking,
            flow_run_id=parent.flow_run.id if parent.flow_run else None,
            dynamic_key=self.tracking_id.hex,  # unique: a retried parent run gets new ones
            id=self.tracking_id,
            name=self.flow.name,
            state=Pending(),
            task_inputs=inputs,  # type: ignore[arg-type]
        )
        # As PrefectClient.create_flow_run, with the flow's id looked up once per process
        # (looked up again if the server no longer knows it).
        known = (str(client.api_url), self.flow.name)
        try:
            return await self._create_flow_run(_FLOW_IDS.get(known) or await self._flow_id(known))
        except PrefectHTTPStatusError:
            if _FLOW_IDS.pop(known, None) is None:
                raise
            return await self._create_flow_run(await self._flow_id(known))

    async def _flow_id(self, known: tuple[str, str]) -> uuid.UUID:
        _FLOW_IDS[known] = await self.runs.client.create_flow(self.flow)
        return _FLOW_IDS[known]

    async def _create_flow_run(self, flow_id: uuid.UUID) -> FlowRun:
        create = FlowRunCreate(
            flow_id=flow_id,
            flow_version=self.flow.version,
            name=self.runs.parent_name,  # with the flow's name: "DEFINITION: PHASE / RUN"
            parameters=self.flow.serialize_parameters({"phase": self.phase.name, "inputs": self.runs.inputs}),
            parent_task_run_id=self.tracking_id,
            # A request retried after a timeout (the server slow, not gone) returns this run
            # rather than making a second one that would stay Pending.
            idempotency_key=self.tracking_id.hex,
            state=to_state_create(Running() if self.first else Pending()),
            tags=list(TagsContext.get().current_tags),
            empirical_policy=FlowRunPolicy(
                retries=self.flow.retries, retry_delay=int(self.flow.retry_delay_seconds or 0)
            ),
        )
        response = await self.runs.client.request(
            "POST", "/flow_runs/", json=create.model_dump(mode="json", exclude_unset=True)
        )
        return FlowRun.model_validate(response.json())

    def _then(self, write: Callable[[FlowRun], Coroutine[Any, Any, Any]]) -> None:
        previous = self._last

        async def after() -> None:
            await asyncio.wait([previous])
            if self.created.cancelled() or self.created.exception() is not None:
                return
            try:
                await write(self.created.result())
            except Exception:  # noqa: BLE001 - a record that could not be written must not fail the run
                _log.warning("could not record the state of subflow %r", self.flow.name, exc_info=True)

        self._last = asyncio.ensure_future(after())
        self.runs.pending.add(self._last)

    async def start(self, upstream: dict[str, Any]) -> FlowRunContext:
        """Wait for the subflow run to exist; write its Running state behind (unless created so).

        Returns:
            The flow-run context the phase's stages run in.
        """
        flow_run = await asyncio.shield(self.created)
        if not self.first:
            running: State[Any] = Running()
            self._then(lambda run: self.runs.set_state(run, running))
        parent = self.runs.parent
        get_run_logger(parent).info(f"Beginning subflow run {flow_run.name!r} for flow {self.flow.name!r}")
        return FlowRunContext(
            flow=self.flow,
            flow_run=flow_run,
            parameters={"phase": self.phase.name, "inputs": self.runs.inputs, "upstream": upstream},
            client=parent.client,
            task_runner=parent.task_runner,
            result_store=parent.result_store,
            persist_result=False,
            log_prints=parent.log_prints,
        )

    async def settled(self) -> None:
        """Wait until every state written so far has been answered."""
        await asyncio.wait([self._last])

    def finish(self, state: State[Any]) -> None:
        """Write the final state behind the ones before it."""
        if self.finished:
            return
        self.finished = True
        self._then(lambda run: self._final(run, state))

    async def _final(self, run: FlowRun, state: State[Any]) -> None:
        await self.runs.set_state(run, state)
        if state.name != "NotRun":
            level = logging.INFO if state.is_completed() else logging.ERROR
            flow_run_logger(flow_run=run, flow=self.flow).log(level, f"Finished in state {state}")


class _PhaseRuns:
    """Every phase's subflow run of one run of the parent flow."""

    def __init__(self, definition: Definition, inputs: dict[str, Any]) -> None:
        parent = FlowRunContext.get()
        if parent is None or not isinstance(parent.client, PrefectClient):
            raise RuntimeError("phases run inside their definition's flow")
        self.parent, self.client, self.inputs = parent, parent.client, inputs
        self.definition = definition.name
        self.parent_name = parent.flow_run.name if parent.flow_run else definition.name
        self.pending: set[asyncio.Future[None]] = set()
        self.tracking_ids = {p.name: uuid.uuid4() for p in definition.phases}
        self.roots: list[asyncio.Future[FlowRun]] = []
        self.runs: dict[str, _PhaseRun] = {}
        slots = definition.metadata.max_concurrent_phases
        for phase in definition.run_order():
            self.runs[phase.name] = _PhaseRun(self, phase, first=not phase.depends_on and len(self.roots) < slots)
            if not phase.depends_on:
                self.roots.append(self.runs[phase.name].created)
        self.pending.update(r.created for r in self.runs.values())  # type: ignore[misc]

    async def hold_requested(self) -> bool:
        """Whether `taskmark pause` asked the run to hold (the parent carries ``PAUSE_TAG``):
        read as each phase starts, so a hold asked before a phase starts always stops it."""
        assert self.parent.flow_run is not None
        parent = await self.client.read_flow_run(self.parent.flow_run.id)
        return PAUSE_TAG in parent.tags

    async def set_state(self, run: FlowRun, state: State[Any]) -> None:
        result = await self.client.set_flow_run_state(run.id, state)
        if result.status.value != "ACCEPT":
            _log.debug(
                "subflow %r: state %s was answered %s (%s)", run.name, state.name, result.status.value, result.details
            )

    async def drain(self) -> None:
        """Wait for every write; phases that never started end Cancelled (NotRun)."""
        for run in self.runs.values():
            run.finish(Cancelled(name="NotRun", message="the phase did not run"))
        while self.pending - {f for f in self.pending if f.done()}:
            await asyncio.wait(self.pending)
        for future in self.pending:
            if not future.cancelled() and future.exception() is not None:
                _log.warning("could not create a subflow run", exc_info=future.exception())


def _phase_line(runs: _PhaseRuns, record: PhaseOutcome, usage: Totals) -> None:
    """One line on the run's log for a phase that ended: its state, time, calls, tokens, cost."""
    line = f"Phase {record.name!r} {record.outcome.lower().replace('_', ' ')} in {record.duration_s:.2f} s"
    if usage.calls or usage.failed_calls:  # a phase answered from the cache paid for nothing
        line += (
            f" · {usage.calls} call{'s' if usage.calls != 1 else ''}"
            f" · {usage.tokens} tokens"
            f" · {describe_cost(usage.cost_usd, usage.unpriced_calls, usage.calls)}"
        )
    if record.error:
        line += f": {record.error}"
    level = logging.WARNING if record.outcome == "ACCEPTED_WITH_ERRORS" else logging.INFO
    get_run_logger(runs.parent).log(logging.ERROR if record.state == "FAILED" else level, line)


async def run_phases(
    definition: Definition,
    inputs: dict[str, Any],
    runtime: Runtime,
    *,
    timeout_s: float | None,
    then: Callable[[RunRecord], Awaitable[None]] | None = None,
) -> dict[str, PhaseOutcome]:
    """Run every phase, each as soon as it may; how each ended, by name, in run order.

    A phase whose dependency did not complete is NOT_RUN; independent phases go on. When the
    run exceeds ``timeout_s``, running phases become TIMED_OUT and finished ones keep their
    outputs. ``then`` gets the run's record after the phases, while their last states are being written.
    """
    edges = {p.name: p.depends_on for p in definition.phases}
    slots = asyncio.Semaphore(definition.metadata.max_concurrent_phases)
    started: dict[str, asyncio.Task[None]] = {}
    outcomes: dict[str, PhaseOutcome] = {}  # each phase that ended, set once by its own task here
    running: set[str] = set()  # started, not yet ended: what a timeout turns TIMED_OUT
    runs = _PhaseRuns(definition, inputs)
    assert runs.parent.flow_run is not None
    recorder = Recorder(runs.client, runs.parent.flow_run.id, definition, inputs, runs.parent.flow_run.run_count or 1)
    runtime.recorder = recorder

    def ended(outcome: PhaseOutcome) -> None:
        outcomes[outcome.name] = outcome
        running.discard(outcome.name)
        recorder.phase_ended(outcome)

    async def lifecycle(phase: Phase, upstream: dict[str, Any]) -> PhaseOutcome:
        run = runs.runs[phase.name]
        # Its dependencies' ends are durable before it starts (written beside its own start).
        context, _ = await asyncio.gather(run.start(upstream), recorder.durable(phase.depends_on))
        hold = await runs.hold_requested()
        if phase.options.approval is not None or phase.options.review or hold:
            # The phase will pause its subflow run, which Prefect allows only once it is Running.
            await run.settled()
        with context:
            return await run_lifecycle(definition, phase, inputs, upstream, runtime, finished=outcomes, hold=hold)

    async def one(phase: Phase) -> None:
        run = runs.runs[phase.name]
        try:
            await asyncio.gather(*(started[d] for d in phase.depends_on))
        except asyncio.CancelledError:
            run.finish(Cancelled(name="NotRun", message="the run timed out first"))
            raise
        if any(outcomes[d].state != "COMPLETED" for d in phase.depends_on):
            why = "a phase it depends on did not complete"
            run.finish(Cancelled(name="NotRun", message=why))
            ended(PhaseOutcome(name=phase.name, state="NOT_RUN", error=why))
            return
        async with slots:
            upstream = {n: outcomes[n].outputs for n in sorted(ancestors(edges, phase.name))}
            begin = time.perf_counter()
            running.add(phase.name)
            recorder.phase_started(phase.name)
            runtime.emit("phase:start", phase=phase.name)
            try:
                outcome = await lifecycle(phase, upstream)
            except asyncio.CancelledError:
                run.finish(
                    Failed(
                        name="TimedOut",
                        message=f"the run exceeded maxExecutionTime ({timeout_s:g}s)" if timeout_s else "cancelled",
                    )
                )
                raise
            except Exception as exc:  # noqa: BLE001 - a phase's crash must not stop its siblings
                outcome = PhaseOutcome(name=phase.name, state="FAILED", error=f"{type(exc).__name__}: {exc}")
            outcome = outcome.model_copy(update={"duration_s": time.perf_counter() - begin})
            run.finish(Completed() if outcome.state == "COMPLETED" else Failed(message=outcome.error))
            ended(outcome)
            usage = recorder.totals(phase.name)
            _phase_line(runs, outcome, usage)
            runtime.emit(
                "phase:complete" if outcome.state == "COMPLETED" else "phase:failed",
                phase=phase.name,
                state=outcome.outcome.lower(),
                error=outcome.error,
                failed_checks=outcome.failed_checks or None,
                duration_s=round(outcome.duration_s, 3),
                calls=usage.calls,
                tokens=usage.tokens,
                cost_usd=usage.cost_usd,
            )

    for phase in definition.run_order():
        started[phase.name] = asyncio.create_task(one(phase))
    try:
        await asyncio.wait_for(asyncio.gather(*started.values()), timeout=timeout_s)
    except asyncio.TimeoutError:
        for name in sorted(running, key=list(started).index):
            why = f"phase '{name}' timed out: the run exceeded maxExecutionTime ({timeout_s:g}s)"
            ended(PhaseOutcome(name=name, state="TIMED_OUT", error=why))
        for phase in definition.phases:
            if phase.name not in outcomes:
                ended(PhaseOutcome(name=phase.name, state="NOT_RUN", error="the run timed out first"))
    except BaseException:
        await asyncio.gather(runs.drain(), recorder.flush())
        raise
    await asyncio.gather(runs.drain(), recorder.close(), *([then(recorder.record())] if then is not None else []))
    return {name: outcomes[name] for name in started if name in outcomes}
