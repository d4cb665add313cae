"""Phases as concurrent subflow runs: each starts as soon as its dependencies completed.

Each phase is an asyncio task that waits for its dependencies, then for a slot
(maxConcurrentPhases), then runs its lifecycle inside its own Prefect subflow run (written by
hand, off the critical path: see :mod:`taskmark._engine`). The scheduler alone writes the
run's record (:class:`~taskmark.flows._recorder.Recorder`): each phase's start and end, its
stages' and calls' ends as the lifecycle reports them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prefect.logging.loggers import get_run_logger
from prefect.states import Cancelled, Completed, Failed

from taskmark._engine import PhaseRuns
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


async def _hold_requested(runs: PhaseRuns) -> bool:
    """Whether `taskmark pause` asked the run to hold (the parent carries ``PAUSE_TAG``): read
    as each phase starts, so a hold asked before a phase starts always stops it."""
    assert runs.parent.flow_run is not None
    parent = await runs.client.read_flow_run(runs.parent.flow_run.id)
    return PAUSE_TAG in parent.tags


def _phase_line(runs: PhaseRuns, record: PhaseOutcome, usage: Totals) -> None:
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
    runs = PhaseRuns(definition, inputs)
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
        hold = await _hold_requested(runs)
        if phase.options.approval is not None or phase.options.review or hold:
            # The phase will pause its subflow run, which Prefect allows only once it is Running.
            await run.settled()
        with context:
            return await run_lifecycle(definition, phase, inputs, upstream, runtime, finished=outcomes, hold=hold)

    async def one(phase: Phase) -> None:
        run = runs.runs[phase.name]
        await asyncio.gather(*(started[d] for d in phase.depends_on))
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
            runtime.events.emit("phase:start", phase=phase.name)
            try:
                outcome = await lifecycle(phase, upstream)
            except Exception as exc:  # noqa: BLE001 - a phase's crash must not stop its siblings
                outcome = PhaseOutcome(name=phase.name, state="FAILED", error=f"{type(exc).__name__}: {exc}")
            outcome = outcome.model_copy(update={"duration_s": time.perf_counter() - begin})
            run.finish(Completed() if outcome.state == "COMPLETED" else Failed(message=outcome.error))
            ended(outcome)
            usage = recorder.totals(phase.name)
            _phase_line(runs, outcome, usage)
            runtime.events.emit(
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
            runs.runs[name].finish(
                Failed(name="TimedOut", message=f"the run exceeded maxExecutionTime ({timeout_s:g}s)")
            )
            why = f"phase '{name}' timed out: the run exceeded maxExecutionTime ({timeout_s:g}s)"
            ended(PhaseOutcome(name=name, state="TIMED_OUT", error=why))
        for phase in definition.phases:
            if phase.name not in outcomes:
                ended(PhaseOutcome(name=phase.name, state="NOT_RUN", error="the run timed out first"))
    except BaseException:  # the run was cancelled (or its process is stopping)
        for name in running:
            runs.runs[name].finish(Cancelled(message="the run was cancelled"))
        await asyncio.gather(runs.drain(), recorder.flush())
        raise
    await asyncio.gather(runs.drain(), recorder.close(), *([then(recorder.record())] if then is not None else []))
    return {name: outcomes[name] for name in started if name in outcomes}
