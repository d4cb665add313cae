"""Context on a real Prefect server, answered by the fake OpenAI server: documents, the index,
required outputs and referred runs (read from their records) fill each call's bundle; a
reviewer pins and excludes; the snapshot in the trace is what the LLM server received."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    ArtifactFilter,
    ArtifactFilterKey,
)
from prefect.states import Completed, Pending, Running

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from taskmark import aread_run
from taskmark.blocks import ProviderOverrides
from taskmark.context import Bundle, render, snapshot_key
from taskmark.definition import load_definition
from taskmark.runs import read_bundles
from taskmark.runs._run import arun
from taskmark.runs.record import CallRecord
from taskmark.tasks._assembly import gather_sources

from .conftest import answer_by_prompt, prompt_of
from .test_control import start_paused, taskmark

DOCS = {
    "tides.md": "Tides rise twice a day. The moon pulls the sea; spring tides follow the full moon.",
    "bread.md": "Sourdough needs a starter, flour and patience. Bake it hot.",
    "chess.md": "The Sicilian defence answers e4 with c5. Knights before bishops.",
}

ANSWER = """# Tide answer

```yaml
name: {name}
index: conventions.md
```

## Phase: Gather

### Steps
- agent: a - list facts

## Phase: Answer
dependsOn: [Gather]
documents: docs/*.md
context: {{budgetTokens: 400, retrieval: {{k: 2}}}}
{review}

### Steps
- agent: b - explain tides and the moon
"""


def _write_docs(folder: Path) -> None:
    (folder / "docs").mkdir(exist_ok=True)
    for name, text in DOCS.items():
        (folder / "docs" / name).write_text(text)
    (folder / "conventions.md").write_text("House style: answer in plain words; cite the source of each fact.")


def _rule(request: RecordedRequest) -> Reply:
    return Reply(content="fact: the moon is large" if "list facts" in prompt_of(request) else "the moon pulls the sea")


async def _calls(run_id: str) -> dict[str, CallRecord]:
    """The calls of a run's record, by phase and agent."""
    return {f"{p.name}/{c.agent}": c for p in (await aread_run(run_id)).phases for c in p.calls()}


async def _bundles(run_id: str) -> dict[str, Bundle]:
    """The bundle each call of a run used, by phase and agent, read from its snapshot."""
    record = await aread_run(run_id)
    stored = await read_bundles(record)
    return {
        f"{p.name}/{c.agent}": Bundle.from_json(stored[c.context])
        for p in record.phases
        for c in p.calls()
        if c.context in stored
    }


async def test_a_call_gets_the_index_required_outputs_and_retrieved_documents_and_the_trace_shows_what_was_sent(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    llm.default = _rule
    path = write("tides", ANSWER.format(name="tide-answer", review=""))
    _write_docs(path.parent)
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED", result.message

    sent = prompt_of(llm.requests[-1])
    assert sent.endswith("explain tides and the moon")
    assert sent.index("House style") < sent.index("fact: the moon is large") < sent.index("Tides rise twice a day")
    assert "Sourdough" not in sent and "Sicilian" not in sent  # nothing of them matches the prompt

    calls, bundles = await _calls(str(result.flow_run_id)), await _bundles(str(result.flow_run_id))
    bundle = bundles["Answer/b"]
    received = json.dumps(llm.requests[-1].messages, sort_keys=True, ensure_ascii=False).encode()
    assert (
        calls["Answer/b"].messages_sha256 == hashlib.sha256(received).hexdigest()
    )  # the output traces to the exact request
    assert calls["Answer/b"].max_tokens is None and calls["Answer/b"].model == "openai/fake-model"
    assert [i.id for i in bundle.items] == ["index", "phase:Gather", "doc:docs/tides.md"]
    assert [i.kind for i in bundle.items] == ["index", "requires", "document"]
    assert bundle.used <= bundle.budget == 400
    assert render(bundle, "explain tides and the moon") == sent  # the snapshot is what the server received
    assert [i.id for i in bundles["Gather/a"].items] == ["index"]

    again = await arun(path, overrides=overrides)  # same inputs, same answers: the same bundle, stored once
    assert (await _bundles(str(again.flow_run_id)))["Answer/b"].hash == bundle.hash
    async with get_client() as client:
        stored = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[snapshot_key(bundle.hash)]))
        )
    assert len(stored) == 1 and stored[0].type == "taskmark-context"
    assert Bundle.from_json(stored[0].data).hash == bundle.hash  # stored as data, not text to parse


LEDGER = """# Ledger

```yaml
name: ledger
```

## Phase: Verdict

### Steps
- agent: a - give the verdict
"""

REVIEWER = """# Reviewer

```yaml
name: reviewer
requirements:
  focus: {type: string, default: rates}
```

## Phase: Check
refers: [ledger/Verdict]

### Steps
- agent: b - check the verdict on {{ focus }}
"""


@pytest.mark.slow
async def test_refers_uses_the_latest_completed_run_of_another_definition(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    ledger, reviewer = write("ledger", LEDGER), write("reviewer", REVIEWER)
    llm.default = lambda r: Reply(content="ok")
    first = await arun(reviewer, overrides=overrides)  # no ledger run yet: the item is absent
    assert first.state == "COMPLETED"
    assert "## Context" not in prompt_of(llm.requests[-1])
    preview = await asyncio.to_thread(
        taskmark,
        "context",
        str(reviewer),
        "--phase",
        "Check",
        "--api-base",
        llm.api_base,
        "--model",
        "openai/fake-model",
    )
    assert preview.returncode == 0, preview.stderr
    assert "refers:ledger/Verdict" in preview.stdout and "no completed run of ledger" in preview.stdout

    for verdict in ("verdict one: hold", "verdict two: buy"):
        llm.default = lambda r, v=verdict: Reply(content=v)
        assert (await arun(ledger, overrides=overrides)).state == "COMPLETED"
    llm.default = lambda r: Reply(content="checked")
    assert (await arun(reviewer, overrides=overrides)).state == "COMPLETED"
    sent = prompt_of(llm.requests[-1])
    assert "verdict two: buy" in sent and "verdict one" not in sent

    preview = await asyncio.to_thread(
        taskmark,
        "context",
        str(reviewer),
        "--phase",
        "Check",
        "--json",
        "--api-base",
        llm.api_base,
        "--model",
        "openai/fake-model",
    )
    assert preview.returncode == 0, preview.stderr
    (step,) = json.loads(preview.stdout)["steps"]
    assert step["problem"] is None and "check the verdict on rates" in step["prompt"]  # inputs' defaults apply
    assert [(i["id"], i["kind"]) for i in step["bundle"]["items"]] == [("refers:ledger/Verdict", "refers")]
    assert step["bundle"]["items"][0]["text"] == "verdict two: buy"

    async with get_client() as client:  # the outputs artifact is for people: readable, no JSON to parse
        (shown,) = await client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=["outputs-ledger"]))
        )
    assert shown.data == "# Outputs of Ledger\n\n## Verdict\n\nverdict two: buy\n"


BOOK = """# Book

```yaml
name: {name}
```

## Phase: Verdict

### Steps
- agent: a - give the verdict

## Phase: Publish
dependsOn: [Verdict]

### Steps
- agent: b - publish {{{{ phases['Verdict'] }}}}
"""

READER = """# Reader

```yaml
name: {name}
```

## Phase: Read
refers: [{target}]

### Steps
- agent: b - read what was decided
"""


async def _record_less_completed_run(flow_name: str) -> None:
    """A completed taskmark run with no record, as a taskmark older than the record left it."""
    from prefect import flow

    def older() -> None:
        """Never runs: only its flow run is made."""

    async with get_client() as client:
        run = await client.create_flow_run(flow(name=flow_name)(older), tags=["taskmark"])
        for state in (Pending(), Running(), Completed()):
            await client.set_flow_run_state(run.id, state)


@pytest.mark.slow
async def test_refers_passes_over_a_newer_failed_run_and_a_run_without_a_record(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    book = write("refers-book", BOOK.format(name="refers-book"))
    llm.default = lambda r: Reply(content="verdict one: hold")
    first = await arun(book, overrides=overrides)
    assert first.state == "COMPLETED" and first.flow_run_id is not None
    await _record_less_completed_run("refers-book")
    llm.default = answer_by_prompt({"publish": Reply(status=400, error_message="no")}, Reply(content="verdict two"))
    failed = await arun(book, overrides=overrides)  # its Verdict completed, with outputs in its record
    assert failed.state == "FAILED" and failed.phases["Verdict"].outputs == "verdict two"

    llm.default = lambda r: Reply(content="read")
    reader = await arun(
        write("reader", READER.format(name="book-reader", target="refers-book/Verdict")), overrides=overrides
    )
    assert reader.state == "COMPLETED"
    sent = prompt_of(llm.requests[-1])
    assert "verdict one: hold" in sent and "verdict two" not in sent
    assert f"refers-book/Verdict (run {first.flow_run_id[:8]})" in sent


@pytest.mark.slow
async def test_refers_uses_the_outputs_of_a_run_accepted_with_errors(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    llm.default = answer_by_prompt(
        {"Critique": Reply(content="too small"), "Revise": Reply(content=json.dumps({"n": 3}))},
        default=Reply(content=json.dumps({"n": 1})),
    )
    loop = write(
        "refers-sized",
        "# Sized\n\n```yaml\nname: refers-sized\n```\n\n"
        "## Phase: Loop\n\n### Steps\n- agent: a - Draft\n- validation: output.n > 100\n\n### Outputs\n- n: integer\n\n"
        "### Critique\n- agent: critic - Critique {{ output.n }}: {{ errors }}\n\n"
        "### Refine\nmaxRefinements: 1\n\n- agent: reviser - Revise {{ output.n }} per {{ critique }}\n",
    )
    accepted = await arun(loop, overrides=overrides)
    assert accepted.flow_run_id is not None
    assert (await aread_run(accepted.flow_run_id)).outcome == "accepted_with_errors"

    reader = await arun(
        write("reader", READER.format(name="sized-reader", target="refers-sized/Loop")), overrides=overrides
    )
    assert reader.state == "COMPLETED"
    sent = prompt_of(llm.requests[-1])
    assert f"refers-sized/Loop (run {accepted.flow_run_id[:8]})" in sent and '"n": 3' in sent


async def _review_then(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, path: Path, name: str, answer: Callable[[str, str], object]
) -> tuple[str, str]:
    """Run a definition with `review: context`, answer its review with ``answer(run_id, phase_run_id)``;
    the prompt the reviewed call sent and the run's id."""
    llm.default = _rule
    running, run, paused = await start_paused(path, name, overrides)
    async with get_client() as client:
        keyset = paused.state.state_details.run_input_keyset  # type: ignore[union-attr]
        schema = json.loads(await client.read_flow_run_input(paused.id, keyset["schema"]))
    ids = schema["properties"]["pin"]["items"]["enum"]
    assert {"doc:docs/tides.md", "doc:docs/bread.md", "doc:docs/chess.md", "phase:Gather", "index"} <= set(ids)
    answered = answer(str(run.id), str(paused.id))
    if asyncio.iscoroutine(answered):
        await answered
    result = await asyncio.wait_for(running, 60)
    assert result.state == "COMPLETED", result.message
    return prompt_of(llm.requests[-1]), str(run.id)


@pytest.mark.slow
async def test_a_review_pins_and_excludes_from_the_cli_and_the_api_and_the_same_choice_gives_the_same_bundle(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    path = write("reviewed", ANSWER.format(name="reviewed-answer", review="review: context"))
    _write_docs(path.parent)

    def by_cli(run_id: str, _: str) -> object:
        bad = taskmark("resume", run_id, "--pin", "doc:nope.md")
        assert (
            bad.returncode == 2
            and "doc:nope.md: not an item of this review" in bad.stderr
            and "Traceback" not in bad.stderr
        )
        done = taskmark(
            "resume", run_id, "--pin", "doc:docs/bread.md", "--exclude", "phase:Gather", "--note", "bread matters"
        )
        assert done.returncode == 0, done.stderr
        assert "reviewed: phase 'Answer'" in done.stdout
        return None

    sent, first = await _review_then(
        llm, overrides, path, "reviewed-answer", lambda r, p: asyncio.to_thread(by_cli, r, p)
    )
    assert "Sourdough" in sent and "fact: the moon is large" not in sent and "Tides rise" in sent

    async def by_api(_: str, phase_run_id: str) -> None:
        async with get_client() as client:
            await client.resume_flow_run(
                phase_run_id,
                run_input={"pin": ["doc:docs/bread.md"], "exclude": ["phase:Gather"], "note": "bread matters"},
            )

    path = write("reviewed-again", ANSWER.format(name="reviewed-again", review="review: context"))
    again, second = await _review_then(llm, overrides, path, "reviewed-again", by_api)
    assert again == sent
    one, two = (await _bundles(first))["Answer/b"], (await _bundles(second))["Answer/b"]
    assert one.hash == two.hash and one.note == "bread matters"
    assert [i.id for i in one.items if i.pinned] == ["doc:docs/bread.md"]


async def test_the_index_is_not_repeated_when_a_documents_glob_matches_it(write: Callable[[str, str], Path]) -> None:
    text = ANSWER.format(name="globbed", review="").replace("index: conventions.md", "index: docs/tides.md")
    path = write("globbed", text)
    _write_docs(path.parent)
    definition = load_definition(path)
    sources = await gather_sources(definition, definition.phase("Answer"), {"Gather": "facts"}, {})
    assert [c.id for c in sources.fixed] == ["index", "phase:Gather"]
    assert [c.id for c in sources.pool] == ["doc:docs/bread.md", "doc:docs/chess.md"]


SUMMARISED = """# Summarised

```yaml
name: summarised
```

## Phase: Answer
documents: docs/long.md
context: {budgetTokens: 60, summarize: llm}

### Steps
- agent: b - explain the tides
"""


async def test_summarize_llm_replaces_a_shortened_item_with_the_models_summary(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    path = write("summarised", SUMMARISED)
    (path.parent / "docs").mkdir(exist_ok=True)
    long = " ".join(
        f"Tide table {n}: high water at {n} o'clock, low water six hours later, the moon at {n * 12} degrees."
        for n in range(12)
    )
    (path.parent / "docs" / "long.md").write_text(long)
    llm.default = lambda r: Reply(
        content="Tides follow the moon." if prompt_of(r).startswith("Summarise") else "answered"
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED", result.message

    asked, answered = (prompt_of(r) for r in llm.requests)
    assert asked.startswith("Summarise the text below in at most") and long in asked  # the whole item, not its extract
    assert "Tides follow the moon." in answered and "Tide table 11" not in answered
    summary, answer = (await aread_run(str(result.flow_run_id))).phases[0].calls()
    assert summary.context is None and 0 < (summary.max_tokens or 0) <= 60  # a call of its own, asked for what fits
    assert answer.context is not None
    (item,) = (await _bundles(str(result.flow_run_id)))["Answer/b"].items
    assert (item.id, item.shortened, item.text) == ("doc:docs/long.md", "llm", "Tides follow the moon.")


BY_MEANING = """# By meaning

```yaml
name: by-meaning
```

## Phase: Answer
documents: docs/*.md
context: {retrieval: {k: 1, method: embeddings}}

### Steps
- agent: b - explain why the ocean climbs up the beach each night
"""


async def test_retrieval_by_embeddings_draws_on_the_document_that_means_what_the_prompt_asks(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    path = write("by-meaning", BY_MEANING)
    _write_docs(path.parent)  # the prompt shares no word with the tides note: TF-IDF would find nothing
    llm.default = lambda r: Reply(content="answered")
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED", result.message
    sent = prompt_of(llm.requests[-1])
    assert "Tides rise twice a day" in sent and "Sourdough" not in sent and "Sicilian" not in sent

    preview = await asyncio.to_thread(
        taskmark,
        "context",
        str(path),
        "--phase",
        "Answer",
        "--json",
        "--api-base",
        llm.api_base,
        "--model",
        "openai/fake-model",
    )
    assert preview.returncode == 0, preview.stderr
    (step,) = json.loads(preview.stdout)["steps"]
    (item,) = step["bundle"]["items"]
    assert item["id"] == "doc:docs/tides.md" and "rank 1 of 1 (score 0." in item["reason"]
    assert (await _bundles(str(result.flow_run_id)))["Answer/b"].items[0].id == item["id"]
