"""The watch folder, end to end: a real watcher (watchfiles on the real file system), Prefect's
real server, and the fake OpenAI-compatible server counting every LLM request.

Each test drops seed files as a user would (written elsewhere, renamed into ``pending/``)
and waits, with a deadline, for the folders and ``runs.jsonl`` to show the outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from support.waiting import DEFAULT_TIMEOUT_S, eventually, eventually_sync
from taskmark import aread_run
from taskmark.blocks import LLMProvider
from taskmark.runs import _run as run_module
from taskmark.watch import Claim, FolderBusyError, Watcher, WatchEvent, WatchFolder

pytestmark = pytest.mark.slow  # ~75 s: a real watcher and many runs

DEADLINE_S = DEFAULT_TIMEOUT_S
"""How long a condition may take to come true before the test fails (the machine is shared)."""

DEFINITION = """# Two Steps

```yaml
name: two-steps
requirements:
  topic: string
  rounds: {type: integer, default: 1}
```

## Phase: Draft

### Steps
- agent: writer - Draft on {{ topic }}

## Phase: Polish
dependsOn: Draft

### Steps
- agent: writer - Polish {{ phases["Draft"] }}
"""


def _reply(request: RecordedRequest) -> Reply:
    return Reply(content="polished" if "Polish" in request.messages[-1]["content"] else "drafted")


@pytest.fixture
def inbox(
    tmp_path: Path, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A watch folder whose seeds name ``../defs/two.md``; LLM calls go to the fake server."""
    from prefect.settings import PREFECT_API_URL

    defs = tmp_path / "defs"
    (defs / "agents").mkdir(parents=True)
    (defs / "agents" / "writer.md").write_text("You write.\n")
    (defs / "two.md").write_text(DEFINITION)
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "openai/fake-model")
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", "sk-test-not-real")
    fake_llm.default = _reply
    yield tmp_path / "inbox"


def drop(inbox: Path, name: str, seed: Any) -> Path:
    """Drop a seed the safe way: write it beside, then rename it into pending/."""
    pending = inbox / "pending"
    pending.mkdir(parents=True, exist_ok=True)
    text = seed if isinstance(seed, str) else json.dumps(seed, indent=2)
    temporary = pending / f".{name}.tmp"
    temporary.write_text(text)
    os.replace(temporary, pending / name)
    return pending / name


def seed(topic: str = "tides", **extra: Any) -> dict[str, Any]:
    return {"definition": "../defs/two.md", "params": {"topic": topic}, **extra}


