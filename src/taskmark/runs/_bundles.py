"""The context bundles a run's calls used, read from their snapshots (`trace --context`)."""

from __future__ import annotations

from typing import Any

from taskmark.context import SNAPSHOT_TAG
from taskmark.runs.record import RunRecord

__all__ = ["read_bundles"]


async def read_bundles(record: RunRecord) -> dict[str, dict[str, Any]]:
    """The bundle (as JSON) of each context hash the calls of ``record`` name, by hash.

    A call's record keeps only its bundle's hash: the bundle itself is stored once, as a
    snapshot any run or call that used it shares. A hash whose snapshot is gone is left out.

    Example:
        >>> bundles = await read_bundles(record)
        >>> bundles[record.phases[0].calls()[0].context]["items"][0]["id"]
        'index'
    """
    from taskmark.tasks._snapshots import read_snapshots

    hashes = {c.context for p in [*record.earlier, *record.phases] for c in p.calls() if c.context}
    found = await read_snapshots({SNAPSHOT_TAG + h for h in hashes})
    return {tag.removeprefix(SNAPSHOT_TAG): bundle.to_json() for tag, bundle in found.items()}
