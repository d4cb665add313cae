"""What a run leaves in Prefect for people: a markdown summary, a usage table, and the
outputs of a completed run.

The summary leads with what the run was for, the outputs of its final phases (those no other
phase depends on), written to be read: text as paragraphs, lists as bullets, mappings as
fields. Then the inputs, each phase's state, time and error (and what the people it waited
for answered), and last the raw JSON of every phase's outputs. The usage table has a row per
phase and model; a cost no price was known for says `unpriced`, never 0.

Rendering is pure (plain data in, markdown or rows out); :func:`write_artifacts` renders the
run's record (taskmark.runs.record) as its phases ended. Nothing reads the artifacts back:
every view reads the record.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from taskmark.definition import Definition
from taskmark.runs.record import PhaseRecord, RunRecord, Totals
from taskmark.tasks._approval import decision_text

__all__ = [
    "PhaseView",
    "final_phases",
    "outputs_markdown",
    "readable",
    "summary_markdown",
    "usage_rows",
    "write_artifacts",
]

WAITS = ("approval", "review")
"""The stages in which a phase waits for a person; their answers go in the summary."""


@dataclass(frozen=True)
class PhaseView:
    """What the summary shows of one phase."""

    name: str
    state: str
    """As the run record says: completed, accepted_with_errors, failed, not_run, timed_out, ..."""
    duration_s: float = 0.0
    outputs: Any = None
    error: str | None = None
    depends_on: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    """What the people it waited for answered (approval, context review), one line each."""
    failed_checks: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Per answer, the checks it still failed when it was accepted with errors."""


def final_phases(phases: Sequence[PhaseView]) -> list[PhaseView]:
    """The phases no other phase depends on: what the run was for."""
    needed = {name for phase in phases for name in phase.depends_on}
    return [phase for phase in phases if phase.name not in needed]


def _scalar(value: Any) -> bool:  # noqa: ANN401
    """Whether ``value`` fits on a line: a number, a flag, nothing, or text without line breaks."""
    return value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and "\n" not in value)


