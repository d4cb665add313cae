"""Load: throughput of a deployment run by Prefect process workers, with one and two workers.

For each backend (a Prefect server on PostgreSQL, and on SQLite), this script:

- starts the server (``bench/_common.prefect_server``: taskmark's local server, on a throwaway
  PostgreSQL database or SQLite file) and the fake OpenAI-compatible server
  (``bench/_fake_llm.py``, ``--latency`` s per reply);
- deploys a small definition to a process pool with ``taskmark deploy`` (2 phases: two calls
  at once, then two in sequence; 4 calls per run), its calls going to the fake server;
- for each worker set-up (1 worker; 2 workers; 1 worker with twice the ``--limit``, to tell
  more processes from more workers), starts the workers (``prefect worker start --pool P
  --limit L``), submits ``--runs`` runs at once through the API, and times from the first
  submission until every run is final; then stops the workers (before the server).

Prints a markdown table per backend: runs, completed, wall time, runs per minute, and the
ratio to the 1-worker row measured in the same process. No rate limit is set: this measures
Prefect's engine and the runs' own cost (each run is a Python process of its own). No
assertions.

    python bench/load.py [--backend sqlite|postgres|both] [--runs 20] [--limit 4] [--latency 0.2] [--smoke]

``--smoke`` (does it run?): SQLite only, 2 runs, the 1-worker set-up only, 0 ms per reply.

On a 2-core machine each run's process start (Python, Prefect, taskmark, litellm imports)
dominates; a second worker on the same machine adds processes, not cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HEAD, QUIET_ENV, add_smoke, apply_smoke, prefect_server, write_definition
from _fake_llm import FakeLLM

BIN = Path(sys.executable).parent
NAME = "load-brief"
POOL = "bench-load"


def definition_text() -> str:
    return HEAD.format(name=NAME, concurrent=2) + (
        "## Phase: Gather\nparallel: true\n\n### Steps\n"
        "- agent: a - News on {{ topic }}\n- agent: b - Prices of {{ topic }}\n- aggregate: concat\n\n"
        "## Phase: Brief\ndependsOn: [Gather]\n\n### Steps\n"
        '- agent: a - Brief on {{ topic }} from {{ phases.Gather }}\n- agent: b - Tighten: {{ steps["a"] }}\n'
    )


def _env(api_url: str, home: str, llm_base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TASKMARK_"))}
    env.update(QUIET_ENV)
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": home,
            # Workers poll every second instead of every 10: a run waits less for pick-up.
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "TASKMARK_LLM_MODEL": "openai/bench",
            "TASKMARK_LLM_API_BASE": llm_base,
            "TASKMARK_LLM_API_KEY": "sk-bench",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def _client(api_url: str) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api_url)


def measure(
    api_url: str, env: dict[str, str], deployment_id: Any, workers: int, limit: int, runs: int, logs: Path
) -> dict[str, Any]:
    """Start ``workers`` workers, submit ``runs`` runs at once, wait for all; stop the workers."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    processes = []
    for number in range(workers):
        log = (logs / f"worker-{workers}-{limit}-{number}.log").open("ab")
        processes.append(
            subprocess.Popen(
                [
                    "prefect",
                    "worker",
                    "start",
                    "--pool",
                    POOL,
                    "--name",
                    f"w{number}-{uuid.uuid4().hex[:6]}",
                    "--limit",
                    str(limit),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        time.sleep(5)  # let the workers start polling: their start-up is not the runs' cost
        with _client(api_url) as client:
            started = time.perf_counter()
            ids = [
                client.create_flow_run_from_deployment(deployment_id, parameters={"topic": f"t{i}"}).id
                for i in range(runs)
            ]
            submitted = time.perf_counter() - started
            deadline = time.monotonic() + 3600
            while True:
                found = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids)
                )
                if all(r.state is not None and r.state.is_final() for r in found) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            wall = time.perf_counter() - started
        states = Counter(r.state.type.value for r in found if r.state is not None)
        return {"wall": wall, "submit": submitted, "states": states, "cpu_load": os.getloadavg()[0]}
    finally:
        for process in processes:  # before the server: a worker without it ignores SIGTERM
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def bench_backend(backend: str, args: argparse.Namespace, llm: FakeLLM, definition: Path) -> None:
    setups = [(1, args.limit)] if args.smoke else [(1, args.limit), (2, args.limit), (1, 2 * args.limit)]
    home = tempfile.mkdtemp(prefix="tm-bench-load-")
    logs = Path(home) / "logs"
    logs.mkdir()
    try:
        with prefect_server(backend) as api_url:
            env = _env(api_url, home, llm.api_base(args.latency))
            subprocess.run(
                ["taskmark", "deploy", str(definition), "--pool", POOL], env=env, check=True, capture_output=True
            )
            with _client(api_url) as client:
                deployment_id = client.read_deployment_by_name(f"{NAME}/{NAME}").id
            rows = []
            for workers, limit in setups:
                before = llm.count()
                result = measure(api_url, env, deployment_id, workers, limit, args.runs, logs)
                result["calls"] = llm.count() - before
                rows.append((workers, limit, result))
                print(
                    f"# {backend}: {workers} worker(s) --limit {limit}: {result['wall']:.1f} s, {dict(result['states'])}",
                    file=sys.stderr,
                )
        base = args.runs / rows[0][2]["wall"] * 60
        print(
            f"\n### load, {backend}: {args.runs} runs at once, 4 calls each, {args.latency * 1000:.0f} ms per reply\n"
        )
        print("| workers | --limit each | runs completed | LLM calls | wall (s) | runs / minute | × 1 worker |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for workers, limit, result in rows:
            rate = args.runs / result["wall"] * 60
            print(
                f"| {workers} | {limit} | {result['states'].get('COMPLETED', 0)}/{args.runs} | {result['calls']} "
                f"| {result['wall']:.1f} | {rate:.1f} | {rate / base:.2f} |"
            )
        print(
            f"\nsubmitting {args.runs} runs took {rows[0][2]['submit']:.2f} s; load average after: {os.getloadavg()[0]:.2f}; "
            f"{os.cpu_count()} CPUs"
        )
        sys.stdout.flush()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runs", type=int, default=20, help="runs submitted at once per set-up")
    parser.add_argument("--limit", type=int, default=4, help="runs at once per worker (prefect worker start --limit)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per LLM reply")
    add_smoke(parser)
    args = parser.parse_args()
    if args.smoke:
        apply_smoke(args, {"runs": 2, "latency": 0.0})
    backends = ["postgres", "sqlite"] if args.backend == "both" else [args.backend]
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    definition = write_definition(definition_text())
    with FakeLLM() as llm:
        for backend in backends:
            bench_backend(backend, args, llm, definition)


if __name__ == "__main__":
    main()
