"""Context snapshots: the bundle each LLM call used, stored once per distinct bundle.

A snapshot is a markdown artifact keyed by the bundle's content hash (`context-HASH`): a
table of its items for people, and the whole bundle as JSON for `taskmark trace --context`.
Each call's task run carries the tag `taskmark-context:HASH`, so a call leads to its bundle
and a bundle that many calls (or runs) used is stored once.
"""

from __future__ import annotations

import json

from taskmark.context import SNAPSHOT_TAG, Bundle, snapshot_key, snapshot_tag
from taskmark.tasks._referred import json_artifacts

__all__ = ["read_snapshots", "store_snapshot"]

_STORED: set[tuple[str, str]] = set()
"""Keys this process already stored, by API address."""


def _markdown(bundle: Bundle) -> str:
    rows = ["| # | item | kind | tokens | why |", "| --- | --- | --- | --- | --- |"]
    for n, item in enumerate(bundle.items, 1):
        rows.append(f"| {n} | `{item.id}` | {item.kind} | {item.tokens} | {item.reason.replace('|', '/')} |")
    body = json.dumps(bundle.to_json(), indent=1, ensure_ascii=False)
    return "\n".join(
        [
            f"# Context bundle {bundle.hash[:12]}",
            "",
            f"{bundle.used} of {bundle.budget} tokens.",
            "",
            *rows,
            "",
            "```json",
            body,
            "```",
        ]
    )


async def store_snapshot(bundle: Bundle) -> str:
    """Store ``bundle`` unless it is already stored; its tag for the call that uses it."""
    from prefect.artifacts import acreate_markdown_artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = snapshot_key(bundle.hash)
    async with get_client() as client:
        place = (str(client.api_url), key)
        if place in _STORED:
            return snapshot_tag(bundle.hash)
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1)
    if not found:
        await acreate_markdown_artifact(
            key=key, markdown=_markdown(bundle), description=f"Context bundle of {len(bundle.items)} items"
        )
    _STORED.add(place)
    return snapshot_tag(bundle.hash)


async def read_snapshots(tags: set[str]) -> dict[str, Bundle]:
    """The bundles named by call tags (`taskmark-context:HASH`), by tag; unknown ones left out."""
    keys = {snapshot_key(t.removeprefix(SNAPSHOT_TAG)): t for t in tags if t.startswith(SNAPSHOT_TAG)}
    found = await json_artifacts(set(keys), latest=False)
    return {keys[key]: Bundle.from_json(data) for key, (data, _) in found.items()}
