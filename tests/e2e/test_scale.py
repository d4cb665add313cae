"""Scaling out, end to end: a Prefect server on a fresh PostgreSQL database, one process pool,
two process workers, 40 runs submitted at once, and an LLMProvider block whose `rate_limit` is
a Prefect global concurrency limit shared by every run on both workers. Every command and
snippet of docs/scaling.md runs here, as written (see support/scale_docs.py for the host and
database names it substitutes).

What is checked: all 40 runs complete, none is lost, none runs twice (one flow run per
submission, each run once, each of its prompts reaching the LLM server exactly once), both
workers run some, and the LLM server, which records when each request arrives, never sees
more requests in any 60-second window than the limit lets through. The limit is low enough
that it binds: the runs ask faster than it allows (the test checks that all its slots were
taken, so that later calls waited). About 7 minutes on 2 cores, most of it the limit's doing.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.fake_openai import FakeOpenAIServer, RecordedRequest
from support.prefect_stack import BIN, PrefectStack, wait_for
from support.scale_docs import COMMANDS, doc_commands, doc_definition, doc_python, on_this_machine

RUNS = 40
"""Runs submitted at once."""
CALLS_PER_RUN = 4
"""ticker-brief: two parallel calls, then two in sequence."""
RATE_LIMIT = 24
"""Requests per minute for the block. On 2 cores the runs ask for ~35 a minute once started,
so after the first full bucket the limit binds (the test checks that calls were held back)."""
WINDOW_S = 60.0
LAG_S = 5.0
"""Most time between a call taking its slot (on the Prefect server) and its request reaching the
LLM server, on a loaded 2-core machine: a window of requests at the LLM server may hold calls
whose slots were taken up to this much earlier."""
BLOCK = "shared-openai"
GCL = f"taskmark-llm-{BLOCK}"
WORKERS = ("worker-1", "worker-2")


def allowed(window_s: float) -> int:
    """Most requests a rate limit of RATE_LIMIT a minute lets reach the server in ``window_s``.

    Prefect's rate limit is a bucket of RATE_LIMIT slots refilled at RATE_LIMIT/60 per second
    (whole slots): a full bucket, plus the refills during the window and during the lag.
    """
    return RATE_LIMIT + int(RATE_LIMIT * (window_s + LAG_S) / 60.0)


def busiest(arrivals: list[float], window_s: float) -> int:
    """The most arrivals in any window of ``window_s`` seconds."""
    times = sorted(arrivals)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


@dataclass
class Load:
    """What the load run left behind, for the tests to check."""

    submitted: dict[str, str]
    """Flow run id -> ticker, as the docs' snippet printed them."""
    runs: list[Any]
    """The deployment's flow runs, read back at the end."""
    requests: list[RecordedRequest]
    arrivals: list[float]
    executed: Counter[str]
    """Flow run id -> how many `prefect.worker.executed-flow-run` events name it."""
    executed_by: dict[str, str]
    """Flow run id -> the worker that ran it (from the worker's `executed-flow-run` event)."""
    gcl: Any
    """The global concurrency limit, read back at the end."""
    fullest: int
    """The most `active_slots` seen on the limit while the runs went on (read every 2 s)."""
    duration_s: float
    outputs: dict[str, str] = field(default_factory=dict)
    """Output of the docs' commands run after the load, by name."""


def _final(run: Any) -> bool:
    return run.state is not None and run.state.is_final()


def _executed_events(stack: PrefectStack, expected: int) -> list[tuple[str, str]] | None:
    """(flow run id, worker name) of each `prefect.worker.executed-flow-run` event, once there are
    ``expected`` of them: a worker emits one when a run's process has ended."""
    import httpx

    found: list[tuple[str, str]] = []
    with stack.client() as client:
        body = {"filter": {"event": {"name": ["prefect.worker.executed-flow-run"]}}, "limit": 50}
        page = client.request("POST", "/events/filter", json=body).json()
    while True:
        for event in page["events"]:
            run_id = next(
                r["prefect.resource.id"] for r in event["related"] if r["prefect.resource.role"] == "flow-run"
            )
            found.append((run_id.removeprefix("prefect.flow-run."), event["resource"]["prefect.resource.name"]))
        if not page.get("next_page"):
            break
        page = httpx.get(page["next_page"], timeout=30).json()
    return found if len(found) >= expected else None


