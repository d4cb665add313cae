"""How `taskmark trace` and `taskmark runs` draw what they read: pure rendering, no server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from rich.console import Console

from taskmark.cli.runs import runs_table, seconds
from taskmark.cli.trace import trace_tree
from taskmark.runs import RunSummary
from taskmark.runs.record import CallRecord, DefinitionRef, PhaseRecord, RequestRecord, RunRecord, StageRecord

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)
SKIPPED = ("preProcessing", "validateStructure", "validateQuality", "critique", "refine", "finalValidation")


def rendered(renderable: object) -> str:
    console = Console(record=True, width=220, color_system=None)
    console.print(renderable)
    return console.export_text()


def lines_of(renderable: object) -> list[str]:
    return [line.strip(" │├└─") for line in rendered(renderable).splitlines()]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stage(name: str, state: str = "completed", start: float = 0.0, end: float = 0.0, **extra: Any) -> StageRecord:
    return StageRecord(name=name, state=state, started=at(start), ended=at(end), **extra)


def phase(name: str, stages: list[StageRecord], state: str = "completed", **extra: Any) -> PhaseRecord:
    ran = {s.name for s in stages}
    skipped = [StageRecord(name=s, state="skipped") for s in SKIPPED if s not in ran]
    return PhaseRecord(name=name, state=state, started=at(0), ended=at(1.7), stages=[*stages, *skipped], **extra)


def call(agent: str, **extra: Any) -> CallRecord:
    fields: dict[str, Any] = {"state": "completed", "model": "openai/m", "started": at(0), "ended": at(1.5)}
    return CallRecord(agent=agent, **{**fields, **extra})


def record(phases: list[PhaseRecord], outcome: str = "completed", **extra: Any) -> RunRecord:
    return RunRecord(
        run_id="r1",
        definition=DefinitionRef(name="two-steps", version="1.2.0"),
        outcome=outcome,
        started=at(0),
        ended=at(2),
        phases=phases,
        **extra,
    )


def a_failed_run() -> RunRecord:
    ok = call("writer", attempts=3, prompt_tokens=11, completion_tokens=7, cost_usd=0.0012)
    bad = call(
        "critic", state="failed", started=at(1.5), ended=at(1.6), attempts=1, error="openai/m: 401 invalid key [x]"
    )
    cached = call("writer", cached=True, started=at(1.6), ended=at(1.6), prompt_tokens=11, completion_tokens=7)
    inference = stage("inference", "failed", 0, 1.6, calls=[ok, bad, cached], error="invalid key")
    draft = phase(
        "Draft",
        [stage("ingestion", end=0.001), stage("promptTemplating"), inference],
        state="failed",
        error="phase 'Draft' failed in inference: invalid key",
    )
    never = PhaseRecord(name="Polish", state="not_run")
    return record([draft, never], outcome="failed", error="phase 'Draft' failed in inference: invalid key")


def test_the_tree_shows_the_run_its_phases_the_stages_that_ran_and_their_calls() -> None:
    lines = lines_of(trace_tree(a_failed_run()))
    run_line = (
        "two-steps 1.2.0 (r1) — failed in 2.00s · 1 call (1 failed) · 1 cached · 4 requests"
        " · 18 tokens (11 in, 7 out) · $0.0012"
    )
    assert lines[0] == run_line
    assert lines[1] == "phase 'Draft' failed in inference: invalid key"  # the run's error comes first
    draft = "Draft — failed 1.70s · 1 call (1 failed) · 1 cached · 4 requests · 18 tokens (11 in, 7 out) · $0.0012"
    assert lines[2] == draft
    assert lines[3] == "phase 'Draft' failed in inference: invalid key"
    assert lines[4:7] == [
        "ingestion — completed 0.00s",
        "promptTemplating — completed 0.00s",
        "inference — failed 1.60s",
    ]
    assert lines[7] == "invalid key"
    assert lines[8] == "writer — completed 1.50s · openai/m · 3 requests · 18 tokens (11 in, 7 out) · $0.0012"
    assert lines[9] == "critic — failed 0.10s · openai/m · 1 request"
    assert lines[10] == "openai/m: 401 invalid key [x]"  # markup in messages is printed as it is
    assert lines[11] == "writer — completed 0.00s · openai/m · cached"
    assert lines[12] == "skipped: " + ", ".join(SKIPPED)  # one line, after the stages that ran
    assert lines[13:] == ["Polish — not run - · 0 calls · 0 requests · 0 tokens (0 in, 0 out) · $0.0000"]


def test_an_unpriced_call_and_run_say_unpriced_not_zero() -> None:
    free = call("writer", attempts=1, prompt_tokens=5, completion_tokens=2, cost_usd=None)
    lines = lines_of(trace_tree(record([phase("Draft", [stage("inference", calls=[free])])])))
    assert lines[0].endswith("· 1 call · 1 request · 7 tokens (5 in, 2 out) · unpriced")
    assert "writer — completed 1.50s · openai/m · 1 request · 7 tokens (5 in, 2 out) · unpriced" in lines


def test_a_call_says_which_of_its_requests_failed_and_whether_it_was_repaired() -> None:
    requests = [
        RequestRecord(model="openai/m", outcome="failed", status_code=429, transient=True, error="slow down"),
        RequestRecord(model="openai/m", outcome="failed", status_code=None, transient=True, error="timed out"),
        RequestRecord(model="openai/m", outcome="answered"),
        RequestRecord(model="openai/m", purpose="repair", outcome="answered"),
    ]
    retried = call("writer", attempts=4, requests=requests, prompt_tokens=5, completion_tokens=2, cost_usd=None)
    lines = lines_of(trace_tree(record([phase("Draft", [stage("inference", calls=[retried])])])))
    expected = "4 requests · 2 failed (HTTP 429, no answer) · 1 repair · 7 tokens (5 in, 2 out) · unpriced"
    assert f"writer — completed 1.50s · openai/m · {expected}" in lines


def test_a_phase_accepted_with_errors_says_so_with_what_it_still_fails() -> None:
    draft = call("a", attempts=1, round=None)
    critic = call("critic", attempts=1, round=1)
    reviser = call("reviser", attempts=1, round=1)
    loop = phase(
        "Loop",
        [stage("inference", calls=[draft]), stage("critique", calls=[critic]), stage("refine", calls=[reviser])],
        state="accepted_with_errors",
        failed_checks={"a": ["output.n > 100 is false"]},
    )
    lines = lines_of(trace_tree(record([loop], outcome="accepted_with_errors")))
    assert " — accepted with errors in 2.00s · 3 calls" in lines[0]
    assert lines[1].startswith("Loop — accepted with errors 1.70s · 3 calls")
    assert lines[2] == "a still fails: output.n > 100 is false"
    assert "reviser — completed 1.50s · round 1 · openai/m · 1 request · 0 tokens (0 in, 0 out) · unpriced" in lines
    assert [line for line in lines if line.startswith("skipped:")] == [
        "skipped: preProcessing, validateStructure, validateQuality, finalValidation"
    ]


def test_accepted_with_errors_has_a_colour_of_its_own() -> None:
    from taskmark.cli.trace import COLOURS

    assert list(COLOURS.values()).count(COLOURS["accepted_with_errors"]) == 1


def test_an_approval_shows_the_decision_and_note() -> None:
    gate = phase("Gate", [stage("approval")], approval={"decision": "approve", "note": "looks right"})
    assert "approval: approve — looks right" in lines_of(trace_tree(record([gate])))


def test_a_retried_run_shows_each_earlier_attempt_then_the_latest() -> None:
    failed = call("b", state="failed", attempts=1, error="HTTP 400: not yet")
    first = [
        phase("Draft", [stage("inference", calls=[call("a", attempts=1)])]),
        phase("Check", [stage("inference", "failed", calls=[failed])], state="failed", error="not yet"),
    ]
    second = [
        phase("Draft", [stage("inference", calls=[call("a", cached=True)])], run_attempt=2),
        phase("Check", [stage("inference", calls=[call("b", attempts=1)])], run_attempt=2),
    ]
    lines = lines_of(trace_tree(record(second, earlier=first, attempts=2)))
    assert lines[0].startswith("two-steps 1.2.0 (r1) — completed in 2.00s · 2 calls (1 failed) · 1 cached · 3 requests")
    assert lines[1] == "attempt 1 · 1 call (1 failed) · 2 requests · 0 tokens (0 in, 0 out) · unpriced"
    attempt_2 = "attempt 2 — completed · 1 call · 1 cached · 1 request · 0 tokens (0 in, 0 out) · unpriced"
    assert lines.index("HTTP 400: not yet") < lines.index(attempt_2)
    assert [line.split(" — ")[0] for line in lines if line.startswith(("Draft", "Check"))] == [
        "Draft",
        "Check",
        "Draft",
        "Check",
    ]


def test_context_shows_what_each_call_sent_and_its_bundle() -> None:
    with_context = call("b", attempts=1, temperature=0.2, messages_sha256="ab" * 32, context="c0ffee" * 10)
    plain = call("a", attempts=1, max_tokens=60, messages_sha256="cd" * 32)
    lost = call("c", attempts=1, context="dead" * 16)
    bundle = {
        "hash": "c0ffee" * 10,
        "used": 120,
        "budget": 400,
        "items": [
            {"id": "index", "kind": "index", "tokens": 20},
            {"id": "doc:docs/[tides].md", "kind": "document", "tokens": 100, "shortened": "extract"},
        ],
        "note": "pinned the tides",
    }
    run = record([phase("Answer", [stage("inference", calls=[with_context, plain, lost])])])
    lines = lines_of(trace_tree(run, {"c0ffee" * 10: bundle}))
    b = lines.index("b — completed 1.50s · openai/m · 1 request · 0 tokens (0 in, 0 out) · unpriced")
    assert lines[b + 1 : b + 6] == [
        "sent: temperature 0.2 · max_tokens default · messages sha256 abababababab",
        "context c0ffeec0ffee · 120 of 400 tokens",
        "index — index, 20 tokens",
        "doc:docs/[tides].md — document, 100 tokens, shortened (extract)",
        "note: pinned the tides",
    ]
    assert "sent: temperature default · max_tokens 60 · messages sha256 cdcdcdcdcdcd" in lines
    assert "context deaddeaddead · its snapshot was not found" in lines
    assert not any(line.startswith("sent:") for line in lines_of(trace_tree(run)))  # only with --context


def test_a_live_run_shows_its_running_and_pending_phases() -> None:
    running = PhaseRecord(name="Draft", state="running", started=at(0), stages=[stage("ingestion")])
    live = RunRecord(
        run_id="r1",
        definition=DefinitionRef(name="two-steps"),
        outcome="running",
        started=at(0),
        phases=[running, PhaseRecord(name="Polish", state="pending")],
    )
    lines = lines_of(trace_tree(live))
    assert lines[0].startswith("two-steps (r1) — running · 0 calls")
    assert lines[1].startswith("Draft — running - · ") and lines[2] == "ingestion — completed 0.00s"
    assert lines[3].startswith("Polish — pending - · ")


def test_runs_table_lists_id_definition_state_start_duration_calls_cost() -> None:
    runs = [
        RunSummary(
            id="r2",
            name="n2",
            definition="two-steps",
            state="FAILED",
            state_name="TimedOut",
            start=T0 + timedelta(minutes=1),
            duration_s=75.0,
            calls=3,
            failed_calls=1,
            cost_usd=0.5,
        ),
        RunSummary(
            id="r1", name="n1", definition="two-steps", state="CRASHED", state_name="Crashed", start=T0, duration_s=None
        ),
    ]
    lines = [line.split() for line in rendered(runs_table(runs)).splitlines()]
    assert lines[0] == ["run", "id", "definition", "state", "start", "duration", "calls", "cost", "$"]
    assert lines[1][:3] == ["r2", "two-steps", "TimedOut"] and lines[1][-5:] == [
        "1m15s",
        "3",
        "(1",
        "failed)",
        "0.5000",
    ]
    assert lines[2][:3] == ["r1", "two-steps", "crashed"] and lines[2][-3:] == ["-", "-", "-"]


def test_seconds_reads_well_at_every_scale() -> None:
    assert [seconds(v) for v in (None, 0.421, 12.34, 245.0)] == ["-", "0.42s", "12.3s", "4m05s"]