@asynccontextmanager
async def watching(inbox: Path, **options: Any) -> AsyncIterator[tuple[Watcher, list[WatchEvent]]]:
    """A watcher running in this event loop; stopped (as Ctrl-C stops it) on exit."""
    events: list[WatchEvent] = []
    watcher = Watcher(inbox, report=events.append, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    ready = asyncio.create_task(watcher.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raise what stopped it
    try:
        yield watcher, events
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_S)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def runs_log(inbox: Path) -> list[dict[str, Any]]:
    path = inbox / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finished(inbox: Path, count: int) -> Callable[[], bool]:
    return lambda: len(runs_log(inbox)) >= count


# -- a good seed ---------------------------------------------------------------------------


async def test_good_seed_runs_once_and_is_filed_with_outputs(inbox: Path, fake_llm: FakeOpenAIServer) -> None:
    async with watching(inbox):
        drop(inbox, "tides-seed.json", seed())
        await eventually(finished(inbox, 1), interval=0.05, message="the run to finish")
    [line] = runs_log(inbox)
    run_dir = inbox / "complete" / line["id"]
    assert (
        line["id"].startswith("tides-") and line["state"] == "COMPLETED" and line["folder"] == f"complete/{line['id']}"
    )
    assert line["params"] == {"topic": "tides", "rounds": 1} and line["flow_run_id"]
    record = await aread_run(line["flow_run_id"])
    assert line["outcome"] == record.outcome == "completed"
    assert line["usage"] == record.totals.model_dump(mode="json") and line["usage"]["calls"] == 2
    assert names(run_dir) == ["outputs.json", "run.json", "seed.json", "summary.json"]
    assert json.loads((run_dir / "outputs.json").read_text()) == {"Draft": "drafted", "Polish": "polished"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["state"] == "COMPLETED" and summary["phases"]["Polish"]["state"] == "COMPLETED"
    assert json.loads((run_dir / "seed.json").read_text()) == seed()
    assert names(inbox / "pending") == names(inbox / "current") == names(inbox / "rejected") == []
    assert fake_llm.count == 2


async def test_failed_run_is_filed_in_complete_with_its_state(inbox: Path, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda _r: Reply(status=401, error_message="invalid key")
    async with watching(inbox):
        drop(inbox, "bad-key-seed.json", seed())
        await eventually(finished(inbox, 1), interval=0.05, message="the run to finish")
    [line] = runs_log(inbox)
    assert line["state"] == "FAILED" and "phase 'Draft' failed in inference" in line["message"]
    record = await aread_run(line["flow_run_id"])
    assert (line["outcome"], line["usage"]) == ("failed", record.totals.model_dump(mode="json"))
    assert (line["usage"]["calls"], line["usage"]["failed_calls"], line["usage"]["requests"]) == (0, 1, 1)
    summary = json.loads((inbox / "complete" / line["id"] / "summary.json").read_text())
    assert summary["state"] == "FAILED" and summary["phases"]["Draft"]["state"] == "FAILED"
    assert names(inbox / "current") == names(inbox / "pending") == []
    assert fake_llm.count == 1


# -- bad seeds -----------------------------------------------------------------------------

BAD_SEEDS = {
    "json-syntax": (
        '{"definition": "../defs/two.md",\n "params": {"topic": "x",}}',
        "2:26: error: invalid JSON: Expecting property name enclosed in double quotes",
    ),
    "unknown-key": (
        '{"definition": "../defs/two.md",\n "parms": {"topic": "x"}}',
        "2:2: error: unknown key 'parms'; expected one of definition, params, id, rerun; did you mean 'params'?",
    ),
    "no-definition-key": (
        '{"params": {"topic": "x"}}',
        "1:1: error: missing key 'definition': the definition file to run",
    ),
    "missing-definition": (
        '{"definition": "../defs/three.md",\n "params": {"topic": "x"}}',
        "1:16: error: definition '../defs/three.md' not found: no file ",
    ),
    "invalid-definition": (
        '{"definition": "../defs/broken.md",\n "params": {"topic": "x"}}',
        "1:16: error: definition '../defs/broken.md' is not valid (1 error, listed below)",
    ),
    "unknown-param": (
        '{"definition": "../defs/two.md",\n "params": {"topic": "x", "topics": "y"}}',
        "2:27: error: params: unknown input 'topics'; the definition's inputs are: topic, rounds; did you mean 'topic'?",
    ),
    "wrong-type": (
        '{"definition": "../defs/two.md",\n "params": {"topic": "x", "rounds": "many"}}',
        '2:37: error: params.rounds: expected integer; found "many"',
    ),
    "missing-param": (
        '{"definition": "../defs/two.md",\n "params": {"rounds": 2}}',
        "2:2: error: params: missing required input 'topic' (string)",
    ),
    "not-an-object": (
        '["../defs/two.md"]',
        '1:1: error: expected a JSON object such as {"definition": "flow.md", "params": {}}; found an array',
    ),
}


@pytest.mark.parametrize("kind", list(BAD_SEEDS))
async def test_bad_seed_is_rejected_with_a_located_error(inbox: Path, fake_llm: FakeOpenAIServer, kind: str) -> None:
    (inbox.parent / "defs" / "broken.md").write_text(DEFINITION.replace("dependsOn: Draft", "dependsOn: Drafts"))
    text, expected = BAD_SEEDS[kind]
    async with watching(inbox) as (_, events):
        drop(inbox, f"{kind}-seed.json", text)
        error = inbox / "rejected" / f"{kind}-seed.json.error"
        await eventually(
            lambda: (inbox / "rejected" / f"{kind}-seed.json").exists(),
            interval=0.05,
            message="the seed to be rejected",
        )
    lines = error.read_text().splitlines()
    assert any(line.startswith(f"{inbox / 'rejected' / kind}-seed.json:{expected}") for line in lines), lines
    assert (inbox / "rejected" / f"{kind}-seed.json").read_text() == text  # kept as dropped
    if kind == "invalid-definition":
        assert (
            lines[1]
            == f"{inbox.parent}/defs/broken.md:16:12: error: phase 'Polish' depends on unknown phase 'Drafts'; did you mean 'Draft'?"
        )
    assert [e.kind for e in events] == ["rejected"]
    assert names(inbox / "pending") == names(inbox / "current") == names(inbox / "complete") == []
    assert runs_log(inbox) == [] and fake_llm.count == 0


async def test_a_seed_written_in_place_is_read_whole(inbox: Path, fake_llm: FakeOpenAIServer) -> None:
    async with watching(inbox):
        (inbox / "pending" / "direct-seed.json").write_text(json.dumps(seed()))
        await eventually(finished(inbox, 1), interval=0.05, message="the run to finish")
    assert [line["state"] for line in runs_log(inbox)] == ["COMPLETED"] and fake_llm.count == 2


# -- duplicates ----------------------------------------------------------------------------


async def test_the_same_seed_dropped_twice_runs_once_unless_it_says_rerun(
    inbox: Path, fake_llm: FakeOpenAIServer
) -> None:
    async with watching(inbox):
        drop(inbox, "a-seed.json", seed())
        await eventually(finished(inbox, 1), interval=0.05, message="the first run")
        first = runs_log(inbox)[0]["id"]
        # The same work under another name, with a default spelled out: the same run.
        drop(inbox, "b-seed.json", {"params": {"rounds": 1, "topic": "tides"}, "definition": "../defs/two.md"})
        await eventually(
            lambda: (inbox / "rejected" / "b-seed.json.error").exists(),
            interval=0.05,
            message="the duplicate to be rejected",
        )
        assert (inbox / "rejected" / "b-seed.json.error").read_text() == (
            f"{inbox}/rejected/b-seed.json:1:1: error: this seed has run already as '{first}' (complete/{first}, completed); "
            'add "rerun": true to run it again\n'
        )
        drop(inbox, "b-seed.json", seed())  # the same name again: rejected under a free name
        await eventually(
            lambda: (inbox / "rejected" / "b.2-seed.json.error").exists(),
            interval=0.05,
            message="the second duplicate to be rejected",
        )
        drop(inbox, "c-seed.json", seed(rerun=True))
        await eventually(finished(inbox, 2), interval=0.05, message="the rerun")
        drop(inbox, "d-seed.json", seed(topic="waves"))
        await eventually(finished(inbox, 3), interval=0.05, message="a different seed")
    ids = [line["id"] for line in runs_log(inbox)]
    assert ids[:2] == [first, "c-" + first.removeprefix("a-")] and len(set(ids)) == 3  # NAME-HASH: the same hash
    assert names(inbox / "complete") == sorted(ids)
    assert names(inbox / "rejected") == ["b-seed.json", "b-seed.json.error", "b.2-seed.json", "b.2-seed.json.error"]
    assert fake_llm.count == 6


async def test_a_seed_with_an_id_runs_once_per_id(inbox: Path, fake_llm: FakeOpenAIServer) -> None:
    async with watching(inbox):
        drop(inbox, "x-seed.json", seed(id="daily-2026-11-22"))
        await eventually(finished(inbox, 1), interval=0.05, message="the first run")
        drop(inbox, "y-seed.json", seed(topic="other", id="daily-2026-11-22"))
        await eventually(
            lambda: (inbox / "rejected" / "y-seed.json.error").exists(),
            interval=0.05,
            message="the duplicate id to be rejected",
        )
        drop(inbox, "z-seed.json", seed(id="daily-2026-11-22", rerun=True))
        await eventually(finished(inbox, 2), interval=0.05, message="the rerun")
    assert (
        "a run with id 'daily-2026-11-22' has run already as 'daily-2026-11-22'"
        in (inbox / "rejected" / "y-seed.json.error").read_text()
    )
    assert names(inbox / "complete") == ["daily-2026-11-22", "daily-2026-11-22-2"] and fake_llm.count == 4


async def test_identical_seeds_waiting_at_start_run_once(inbox: Path, fake_llm: FakeOpenAIServer) -> None:
    for name in ("one-seed.json", "two-seed.json", "three-seed.json"):
        drop(inbox, name, seed())
    async with watching(inbox, max_concurrent=3):
        await eventually(
            lambda: len(names(inbox / "rejected")) == 4 and len(runs_log(inbox)) == 1,
            interval=0.05,
            message="one run and two rejections",
        )
    assert len(names(inbox / "complete")) == 1 and names(inbox / "pending") == []
    assert fake_llm.count == 2


# -- concurrency, stopping and restarting -------------------------------------------------


class Gate:
    """Holds every LLM request at the fake server until opened; counts the ones waiting."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.waiting += 1
        self.open.wait(DEADLINE_S)
        return _reply(request)


async def test_runs_go_at_most_max_concurrent_at_once(inbox: Path, fake_llm: FakeOpenAIServer) -> None:
    # A request held at the gate must not time out and come again (CI saw a seventh request when
    # the second run took over a minute to start): these runs' provider outlasts the gate.
    provider = LLMProvider(
        model="openai/fake-model", api_base=fake_llm.api_base, api_key="sk-test-not-real", timeout_s=2 * DEADLINE_S
    )
    await provider.save("gated", overwrite=True)
    (inbox.parent / "defs" / "gated.md").write_text(
        DEFINITION.replace("name: two-steps\n", "name: two-steps\nllm: {provider: gated}\n")
    )
    gate = Gate()
    fake_llm.default = gate
    async with watching(inbox, max_concurrent=2):
        for topic in ("a", "b", "c"):
            drop(inbox, f"{topic}-seed.json", seed(topic, definition="../defs/gated.md"))
        await eventually(lambda: gate.waiting == 2, interval=0.05, message="two runs to call the LLM")
        assert len(names(inbox / "current")) == 2 and len(names(inbox / "pending")) == 1
        gate.open.set()
        await eventually(finished(inbox, 3), interval=0.05, message="all three runs")
    assert sorted(line["state"] for line in runs_log(inbox)) == ["COMPLETED"] * 3
    assert fake_llm.count == 6


@pytest.mark.parametrize("grace_s", [None, 0.0], ids=["end-recorded", "end-not-recorded-in-time"])
async def test_stopping_leaves_the_run_in_current_and_a_restart_finishes_it_once(
    inbox: Path, fake_llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, grace_s: float | None
) -> None:
    normal_grace_s = run_module.STOP_GRACE_S
    if grace_s is not None:  # as on a loaded machine: the stopped run cannot record its end in time
        monkeypatch.setattr(run_module, "STOP_GRACE_S", grace_s)
    gate = Gate()
    fake_llm.default = gate
    async with watching(inbox) as (_, events):
        drop(inbox, "slow-seed.json", seed())
        await eventually(lambda: gate.waiting == 1, interval=0.05, message="the run to call the LLM")
    monkeypatch.setattr(run_module, "STOP_GRACE_S", normal_grace_s)
    # Stopped mid-call (as Ctrl-C stops it): nothing filed, nothing logged, nothing lost.
    [run_id] = names(inbox / "current")
    assert names(inbox / "current" / run_id) == ["run.json", "seed.json"]
    assert names(inbox / "complete") == [] and runs_log(inbox) == [] and [e.kind for e in events] == ["claimed"]
    gate.open.set()
    drop(inbox, "later-seed.json", seed("later"))  # waiting in pending/ at the restart
    async with watching(inbox) as (_, events):
        await eventually(finished(inbox, 2), interval=0.05, message="the resumed and the new run")
    assert {line["id"] for line in runs_log(inbox)} == {run_id, *names(inbox / "complete")} and len(
        runs_log(inbox)
    ) == 2
    assert sorted(e.kind for e in events) == ["claimed", "finished", "finished", "resumed"]
    assert names(inbox / "current") == names(inbox / "pending") == []
    # The interrupted Draft call was made again; nothing else ran twice.
    assert fake_llm.count == 1 + 2 + 2


async def test_a_restart_reuses_the_phases_the_stopped_run_had_finished(
    inbox: Path, fake_llm: FakeOpenAIServer
) -> None:
    gate = Gate()
    fake_llm.default = lambda r: gate(r) if "Polish" in r.messages[-1]["content"] else _reply(r)
    async with watching(inbox):
        drop(inbox, "half-seed.json", seed())
        await eventually(lambda: gate.waiting == 1, interval=0.05, message="the second phase to call the LLM")
        [run_id] = names(inbox / "current")
        recorded = json.loads((inbox / "current" / run_id / "run.json").read_text())["flow_run_id"]
        assert recorded  # known from the moment the flow run existed

        async def draft_recorded() -> bool:  # the record is written within a second of each end
            return (await aread_run(recorded)).totals.calls == 1

        await eventually(draft_recorded, message="Draft's call in the run's record")
    gate.open.set()
    async with watching(inbox):
        await eventually(finished(inbox, 1), interval=0.05, message="the resumed run")
    [line] = runs_log(inbox)
    assert line["state"] == "COMPLETED" and line["flow_run_id"] == recorded  # the same flow run, retried
    prompts = [r.messages[-1]["content"].split()[0] for r in fake_llm.requests]
    assert prompts == ["Draft", "Polish", "Polish"]  # Draft's answer was reused, not bought again
    # The line counts both attempts, as the run's record does: Draft's paid call once (reused from
    # the cache by the retry), and Polish's answered call.
    record = await aread_run(recorded)
    assert line["usage"] == record.totals.model_dump(mode="json")
    assert (line["usage"]["calls"], line["usage"]["cached_calls"], line["outcome"]) == (2, 1, "completed")


async def test_a_restart_finishes_what_a_crash_left_half_done(inbox: Path, fake_llm: FakeOpenAIServer) -> None:
    folder = WatchFolder(inbox)
    folder.ensure()

    def claim(run_id: str, topic: str) -> Claim:
        return Claim(
            run_id,
            f"id:{run_id}",
            f"{run_id}-seed.json",
            str(inbox.parent / "defs" / "two.md"),
            {"topic": topic, "rounds": 1},
            "2026-11-22T08:00:00+00:00",
        )

    # 1. Claimed, then killed before the run ended: run again.
    crashed = folder.claim(drop(inbox, "crashed-seed.json", seed("crashed", id="crashed")), claim("crashed", "crashed"))
    # 2. Killed after writing run.json, before moving the seed: the seed is still pending.
    (inbox / "current" / "half").mkdir()
    folder.record(inbox / "current" / "half", claim("half", "half"))
    drop(inbox, "half-seed.json", seed("half", id="half"))
    # 3. Killed after the run's summary was written, before the move: file it, do not run it.
    done = folder.claim(drop(inbox, "done-seed.json", seed("done", id="done")), claim("done", "done"))
    (done / "summary.json").write_text(
        json.dumps({"state": "COMPLETED", "message": None, "usage": None, "finished_at": "t"})
    )
    # 4. Killed after the move to complete/, before the line in runs.jsonl: log it.
    logged = folder.claim(drop(inbox, "moved-seed.json", seed("moved", id="moved")), claim("moved", "moved"))
    folder.finish(logged, {"summary.json": json.dumps({"state": "COMPLETED", "message": None, "finished_at": "t"})})
    assert crashed.exists()
    async with watching(inbox):
        await eventually(finished(inbox, 4), interval=0.05, message="four lines in runs.jsonl")
    assert sorted(line["id"] for line in runs_log(inbox)) == ["crashed", "done", "half", "moved"]
    assert names(inbox / "complete") == ["crashed", "done", "half", "moved"]
    assert names(inbox / "current") == names(inbox / "pending") == names(inbox / "rejected") == []
    assert fake_llm.count == 4  # only "crashed" and "half" ran, two calls each


async def test_one_watcher_per_folder(inbox: Path) -> None:
    async with watching(inbox):
        with pytest.raises(FolderBusyError, match="already watched by pid"):
            await Watcher(inbox).run()


# -- the command ---------------------------------------------------------------------------


def test_watch_command_runs_a_seed_and_stops_cleanly_on_ctrl_c(inbox: Path, fake_llm: FakeOpenAIServer) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "taskmark"), "watch", str(inbox), "--max-concurrent", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        drop(inbox, "cli-seed.json", seed())
        eventually_sync(finished(inbox, 1), interval=0.05, message="the run to finish")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    [line] = runs_log(inbox)
    assert f"claimed {line['id']}  cli-seed.json" in stdout and f"completed {line['id']}  cli-seed.json" in stdout
    assert "stopping" in stderr and "Traceback" not in stderr
    assert fake_llm.count == 2
