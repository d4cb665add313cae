"""The run summary and usage table, rendered from plain data: what a person reads first."""

from __future__ import annotations

import json
import re

from taskmark.flows._artifacts import PhaseView, final_phases, readable, summary_markdown, usage_rows
from taskmark.runs.record import CallRecord, DefinitionRef, PhaseRecord, RunRecord, StageRecord

DRAFT = PhaseView(name="Draft", state="completed", duration_s=1.5, outputs="draft text")
BRIEF = PhaseView(
    name="Brief",
    state="completed",
    duration_s=2.25,
    depends_on=("Draft",),
    outputs={
        "headline": "Tides",
        "summary": "First paragraph.\n\nSecond paragraph.",
        "points": ["The moon pulls.", "The sun | too."],
        "sources": [{"title": "NOAA", "year": 2020}, {"title": "Met Office", "year": 2021}],
        "scores": {"clarity": 0.8, "depth": 0.6},
    },
    decisions=("approval: approved at 2026-01-02 09:30:00 UTC; note: ship it",),
)


def test_final_phases_are_those_no_phase_depends_on() -> None:
    side = PhaseView(name="Side", state="completed")
    assert [p.name for p in final_phases([DRAFT, BRIEF, side])] == ["Brief", "Side"]


def test_text_is_paragraphs_lists_are_bullets_mappings_are_fields() -> None:
    assert readable("Line one.\n\nLine two.\n") == ["Line one.\n\nLine two.", ""]
    assert readable(["a", "two\nlines", 3]) == ["- a", "- two\n  lines", "- 3", ""]
    assert readable({"n": 1, "ok": True, "text": "a\nb"}) == [
        "**n**: 1",
        "",
        "**ok**: true",
        "",
        "**text**",
        "",
        "a\nb",
        "",
    ]
    assert readable([{"a": 1, "b": "x|y"}, {"a": 2}]) == ["| a | b |", "| --- | --- |", "| 1 | x\\|y |", "| 2 |  |", ""]
    assert readable([]) == ["_(none)_", ""]


def test_nested_mappings_are_a_table_of_fields_or_json() -> None:
    assert readable({"scores": {"x": 1}}) == ["**scores**", "", "| field | value |", "| --- | --- |", "| x | 1 |", ""]
    deep = readable({"tree": {"a": {"b": 1}}})
    assert deep[:3] == ["**tree**", "", "```json"] and json.loads(deep[3]) == {"a": {"b": 1}}


def test_summary_leads_with_final_outputs_then_inputs_phases_and_raw_json() -> None:
    markdown = summary_markdown("A brief", [DRAFT, BRIEF], {"topic": "tides", "days": 3}, ["openai/fake-model"])

    headings = re.findall(r"^## (.*)$", markdown, re.M)
    assert headings == ["Brief", "Inputs", "Phases", "Outputs as JSON"]
    final = markdown.split("## Brief\n", 1)[1].split("## Inputs", 1)[0]
    assert "**headline**: Tides" in final
    assert "**summary**\n\nFirst paragraph.\n\nSecond paragraph." in final
    assert "**points**\n\n- The moon pulls.\n- The sun | too." in final
    assert "| title | year |\n| --- | --- |\n| NOAA | 2020 |\n| Met Office | 2021 |" in final
    assert "| clarity | 0.8 |" in final
    assert "draft text" not in final  # Draft is not a final phase
    assert "| input | value |\n| --- | --- |\n| topic | tides |\n| days | 3 |" in markdown
    assert "| Draft | completed | 1.50 s |  |" in markdown
    assert "| Brief | completed | 2.25 s | approval: approved at 2026-01-02 09:30:00 UTC; note: ship it |" in markdown
    assert "Answered by: openai/fake-model" in markdown
    raw = markdown.split("## Outputs as JSON\n\n```json\n", 1)[1].rsplit("\n```", 1)[0]
    assert json.loads(raw) == {"Draft": "draft text", "Brief": BRIEF.outputs}


def test_a_final_phase_that_failed_shows_why_and_errors_are_in_the_phase_table() -> None:
    failed = PhaseView(
        name="Brief",
        state="failed",
        duration_s=0.4,
        depends_on=("Draft",),
        error="phase 'Brief' failed in approval: rejected: no",
    )
    markdown = summary_markdown("A brief", [DRAFT, failed], {})
    assert "## Brief\n\n**failed**: phase 'Brief' failed in approval: rejected: no" in markdown
    assert "## Inputs\n\n_(none)_" in markdown
    assert "| Brief | failed | 0.40 s | phase 'Brief' failed in approval: rejected: no |" in markdown


def test_raw_json_fence_outlasts_backticks_in_outputs() -> None:
    markdown = summary_markdown("T", [PhaseView(name="P", state="completed", outputs={"code": "```py\nx\n```"})], {})
    assert "\n````json\n" in markdown and markdown.rstrip().endswith("````")


def _phase(name: str, *calls: CallRecord, attempt: int = 1) -> PhaseRecord:
    stage = StageRecord(name="inference", state="completed", calls=list(calls))
    return PhaseRecord(name=name, state="completed", run_attempt=attempt, stages=[stage])


def test_usage_rows_have_a_model_column_and_say_unpriced_rather_than_zero() -> None:
    def call(model: str | None, **usage: object) -> CallRecord:
        return CallRecord(agent="x", state="completed", model=model, attempts=1, **usage)  # type: ignore[arg-type]

    priced = call("gpt-4o-mini", prompt_tokens=5, completion_tokens=2, cost_usd=0.0012345678)
    local = call("local", prompt_tokens=5, completion_tokens=2)
    failed = CallRecord(agent="x", state="failed", model=None, attempts=1, error="HTTP 500")
    cached = CallRecord(agent="x", state="completed", model="gpt-4o-mini", cached=True)
    record = RunRecord(
        run_id="r",
        definition=DefinitionRef(name="d"),
        outcome="completed",
        phases=[_phase("A", priced, local, cached, attempt=2), _phase("B", failed, attempt=2)],
        earlier=[_phase("A", priced)],  # an earlier attempt's request was paid for too
    )

    rows = usage_rows(record)

    assert [(r["phase"], r["model"], r["calls"], r["cost (USD)"], r["unpriced calls"]) for r in rows] == [
        ("A", "gpt-4o-mini", 2, 0.002469, 0),
        ("A", "local", 1, "unpriced", 1),
        ("B", "-", 0, 0.0, 0),
        ("total", "", 3, 0.002469, 1),
    ]
    assert rows[1] == {
        "phase": "A",
        "model": "local",
        "calls": 1,
        "failed calls": 0,
        "prompt tokens": 5,
        "completion tokens": 2,
        "cost (USD)": "unpriced",
        "unpriced calls": 1,
    }


def test_a_phase_accepted_with_errors_shows_its_outputs_and_the_checks_it_failed() -> None:
    accepted = PhaseView(
        name="Loop", state="accepted_with_errors", outputs={"n": 3}, failed_checks={"a": ["output.n > 100 is false"]}
    )
    markdown = summary_markdown("T", [accepted], {})
    assert "## Loop\n\n**accepted with errors**: a still fails output.n > 100 is false\n\n**n**: 3" in markdown
    assert "| Loop | accepted with errors | 0.00 s |  |" in markdown
