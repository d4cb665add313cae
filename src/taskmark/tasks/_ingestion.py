"""The ingestion stage: what a phase starts from (its inputs, the upstream phases) and, when its
calls get context, the candidate items gathered for them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskmark.tasks._assembly import gather_sources
from taskmark.tasks._context import StageResult

if TYPE_CHECKING:
    from taskmark.tasks._lifecycle import Lifecycle

__all__ = ["ingest"]


async def ingest(run: Lifecycle) -> StageResult:
    data: dict[str, Any] = {"inputs": sorted(run.inputs), "phases": sorted(run.upstream)}
    if run.needs_context:
        done = {n: o.outputs for n, o in run.finished.items() if o.state == "COMPLETED" and n != run.phase.name}
        run.sources = await gather_sources(run.definition, run.phase, run.upstream, done)
        data |= {"context": run.sources.ids, "absent": {a.id: a.reason for a in run.sources.absent}}
    return StageResult(data=data)
