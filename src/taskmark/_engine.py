"""Prefect's engine, reproduced by hand where its own path costs a run too much: every place
taskmark creates flow runs or task runs itself, emits engine events or patches Prefect.

Each part says which behaviour of Prefect it reproduces and why. Contract tests
(``tests/integration/flows/test_engine_contract.py``) pin that behaviour against a real server,
on the lowest and the newest supported Prefect (``constraints/lowest.txt``).

**Phases as subflow runs** (:class:`PhaseRuns`). Prefect's subflow engine makes ~7 API
requests one after another before a subflow's first task runs (parent task run, lookup, flow,
flow run, rename, Running, read back) and one more after its last, all on the critical path:
150–300 ms per phase on the local server. Here the same objects are written through the same
client API, off the critical path:

- at run start every phase's tracking task run (in the parent flow run, its upstream phases'
  subflow runs as inputs, so Prefect's graph draws the phase DAG) and its subflow run (flow
  `DEFINITION: PHASE`, run named after the parent run, parameters ``phase`` and ``inputs``)
  are created: the first phases' at once and already Running, the others Pending while the
  first phases run;
- when a later phase starts, its Running state is written in the background; its stages run
  at once in a flow-run context of its subflow run, so their task runs belong to it, as under
  Prefect's engine;
- while it runs, it sends heartbeats as Prefect's engine does for every flow run (at start,
  then each ``flows.heartbeat_frequency`` seconds): the crash automation and the local
  server's sweep then tell a live phase from one whose process died, as they do its run;
- when its lifecycle returns, its final state (Completed, Failed, TimedOut, Cancelled) is
  written in the background, after its Running state; a phase that never ran ends Cancelled
  (`NotRun`);
- the parent flow run completes only after every such write: no subflow outlives its parent.

The server orchestrates each state as it would from Prefect's engine (the tracking task run
follows its subflow's state).

**Stages as task runs** (:func:`run_stage`). A stage that runs user code (a handler, a custom
step) runs under Prefect's task engine. Any other stage is taskmark's own code plus the calls
it awaits (each a real task run): it runs inline and is recorded once it ended as a task run of
its phase, through the three task-run events Prefect's task engine emits (the server builds
task runs from them). The engine's own path
costs 5–7 ms of CPU per task run (contexts, transactions, result store, hooks) and does
nothing for such a stage.

**SQLite transactions begun IMMEDIATE** (:func:`immediate_sqlite_configuration`), in the local
server's process. Prefect begins most write transactions ``DEFERRED``: they read first, then
write. When two overlap, SQLite cannot upgrade the second one's read lock to a write lock
without risking a deadlock, so it fails at once with ``database is locked`` (``busy_timeout``
does not apply to a lock upgrade); Prefect answers HTTP 503 and its client backs off 2, 4,
8 s. Concurrent subflows create their parent task runs at the same moment, so a flow with
four gathered async subflows took 10 s instead of 1.2 s. Beginning ``IMMEDIATE`` takes the
write lock up front, and a second writer waits on ``busy_timeout`` (60 s in Prefect) instead
of failing: the same flow then took 2.3 s with no 503. Readers are not affected: WAL mode
lets them read while a writer holds the lock. A PostgreSQL URL keeps Prefect's configuration.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import prefect
from prefect import Flow, State, Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import FlowRunCreate
from prefect.client.schemas.objects import FlowRun, FlowRunPolicy, FlowRunResult, StateDetails, TaskRun, TaskRunPolicy
from prefect.context import FlowRunContext, TagsContext
from prefect.events import emit_event
from prefect.exceptions import PrefectHTTPStatusError
from prefect.logging.loggers import flow_run_logger, get_run_logger
from prefect.settings import get_current_settings
from prefect.states import Cancelled, Completed, Crashed, Failed, Pending, Running, to_state_create
from prefect.utilities.engine import emit_task_run_state_change_event

if TYPE_CHECKING:
    from prefect.server.database.configurations import AioSqliteConfiguration
    from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

    from taskmark.definition import Definition, Phase

__all__ = ["PhaseRuns", "immediate_sqlite_configuration", "run_stage"]

_log = logging.getLogger("taskmark.flows")

T = TypeVar("T")


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

    def __init__(self, runs: PhaseRuns, phase: Phase, *, first: bool) -> None:
        self.runs, self.phase = runs, phase
        # A phase that starts with the run is created Running: its start time is then the
        # server's time at creation, not that of a write behind it.
        self.first = first
        self.flow, self.tracking = _phase_flow(runs.definition, phase.name)
        self.tracking_id = runs.tracking_ids[phase.name]
        self.created = asyncio.ensure_future(self._create())
        self._last: asyncio.Future[None] = self.created  # type: ignore[assignment]
        self.finished = False
        self.beating: FlowRunContext | None = None
        """The subflow run's context while it runs: what the heartbeats are sent for."""

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
        context = FlowRunContext(
            flow=self.flow,
            flow_run=flow_run,
            parameters={"phase": self.phase.name, "inputs": self.runs.inputs, "upstream": upstream},
            client=parent.client,
            task_runner=parent.task_runner,
            result_store=parent.result_store,
            persist_result=False,
            log_prints=parent.log_prints,
        )
        if self.runs.heartbeat_s is not None:
            self.beating = context
            self.heartbeat()
        return context

    async def settled(self) -> None:
        """Wait until every state written so far has been answered."""
        await asyncio.wait([self._last])

    def finish(self, state: State[Any]) -> None:
        """Write the final state behind the ones before it."""
        if self.finished:
            return
        self.finished, self.beating = True, None
        self._then(lambda run: self._final(run, state))

    def heartbeat(self) -> None:
        """Tell the server the subflow run's process is alive, as Prefect's engine does each
        ``flows.heartbeat_frequency`` seconds (an automation marks silent runs Crashed). Sent
        from a copy of its own flow-run context, so the event names its flow and tags as the
        engine's would (the events worker reads them from the context)."""
        if self.beating is None:
            return
        run = self.beating.flow_run
        assert run is not None
        with self.beating.model_copy():
            emit_event(
                event="prefect.flow-run.heartbeat",
                resource={
                    "prefect.resource.id": f"prefect.flow-run.{run.id}",
                    "prefect.resource.name": run.name,
                    "prefect.version": prefect.__version__,
                },
            )

    async def _final(self, run: FlowRun, state: State[Any]) -> None:
        await self.runs.set_state(run, state)
        if state.name != "NotRun":
            level = logging.INFO if state.is_completed() else logging.ERROR
            flow_run_logger(flow_run=run, flow=self.flow).log(level, f"Finished in state {state}")


