"""What a run leaves in Prefect for people: a markdown summary of outputs, a usage table."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from taskmark.tasks import Runtime
from taskmark.tasks._referred import outputs_key, outputs_markdown

__all__ = ["write_artifacts"]


def _block(value: Any) -> str:  # noqa: ANN401
    if isinstance(value, str):
        return value
    return "```json\n" + json.dumps(value, indent=2, default=str) + "\n```"


async def write_artifacts(runtime: Runtime) -> None:
    """A markdown artifact with each phase's state and outputs; a table of usage by phase; and,
    when every phase completed, the outputs by phase that `refers:` and previews read."""
    definition = runtime.definition
    lines = [f"# {definition.title}", ""]
    if runtime.models:
        lines += [f"Answered by: {', '.join(sorted(runtime.models))}", ""]
    for phase in definition.run_order():
        record = runtime.records.get(phase.name)
        if record is None:
            continue
        lines += [f"## {phase.name} — {record.state.lower()} ({record.duration_s:.2f} s)", ""]
        if record.error:
            lines += [f"**Error:** {record.error}", ""]
        if record.outputs is not None:
            lines += [_block(record.outputs), ""]
    summary = acreate_markdown_artifact(
        key=f"{definition.name}-summary", markdown="\n".join(lines), description=f"Outputs of {definition.name}"
    )
    by_phase = runtime.ledger.by_phase()
    rows = [
        {
            "phase": name or "-",
            "calls": t.calls,
            "failed calls": t.failed_calls,
            "prompt tokens": t.prompt_tokens,
            "completion tokens": t.completion_tokens,
            "cost (USD)": round(t.cost_usd, 6),
        }
        for name, t in by_phase.items()
    ]
    total = runtime.ledger.total()
    rows.append(
        {
            "phase": "total",
            "calls": total.calls,
            "failed calls": total.failed_calls,
            "prompt tokens": total.prompt_tokens,
            "completion tokens": total.completion_tokens,
            "cost (USD)": round(total.cost_usd, 6),
        }
    )
    usage = acreate_table_artifact(
        key=f"{definition.name}-usage", table=rows, description=f"LLM usage and cost of {definition.name}"
    )
    writes = [summary, usage]
    if all(
        runtime.records.get(p.name) is not None and runtime.records[p.name].state == "COMPLETED"
        for p in definition.phases
    ):
        outputs = {p.name: runtime.records[p.name].outputs for p in definition.phases}
        writes.append(
            acreate_markdown_artifact(
                key=outputs_key(definition.name),
                markdown=outputs_markdown(definition.title, outputs),
                description=f"Outputs of the latest completed run of {definition.name}",
            )
        )
    await asyncio.gather(*writes)
