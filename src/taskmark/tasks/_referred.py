"""Outputs kept across runs: what `refers:` reads, and what a context preview starts from.

When a run completes, its phases' outputs are written as one markdown artifact keyed by the
definition (`outputs-DEFINITION`): people see them in the Prefect UI, and the key's latest
version is the definition's most recent completed run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CompletedRun", "json_artifacts", "latest_runs", "outputs_key", "outputs_markdown"]

_FENCE = re.compile(r"```json\n(.*)\n```", re.S)


@dataclass(frozen=True)
class CompletedRun:
    """The outputs of a definition's most recent completed run, by phase."""

    definition: str
    outputs: dict[str, Any]
    flow_run_id: str | None


def _json_block(markdown: object) -> Any | None:  # noqa: ANN401
    """The value of the first ```json block of an artifact's markdown (None when it has none)."""
    match = _FENCE.search(str(markdown or ""))
    return json.loads(match.group(1)) if match else None


def outputs_key(definition: str) -> str:
    """The artifact key of a definition's completed outputs."""
    return f"outputs-{definition}"


def outputs_markdown(title: str, outputs: dict[str, Any]) -> str:
    """The artifact's body: a heading and the outputs by phase as JSON (read back by :func:`latest_runs`)."""
    return f"# Outputs of {title}\n\n```json\n{json.dumps(outputs, indent=1, default=str, ensure_ascii=False)}\n```"


async def latest_runs(definitions: set[str]) -> dict[str, CompletedRun]:
    """The most recent completed run of each definition; those never completed are left out."""
    keys = {outputs_key(d): d for d in definitions}
    found = await json_artifacts(set(keys), latest=True)
    return {keys[key]: CompletedRun(keys[key], outputs, flow_run_id) for key, (outputs, flow_run_id) in found.items()}


async def json_artifacts(keys: set[str], *, latest: bool) -> dict[str, tuple[Any, str | None]]:
    """The value of the ```json block of the artifact with each key, and the flow run that made
    it; with ``latest``, of the key's latest version. Keys with no such artifact are left out."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
        ArtifactFilter,
        ArtifactFilterKey,
    )

    if not keys:
        return {}
    async with get_client() as client:
        if latest:
            artifacts: Sequence[Any] = await client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=sorted(keys)))
            )
        else:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=sorted(keys)))
            )
    found: dict[str, tuple[Any, str | None]] = {}
    for artifact in artifacts:
        data = _json_block(artifact.data)
        if artifact.key in keys and data is not None:
            found[artifact.key] = (data, str(artifact.flow_run_id) if artifact.flow_run_id else None)
    return found