def _cell(value: Any) -> str:  # noqa: ANN401
    """``value`` inside a table cell or after a label: one line, pipes escaped."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _code(value: Any) -> list[str]:  # noqa: ANN401
    """``value`` as a JSON code block, fenced longer than any run of backticks inside it."""
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return [f"{fence}json", text, fence, ""]


def _bullet(value: Any) -> str:  # noqa: ANN401
    lines = str(value).strip().splitlines() or [""]
    return "\n".join([f"- {lines[0]}", *(f"  {line}" for line in lines[1:])])


def readable(value: Any, depth: int = 0) -> list[str]:  # noqa: ANN401
    """Lines of markdown that show ``value`` to a person: text as its paragraphs, a list as
    bullets (a list of records as a table), a mapping as its fields, each with its value.

    Deeper than a mapping's fields, a mapping shows as a table of fields, or as JSON.
    """
    if isinstance(value, str):
        return [value.strip() or "_(empty)_", ""]
    if isinstance(value, Mapping):
        if depth and all(_scalar(v) for v in value.values()):
            return _table(["field", "value"], list(value.items()))
        if depth:
            return _code(value)
        lines: list[str] = []
        for key, item in value.items():
            lines += [f"**{key}**: {_cell(item)}", ""] if _scalar(item) else [f"**{key}**", "", *readable(item, 1)]
        return lines
    if isinstance(value, list | tuple):
        if not value:
            return ["_(none)_", ""]
        if all(isinstance(item, Mapping) and all(_scalar(v) for v in item.values()) for item in value):
            keys = list(dict.fromkeys(key for item in value for key in item))
            return _table(keys, [[item.get(key, "") for key in keys] for item in value])
        if all(isinstance(item, str) or _scalar(item) for item in value):
            return [*(_bullet(item if isinstance(item, str) else _cell(item)) for item in value), ""]
        return _code(value)
    return [_cell(value), ""]


_ANSWERED = ("completed", "accepted_with_errors")


def _duration(phase: PhaseView) -> str:
    return "-" if phase.state in ("not_run", "pending") else f"{phase.duration_s:.2f} s"


def _state(phase: PhaseView) -> str:
    return phase.state.replace("_", " ")


def summary_markdown(
    title: str, phases: Sequence[PhaseView], inputs: Mapping[str, Any], models: Sequence[str] = ()
) -> str:
    """The run's summary: the final phases' outputs, the inputs, each phase, the raw outputs.

    Args:
        title: The definition's title.
        phases: Every phase that has a record, in run order.
        inputs: The run's inputs.
        models: The models that answered.
    """
    lines = [f"# {title}", ""]
    for phase in final_phases(phases):
        lines += [f"## {phase.name}", ""]
        for answer, checks in phase.failed_checks.items():
            lines += [f"**accepted with errors**: {answer} still fails {'; '.join(checks)}", ""]
        if phase.state not in _ANSWERED:
            lines += [f"**{_state(phase)}**" + (f": {phase.error}" if phase.error else ""), ""]
        elif phase.outputs is None:
            lines += ["_(no outputs)_", ""]
        else:
            lines += readable(phase.outputs)
    lines += ["## Inputs", ""]
    lines += _table(["input", "value"], list(inputs.items())) if inputs else ["_(none)_", ""]
    lines += ["## Phases", ""]
    lines += _table(
        ["phase", "state", "time", "notes"],
        [[p.name, _state(p), _duration(p), "; ".join([*p.decisions, *([p.error] if p.error else [])])] for p in phases],
    )
    if models:
        lines += [f"Answered by: {', '.join(models)}", ""]
    lines += ["## Outputs as JSON", "", *_code({p.name: p.outputs for p in phases if p.outputs is not None})]
    return "\n".join(lines)


def outputs_markdown(title: str, outputs: Mapping[str, Any]) -> str:
    """A completed run's outputs, each phase's under its name, written to be read."""
    lines = [f"# Outputs of {title}", ""]
    for phase, value in outputs.items():
        lines += [f"## {phase}", "", *(["_(no outputs)_", ""] if value is None else readable(value))]
    return "\n".join(lines)


def _usage_row(phase: str, model: str, totals: Totals) -> dict[str, Any]:
    unpriced = totals.unpriced_calls > 0 and totals.unpriced_calls >= totals.calls
    return {
        "phase": phase,
        "model": model,
        "calls": totals.calls,
        "failed calls": totals.failed_calls,
        "prompt tokens": totals.prompt_tokens,
        "completion tokens": totals.completion_tokens,
        "cost (USD)": "unpriced" if unpriced else round(totals.cost_usd, 6),
        "unpriced calls": totals.unpriced_calls,
    }


def usage_rows(record: RunRecord) -> list[dict[str, Any]]:
    """The usage table: one row per phase and model, over every attempt, then the total.

    ``cost (USD)`` is `unpriced` where no call had a known price; ``unpriced calls`` counts
    the calls whose price is unknown and left out of the cost. Calls answered from the
    response cache cost nothing and are not counted.
    """
    calls: dict[tuple[str, str], list[Any]] = {}
    for phase in [*record.earlier, *record.phases]:
        for call in phase.calls():
            if not call.cached:
                calls.setdefault((phase.name, call.model or "-"), []).append(call)
    order = {p.name: i for i, p in enumerate(record.phases)}
    rows = sorted(calls.items(), key=lambda row: order.get(row[0][0], len(order)))
    table = [_usage_row(phase, model, Totals.of(found)) for (phase, model), found in rows]
    return [*table, _usage_row("total", "", record.totals)]


def _view(phase: PhaseRecord, depends_on: Sequence[str]) -> PhaseView:
    stages = {s.name: s for s in phase.stages}
    return PhaseView(
        name=phase.name,
        state=phase.state,
        duration_s=phase.duration_s or 0.0,
        outputs=phase.outputs,
        error=phase.error,
        depends_on=tuple(depends_on),
        decisions=tuple(
            f"{stage}: {decision_text(stage, stages[stage].data)}"
            for stage in WAITS
            if stage in stages and isinstance(stages[stage].data, Mapping)
        ),
        failed_checks=phase.failed_checks,
    )


async def write_artifacts(definition: Definition, record: RunRecord) -> None:
    """The summary (markdown) and usage (table) artifacts of the run, rendered from its record;
    and, when every phase completed, its outputs by phase (markdown, keyed by the definition:
    its latest version is the latest completed run's, for people browsing the Prefect UI)."""
    depends = {p.name: p.depends_on for p in definition.phases}
    phases = [_view(p, depends.get(p.name, ())) for p in record.phases if p.state != "pending"]
    models = sorted({c.model for p in record.phases for c in p.calls() if c.model and c.state == "completed"})
    summary = acreate_markdown_artifact(
        key=f"{definition.name}-summary",
        markdown=summary_markdown(definition.title, phases, record.inputs, models),
        description=f"Outputs of {definition.name}",
    )
    usage = acreate_table_artifact(
        key=f"{definition.name}-usage",
        table=usage_rows(record),
        description=f"LLM usage and cost of {definition.name}, by phase and model",
    )
    writes = [summary, usage]
    if record.phases and all(p.state in _ANSWERED for p in record.phases):
        writes.append(
            acreate_markdown_artifact(
                key=f"outputs-{definition.name}",
                markdown=outputs_markdown(definition.title, {p.name: p.outputs for p in record.phases}),
                description=f"Outputs of the latest completed run of {definition.name}",
            )
        )
    await asyncio.gather(*writes)