class PhaseRuns:
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
        from prefect.flow_engine import MINIMUM_HEARTBEAT_INTERVAL  # loaded by the running parent flow

        frequency = get_current_settings().flows.heartbeat_frequency
        self.heartbeat_s = None if frequency is None else max(frequency, MINIMUM_HEARTBEAT_INTERVAL)
        self.heartbeats = None if self.heartbeat_s is None else asyncio.ensure_future(self._beat(self.heartbeat_s))

    async def _beat(self, seconds: float) -> None:
        """Each running phase's heartbeat, every ``seconds``, until the phases are drained."""
        while True:
            await asyncio.sleep(seconds)
            for run in self.runs.values():
                run.heartbeat()

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
        if self.heartbeats is not None:
            self.heartbeats.cancel()
        while self.pending - {f for f in self.pending if f.done()}:
            await asyncio.wait(self.pending)
        for future in self.pending:
            if not future.cancelled() and future.exception() is not None:
                _log.warning("could not create a subflow run", exc_info=future.exception())


@task(cache_policy=NO_CACHE, persist_result=False)
async def _stage(work: Callable[[], Awaitable[Any]]) -> Any:  # noqa: ANN401
    return await work()


@cache
def _stage_task(phase: str, stage: str) -> Task[Any, Any]:
    """The task of a stage that runs user code, built once per process (``with_options`` costs ~1 ms)."""
    return _stage.with_options(name=f"{phase}/{stage}", task_run_name=f"{phase}/{stage}")


