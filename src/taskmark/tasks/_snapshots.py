"""Context snapshots: the bundle each LLM call used, stored once per distinct bundle.

A snapshot is a JSON artifact (type ``taskmark-context``) keyed by the bundle's content hash
(`context-HASH`): its data is the whole bundle, read back as it was stored by `taskmark trace
--context`, and its description a table of the items for people in the Prefect UI.
Each call's task run carries the tag `taskmark-context:HASH`, so a call leads to its bundle
and a bundle that many calls (or runs) used is stored once.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, ArtifactFilterType
from prefect.utilities.context import get_task_and_flow_run_ids

from taskmark.context import SNAPSHOT_TAG, Bundle, snapshot_key, snapshot_tag

__all__ = ["SNAPSHOT_ARTIFACT_TYPE", "read_snapshots", "store_snapshot"]

SNAPSHOT_ARTIFACT_TYPE = "taskmark-context"
"""The Prefect artifact type of a stored bundle."""

_STORED: set[tuple[str, str]] = set()
"""Keys this process already stored, by API address."""


def _markdown(bundle: Bundle) -> str:
    rows = ["| # | item | kind | tokens | why |", "| --- | --- | --- | --- | --- |"]
    for n, item in enumerate(bundle.items, 1):
        rows.append(f"| {n} | `{item.id}` | {item.kind} | {item.tokens} | {item.reason.replace('|', '/')} |")
    return "\n".join(
        [f"# Context bundle {bundle.hash[:12]}", "", f"{bundle.used} of {bundle.budget} tokens.", "", *rows]
    )


def _stored(keys: set[str]) -> ArtifactFilter:
    """The snapshots with ``keys`` (a markdown one, stored by an older taskmark, is not one)."""
    return ArtifactFilter(
        key=ArtifactFilterKey(any_=sorted(keys)), type=ArtifactFilterType(any_=[SNAPSHOT_ARTIFACT_TYPE])
    )


async def store_snapshot(bundle: Bundle) -> str:
    """Store ``bundle`` unless it is already stored; its tag for the call that uses it.

    The first run (and call) that stores it owns the artifact in the Prefect UI."""
    key = snapshot_key(bundle.hash)
    async with get_client() as client:
        place = (str(client.api_url), key)
        if place in _STORED:
            return snapshot_tag(bundle.hash)
        if not await client.read_artifacts(artifact_filter=_stored({key}), limit=1):
            task_run_id, flow_run_id = get_task_and_flow_run_ids()
            await client.create_artifact(
                ArtifactCreate(
                    key=key,
                    type=SNAPSHOT_ARTIFACT_TYPE,
                    description=_markdown(bundle),
                    data=bundle.to_json(),
                    flow_run_id=flow_run_id,
                    task_run_id=task_run_id,
                )
            )
    _STORED.add(place)
    return snapshot_tag(bundle.hash)


async def read_snapshots(tags: set[str]) -> dict[str, Bundle]:
    """The bundles named by call tags (`taskmark-context:HASH`), by tag; unknown ones left out."""
    keys = {snapshot_key(t.removeprefix(SNAPSHOT_TAG)): t for t in tags if t.startswith(SNAPSHOT_TAG)}
    if not keys:
        return {}
    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=_stored(set(keys)))
    return {keys[a.key]: Bundle.from_json(a.data) for a in found if a.key in keys and isinstance(a.data, dict)}
