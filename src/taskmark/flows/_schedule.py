"""Phases as concurrent async subflows: each starts as soon as its dependencies completed.

Prefect runs subflows one after another unless they are made concurrent; here each phase is
an asyncio task that waits for its dependencies, then for a slot (maxConcurrentPhases), then
awaits its async subflow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, cast

from prefect import Flow, flow

from taskmark.definition import Definition, Phase
from taskmark.definition._graph import ancestors
from taskmark.tasks import PhaseFailed, PhaseRecord, Runtime, run_lifecycle
from taskmark.tasks._runtime import CURRENT_RUNTIME

__all__ = ["run_phases"]


@flow(persist_result=False)
async def _phase(phase: str, inputs: dict[str, Any], upstream: dict[str, Any]) -> Any:  # noqa: ANN401
    runtime = CURRENT_RUNTIME.get()
    record = await run_lifecycle(runtime.definition, runtime.definition.phase(phase), inputs, upstream, runtime)
    return record.outputs


def _subflow(phase: Phase) -> Flow[..., Any]:
    return _phase.with_options(name=f"Phase: {phase.name}", flow_run_name=f"Phase: {phase.name}")


async def run_phases(definition: Definition, inputs: dict[str, Any], runtime: Runtime, *, timeout_s: float | None) -> None:
    """Run every phase, each as soon as it may; records end up in ``runtime.records``.

    A phase whose dependency did not complete is NOT_RUN; independent phases go on. When the
    run exceeds ``timeout_s``, running phases become TIMED_OUT and finished ones keep their
    outputs.
    """
    edges = {p.name: p.depends_on for p in definition.phases}
    slots = asyncio.Semaphore(definition.metadata.max_concurrent_phases)
    started: dict[str, asyncio.Task[None]] = {}

    async def one(phase: Phase) -> None:
        await asyncio.gather(*(started[d] for d in phase.depends_on))
        if any(runtime.records[d].state != "COMPLETED" for d in phase.depends_on):
            runtime.records[phase.name] = PhaseRecord(name=phase.name, state="NOT_RUN", error="a phase it depends on did not complete")
            return
        async with slots:
            upstream = {n: runtime.records[n].outputs for n in sorted(ancestors(edges, phase.name))}
            begin = time.perf_counter()
            runtime.records[phase.name] = PhaseRecord(name=phase.name, state="RUNNING", started_at=time.time())
            runtime.emit("phase:start", phase=phase.name)
            try:
                await cast("Awaitable[Any]", _subflow(phase)(phase.name, inputs, upstream))
            except PhaseFailed as failure:
                record = runtime.records[phase.name]
                record.state, record.error = "FAILED", str(failure)
            except Exception as exc:  # noqa: BLE001 - a phase's crash must not stop its siblings
                record = runtime.records[phase.name]
                record.state, record.error = "FAILED", f"{type(exc).__name__}: {exc}"
            finally:
                runtime.records[phase.name].duration_s = time.perf_counter() - begin
            record = runtime.records[phase.name]
            usage = runtime.ledger.by_phase().get(phase.name)
            runtime.emit(
                "phase:complete" if record.state == "COMPLETED" else "phase:failed",
                phase=phase.name,
                error=record.error,
                duration_s=round(record.duration_s, 3),
                calls=usage.calls if usage else 0,
                tokens=usage.total_tokens if usage else 0,
                cost_usd=usage.cost_usd if usage else 0.0,
            )

    for phase in definition.run_order():
        started[phase.name] = asyncio.create_task(one(phase))
    try:
        await asyncio.wait_for(asyncio.gather(*started.values()), timeout=timeout_s)
    except asyncio.TimeoutError:
        for name, record in runtime.records.items():
            if record.state == "RUNNING":
                record.state, record.error = "TIMED_OUT", f"phase '{name}' timed out: the run exceeded maxExecutionTime ({timeout_s:g}s)"
        for phase in definition.phases:
            runtime.records.setdefault(phase.name, PhaseRecord(name=phase.name, state="NOT_RUN", error="the run timed out first"))
