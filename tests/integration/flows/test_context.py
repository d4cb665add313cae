"""Context on a real Prefect server, answered by the fake OpenAI server: documents, the index,
required outputs and referred runs fill each call's bundle; a reviewer pins and excludes; the
snapshot in the trace is what the LLM server received."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from taskmark.blocks import ProviderOverrides
from taskmark.context import Bundle, render, snapshot_key
from taskmark.definition import load_definition
from taskmark.flows._run import arun
from taskmark.history import CallTrace, read_trace, with_bundles
from taskmark.tasks._assembly import gather_sources

from .conftest import prompt_of
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


async def _calls(run_id: str) -> dict[str, CallTrace]:
    trace = await with_bundles(await read_trace(run_id))
    return {f"{p.name}/{c.agent}": c for p in trace.phases for s in p.stages for c in s.calls}


async def _bundles(run_id: str) -> dict[str, Bundle]:
    return {key: Bundle.from_json(c.bundle) for key, c in (await _calls(run_id)).items() if c.bundle is not None}


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

    calls = await _calls(str(result.flow_run_id))
    bundles = {key: Bundle.from_json(c.bundle) for key, c in calls.items() if c.bundle is not None}
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
    assert len(stored) == 1


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
    trace = await with_bundles(await read_trace(str(result.flow_run_id)))
    calls = {s.name: c for p in trace.phases for s in p.stages for c in s.calls}
    assert sorted(calls) == ["inference", "summarize"]  # the summary is a call of its own, with its cost
    assert calls["summarize"].context is None and 0 < (calls["summarize"].max_tokens or 0) <= 60  # asked for what fits
    (item,) = Bundle.from_json(calls["inference"].bundle).items
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