async def run_stage(phase: str, stage: str, work: Callable[[], Awaitable[T]], *, runs_user_code: bool) -> T:
    """Run a stage's ``work`` as the task run `PHASE/stage` of the current (phase) flow run:
    under Prefect's task engine if it runs user code, else inline and recorded once it ended."""
    if runs_user_code:
        result: T = await _stage_task(phase, stage)(work)
        return result
    started = _now()
    try:
        result = await work()
    except Exception as exc:
        _record_task_run(f"{phase}/{stage}", started, Failed(message=f"{type(exc).__name__}: {exc}"))
        raise
    except BaseException as exc:
        _record_task_run(f"{phase}/{stage}", started, Crashed(message=f"{type(exc).__name__}: {exc}"))
        raise
    _record_task_run(f"{phase}/{stage}", started, Completed())
    return result


def _record_task_run(name: str, started: datetime, final: State[Any]) -> None:
    """Record a finished stage as a task run of the current flow run: Pending, Running, final.

    The same three task-run events Prefect's task engine emits (the server builds task runs
    from them), without the engine's per-run work (contexts, transactions, result store,
    hooks), which costs 5–7 ms of CPU per task run and does nothing for a pure stage.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    flow_run_id = context.flow_run.id
    task_run_id = uuid.uuid4()
    dynamic_key = task_run_id.hex
    details = {"task_run_id": task_run_id, "flow_run_id": flow_run_id}
    pending: State[Any] = Pending(timestamp=started, state_details=StateDetails(**details))
    running: State[Any] = Running(timestamp=started + timedelta(microseconds=1), state_details=StateDetails(**details))
    final.state_details = StateDetails(**details)
    final.timestamp = max(_now(), started + timedelta(microseconds=2))
    run = TaskRun(
        id=task_run_id,
        name=name,
        flow_run_id=flow_run_id,
        task_key=_stage.task_key,
        dynamic_key=dynamic_key,
        empirical_policy=TaskRunPolicy(),
        tags=list(TagsContext.get().current_tags or []),
        expected_start_time=started,
        state=pending,
        created=started,
        updated=started,
    )
    event = emit_task_run_state_change_event(task_run=run, initial_state=None, validated_state=pending)
    run.state, run.run_count, run.start_time = running, 1, running.timestamp  # type: ignore[assignment]
    event = emit_task_run_state_change_event(
        task_run=run, initial_state=pending, validated_state=running, follows=event
    )
    run.state, run.end_time = final, final.timestamp  # type: ignore[assignment]
    run.total_run_time = final.timestamp - running.timestamp
    emit_task_run_state_change_event(task_run=run, initial_state=running, validated_state=final, follows=event)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def immediate_sqlite_configuration(url: str) -> AioSqliteConfiguration:
    """Prefect's configuration of the SQLite database at ``url``, every transaction begun ``IMMEDIATE``.

    Prefect's server modules are imported here: only the server's process calls it.
    """
    from prefect.server.database.configurations import AioSqliteConfiguration

    class ImmediateSqliteConfiguration(AioSqliteConfiguration):
        @asynccontextmanager
        async def begin_transaction(
            self, session: AsyncSession, with_for_update: bool = False
        ) -> AsyncGenerator[AsyncSessionTransaction, None]:
            # Prefect maps with_for_update=True to BEGIN IMMEDIATE (its stand-in for
            # SELECT ... FOR UPDATE on SQLite); asking for it always makes every writer queue
            # on busy_timeout instead of failing on a read-to-write lock upgrade.
            async with super().begin_transaction(session, with_for_update=True) as transaction:
                yield transaction

    return ImmediateSqliteConfiguration(connection_url=url)