def _start_server(stack: PrefectStack) -> subprocess.Popen[bytes]:
    """The docs' `prefect server start`; waits for /api/health."""
    import urllib.request

    server = stack.start(COMMANDS["server"], log_name="server")

    def healthy() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"prefect server exited {server.returncode}:\n{stack.log('server')}")
        try:
            with urllib.request.urlopen(f"{stack.api_url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for(healthy, "the Prefect server's /api/health", timeout=180)
    return server


def _python(stack: PrefectStack, code: str, cwd: Path) -> str:
    result = subprocess.run(
        [str(BIN / "python"), "-c", code], cwd=cwd, env=stack.env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"snippet failed:\n{code}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def load(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Load]:
    """The whole of docs/scaling.md on this machine, then 40 runs at once; what they left."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    database = f"taskmark_scale_{uuid.uuid4().hex[:10]}"
    llm = FakeOpenAIServer().start()  # it records when each request arrived
    home = tmp_path_factory.mktemp("scale-home")
    workspace = tmp_path_factory.mktemp("scale-workspace")
    (workspace / "workflows").mkdir()
    (workspace / "workflows" / "ticker-brief.md").write_text(doc_definition())
    stack = PrefectStack(home, workspace, {})
    for name in list(stack.env):
        # The block, nothing else, says where calls go; the docs' profile, where the data goes.
        if name.startswith(("TASKMARK_LLM_", "PREFECT_SERVER_DATABASE_", "PREFECT_API_DATABASE_")) or name.endswith(
            "_API_KEY"
        ):
            del stack.env[name]
    print(f"\nPrefect stack on PostgreSQL database {database}: {stack.ui_url} (logs in {stack.logs})")

    def run(name: str, **kwargs: Any) -> str:
        return stack.run(on_this_machine(COMMANDS[name], database), **kwargs).stdout

    created = False
    try:
        run("createdb")
        created = True
        run("database_url")
        run("ui_api_url")
        processes = [_start_server(stack)]
        run("api_url")
        run("pool")
        run("pool_limit")
        run("deploy", cwd=workspace)

        block_code, submit_code = doc_python()
        block_code = block_code.replace(
            'model="gpt-4o-mini", api_key="sk-..."',
            f'model="openai/fake-model", api_base="{llm.api_base}", api_key="sk-test"',
        ).replace("rate_limit=500", f"rate_limit={RATE_LIMIT}")
        assert f"rate_limit={RATE_LIMIT}" in block_code and llm.api_base in block_code, block_code
        _python(stack, block_code, workspace)

        # Workers poll every second instead of every 10 (their command lines are the docs').
        for worker in WORKERS:
            command = on_this_machine(COMMANDS[worker.replace("-", "_")], database)
            processes.append(stack.start(command, log_name=worker, env={"PREFECT_WORKER_QUERY_SECONDS": "1"}))

        tickers = [f"T{number:02d}" for number in range(RUNS)]
        submit_code = re.sub(r"tickers = \[.*\]", f"tickers = {tickers!r}", submit_code)
        assert repr(tickers) in submit_code, submit_code
        started = time.monotonic()
        printed = _python(stack, submit_code, workspace)
        submitted = dict(line.split() for line in printed.splitlines() if line.strip())

        with stack.client() as client:
            deployment = client.read_deployment_by_name("ticker-brief/ticker-brief")
        by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        fullest = 0

        def all_final() -> list[Any] | None:
            nonlocal fullest
            for name, process in zip(("server", *WORKERS), processes, strict=False):
                assert process.poll() is None, f"{name} exited:\n{stack.log(name)[-4000:]}"
            with stack.client() as client:
                runs = client.read_flow_runs(deployment_filter=by_deployment, limit=200)
                try:
                    fullest = max(fullest, client.read_global_concurrency_limit_by_name(GCL).active_slots)
                except Exception:  # noqa: BLE001 - not created until the first call
                    pass
            done = [r for r in runs if _final(r)]
            print(f"\r{len(done)}/{len(runs)} runs final, {llm.count} LLM requests", end="", flush=True)
            return runs if len(runs) >= RUNS and len(done) == len(runs) else None

        runs = wait_for(all_final, f"{RUNS} runs to finish", timeout=1200, every=2)
        duration = time.monotonic() - started
        with stack.client() as client:
            gcl = client.read_global_concurrency_limit_by_name(GCL)
        executed = wait_for(
            lambda: _executed_events(stack, len(runs)), "the workers' executed-flow-run events", timeout=120
        )
        # Wide enough that the table does not cut the limit's name.
        outputs = {
            name: stack.run(on_this_machine(COMMANDS[name], database), env={"COLUMNS": "200"}).stdout
            for name in ("gcl_ls", "gcl_inspect")
        }
        yield Load(
            submitted=submitted,
            runs=runs,
            requests=llm.requests,
            arrivals=[request.arrived_at for request in llm.requests],
            executed=Counter(run_id for run_id, _ in executed),
            executed_by=dict(executed),
            gcl=gcl,
            fullest=fullest,
            duration_s=duration,
            outputs=outputs,
        )
    finally:
        stack.close()  # workers before the server
        llm.stop()
        if created:
            subprocess.run(
                ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", database], check=False
            )


# -- without a server ---------------------------------------------------------------------------


def test_every_docs_command_is_one_the_test_runs() -> None:
    assert sorted(doc_commands()) == sorted(COMMANDS.values())
    assert len(doc_python()) == 2  # the block, then the submission loop


def test_the_bucket_bound() -> None:
    assert allowed(60) == 2 * RATE_LIMIT + int(RATE_LIMIT * LAG_S / 60)
    assert busiest([0, 1, 59, 60.5, 61, 200], 60) == 4


# -- the load ---------------------------------------------------------------------------------


def test_every_run_completes_and_none_is_lost(load: Load) -> None:
    assert len(load.submitted) == RUNS
    assert sorted(str(r.id) for r in load.runs) == sorted(load.submitted)
    states = Counter(r.state.type.value for r in load.runs)
    assert states == {"COMPLETED": RUNS}, [
        (r.name, r.state.type.value, r.state.message) for r in load.runs if r.state.type.value != "COMPLETED"
    ]
    assert {str(r.id): r.parameters["ticker"] for r in load.runs} == load.submitted


def test_no_run_runs_twice(load: Load) -> None:
    assert [r.run_count for r in load.runs] == [1] * RUNS
    # Each run was handed to a worker's process once: one executed-flow-run event each.
    assert load.executed == {run_id: 1 for run_id in load.submitted}, load.executed
    # Each run's four prompts reached the LLM server once each: none lost, none repeated.
    prompts = Counter(r.messages[-1]["content"] for r in load.requests)
    assert len(load.requests) == RUNS * CALLS_PER_RUN
    assert set(prompts.values()) == {1}, [p for p, n in prompts.items() if n > 1]
    per_ticker = Counter(t for p in prompts for t in set(re.findall(r"\bT\d\d\b", p)))
    assert per_ticker == {ticker: CALLS_PER_RUN for ticker in load.submitted.values()}


def test_both_workers_ran_some(load: Load) -> None:
    ran = Counter(load.executed_by.values())
    print(f"\nruns per worker: {dict(ran)}")
    assert set(ran) == set(WORKERS) and sum(ran.values()) == RUNS
    # The run's labels, set by the worker that took it, agree.
    assert {str(r.id): r.labels["prefect.worker.name"] for r in load.runs} == load.executed_by


def test_the_rate_limit_holds_across_both_workers(load: Load) -> None:
    most = busiest(load.arrivals, WINDOW_S)
    span = max(load.arrivals) - min(load.arrivals)
    print(
        f"\n{len(load.arrivals)} LLM requests over {span:.0f} s; busiest {WINDOW_S:.0f} s window: {most} "
        f"(allowed {allowed(WINDOW_S)} with rate_limit={RATE_LIMIT}); busiest 10 s window: {busiest(load.arrivals, 10)} "
        f"(allowed {allowed(10)}); most active slots seen: {load.fullest}; all runs in {load.duration_s:.0f} s "
        f"= {RUNS / load.duration_s * 60:.1f} runs/minute"
    )
    first = min(load.arrivals)
    per_minute = Counter(int((t - first) // 60) for t in load.arrivals)
    print("requests per minute, from the first:", [per_minute[m] for m in range(max(per_minute) + 1)])
    for window in (1.0, 10.0, WINDOW_S, 120.0):
        assert busiest(load.arrivals, window) <= allowed(window), (
            window,
            busiest(load.arrivals, window),
            allowed(window),
        )
    # The limit bound: its slots were all taken, so later calls waited for slots to decay.
    # (Prefect's `denied_slots` cannot show it: a denial's update is rolled back with the
    # refused request.)
    assert load.fullest == RATE_LIMIT


def test_the_limit_is_the_blocks_and_the_docs_commands_show_it(load: Load) -> None:
    assert (load.gcl.name, load.gcl.limit, load.gcl.active) == (GCL, RATE_LIMIT, True)
    assert load.gcl.slot_decay_per_second == pytest.approx(RATE_LIMIT / 60)
    assert GCL in load.outputs["gcl_ls"]
    inspected = load.outputs["gcl_inspect"]
    assert GCL in inspected and "slot_decay_per_second" in inspected, inspected
    assert json.dumps(RATE_LIMIT) in inspected
