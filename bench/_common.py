"""Shared parts of the benchmarks: environment, Prefect servers, runners, timing, tables.

Every benchmark that talks to Prefect runs in two layers:

- the *parent* (imports neither prefect nor litellm) starts the Prefect server(s) the run
  asks for — taskmark's local server (Prefect's app on SQLite with IMMEDIATE transactions,
  under a throwaway ``PREFECT_HOME``) and/or the same app on a throwaway PostgreSQL database
  — and the fast fake LLM server, then runs itself once per server as a *child*;
- the *child* has ``PREFECT_API_URL`` set before Prefect is imported and measures every
  runner (asyncio floor, hand-written Prefect flow, taskmark) in the same process, so the
  ratios in its table compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"

QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
}
for _key, _value in QUIET_ENV.items():
    os.environ.setdefault(_key, _value)

sys.path.insert(0, str(HERE))


# -- servers (parent side) ------------------------------------------------------------------


def _server_call(env: dict[str, str], code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False, timeout=180
    )
    if out.returncode != 0:
        raise RuntimeError(f"server command failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip()


@contextlib.contextmanager
def prefect_server(backend: str) -> Iterator[str]:
    """taskmark's local Prefect server on ``sqlite`` or ``postgres``; yields its API URL.

    Both are started by ``taskmark.server._local.start_server`` with a fresh
    ``PREFECT_HOME``; for ``postgres`` a throwaway database is created, and dropped after.
    """
    home = Path(tempfile.mkdtemp(prefix=f"tm-bench-{backend}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(QUIET_ENV)
    env["PREFECT_HOME"] = str(home)
    db = None
    if backend == "postgres":
        db = f"tm_bench_{uuid.uuid4().hex[:10]}"
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", db], check=True)
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = PG.format(db=db)
    elif backend != "sqlite":
        raise ValueError(backend)
    started = time.perf_counter()
    try:
        url = _server_call(env, "from taskmark.server._local import start_server; print(start_server().api_url)")
        print(
            f"# {backend}: Prefect server at {url} (started in {time.perf_counter() - started:.1f} s)", file=sys.stderr
        )
        yield url.splitlines()[-1]
    finally:
        with contextlib.suppress(Exception):
            _server_call(env, "from taskmark.server._local import stop_server; stop_server()")
        if db is not None:
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", db], check=False)
        shutil.rmtree(home, ignore_errors=True)


def bench_main(
    script: str,
    parser: argparse.ArgumentParser,
    child: Callable[[argparse.Namespace], Awaitable[None]],
    *,
    smoke: dict[str, Any] | None = None,
) -> None:
    """The parent starts servers and the fake LLM and runs ``script --child`` once per backend,
    passing on its own arguments; the child measures.

    With ``--smoke`` (does the script still run? see tests/integration/test_bench_scripts.py):
    SQLite only, one repeat, and the script's ``smoke`` sizes over its own options.
    """
    args = parser.parse_args()
    if args.smoke:
        apply_smoke(args, smoke or {})
    if args.child:
        asyncio.run(child(args))
    else:
        parent_main(script, args)


def parent_main(script: str, args: argparse.Namespace) -> None:
    """Start servers and the fake LLM, run ``script --child`` once per backend."""
    from _fake_llm import FakeLLM

    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    failed: list[str] = []
    print(f"# load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    with FakeLLM() as llm:
        for backend in backends:
            with prefect_server(backend) as url:
                # The client sees no Prefect settings of the caller's, except logging ones
                # (e.g. PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL=WARNING, to compare).
                env = {
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith("PREFECT_") or k.startswith("PREFECT_LOGGING_")
                }
                env.update(QUIET_ENV)
                env["PREFECT_API_URL"] = url
                env["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tm-bench-client-")
                # The caller's own arguments go on; the later --backend wins over its own.
                command = [
                    sys.executable,
                    script,
                    *sys.argv[1:],
                    "--child",
                    "--backend",
                    backend,
                    "--fake-port",
                    str(llm.port),
                ]
                if subprocess.run(command, env=env, check=False).returncode != 0:
                    failed.append(backend)
                shutil.rmtree(env["PREFECT_HOME"], ignore_errors=True)
    print(f"# load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if failed:
        raise SystemExit(f"the measuring process failed on {', '.join(failed)}")


def base_parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fake-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="time every Prefect API request of one extra run")
    add_smoke(parser)
    return parser


def add_smoke(parser: argparse.ArgumentParser) -> None:
    """``--smoke``: tiny sizes, one repeat, SQLite only; checks the script runs, measures nothing."""
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat, SQLite only: does it run?")


def apply_smoke(args: argparse.Namespace, sizes: dict[str, Any]) -> None:
    """Turn ``args`` into a smoke run: ``sizes`` over the script's options, SQLite, one repeat."""
    if hasattr(args, "backend"):
        args.backend = "sqlite"
    if hasattr(args, "repeats"):
        args.repeats = 1
    for name, value in sizes.items():
        setattr(args, name, value)


def api_base(port: int, latency_s: float) -> str:
    return f"http://127.0.0.1:{port}/d{round(latency_s * 1000)}/v1"


# -- runners (child side) -------------------------------------------------------------------


async def litellm_call(base: str, prompt: str) -> str:
    """One raw litellm call: what the floor and the hand-written flow do per LLM call."""
    from taskmark.blocks._litellm import litellm

    response = await litellm().acompletion(
        model="openai/bench",
        api_base=base,
        api_key="sk-bench",
        messages=[{"role": "user", "content": prompt}],
        num_retries=0,
        max_retries=0,
    )
    return str(response.choices[0].message.content)


def overrides(base: str) -> Any:
    from pydantic import SecretStr

    from taskmark.blocks import ProviderOverrides

    return ProviderOverrides(model="openai/bench", api_base=base, api_key=SecretStr("sk-bench"))


def write_definition(text: str, agents: tuple[str, ...] = ("a", "b")) -> Path:
    """Write a definition (and its agents) into a temporary folder; return its path."""
    folder = Path(tempfile.mkdtemp(prefix="tm-bench-def-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "agents").mkdir()
    for agent in agents:
        (folder / "agents" / f"{agent}.md").write_text(f"You are {agent}.\n")
    path = folder / "bench.md"
    path.write_text(text)
    return path


HEAD = "# Bench\n\n```yaml\nname: {name}\nmaxConcurrentPhases: {concurrent}\nrequirements:\n  topic: {{type: string, default: tides}}\n```\n\n"


class Times(list):  # type: ignore[type-arg]
    """Wall times in s; ``cpu`` holds this process's CPU time (user + system) of each run."""

    cpu: list[float]


async def timed(make: Callable[[], Awaitable[Any]], repeats: int, *, warmup: int = 1) -> tuple[Times, Any]:
    """Run ``make()`` ``warmup`` times unmeasured, then ``repeats`` times; wall times in s.

    The CPU time of this process is kept too: on a shared 2-core machine it moves less with
    other people's load than wall time does, and it is the part taskmark can cut itself.
    """
    result = None
    for _ in range(warmup):
        result = await make()
    times = Times()
    times.cpu = []
    for _ in range(repeats):
        cpu = time.process_time()
        started = time.perf_counter()
        result = await make()
        times.append(time.perf_counter() - started)
        times.cpu.append(time.process_time() - cpu)
    return times, result


def print_table(title: str, rows: list[tuple[str, list[float]]], *, unit: str = "s", note: str = "") -> None:
    """A markdown table: median, min, max and median ÷ the first row's median."""
    base = statistics.median(rows[0][1])
    print(f"\n### {title}\n")
    if note:
        print(note + "\n")
    print(f"| runner | median ({unit}) | min | max | × {rows[0][0]} | client CPU ({unit}, median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, times in rows:
        med = statistics.median(times)
        cpu = getattr(times, "cpu", None)
        print(
            f"| {label} | {med:.3f} | {min(times):.3f} | {max(times):.3f} | {med / base:.2f} | {statistics.median(cpu) if cpu else float('nan'):.3f} |"
        )
    sys.stdout.flush()


# -- Prefect API trace (child side) ---------------------------------------------------------

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ApiTrace:
    """Record every request Prefect's HTTP client sends: start, duration, method, route."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, str, str, int]] = []
        self._original: Any = None

    def __enter__(self) -> ApiTrace:
        from prefect.client.base import PrefectHttpxAsyncClient

        self._original = original = PrefectHttpxAsyncClient.send
        calls = self.calls

        async def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            response = await original(client, request, *args, **kwargs)
            route = _ID.sub("{id}", request.url.path.split("/api", 1)[-1])
            calls.append((started, time.perf_counter() - started, request.method, route, response.status_code))
            return response

        PrefectHttpxAsyncClient.send = send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from prefect.client.base import PrefectHttpxAsyncClient

        PrefectHttpxAsyncClient.send = self._original  # type: ignore[method-assign]

    def summary(self, title: str, t0: float, total: float) -> None:
        """Per route: count, total and mean ms, and the sum of their durations vs the run."""
        by: dict[str, list[float]] = {}
        for _, duration, method, route, status in self.calls:
            key = f"{method} {route}" + (f" [{status}]" if status >= 400 else "")
            by.setdefault(key, []).append(duration)
        print(f"\n#### Prefect API requests during one run: {title} (run {total:.3f} s)\n")
        print("| request | count | total ms | mean ms | max ms |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for key, durations in sorted(by.items(), key=lambda kv: -sum(kv[1])):
            print(
                f"| {key} | {len(durations)} | {sum(durations) * 1000:.0f} | {statistics.mean(durations) * 1000:.1f} | {max(durations) * 1000:.0f} |"
            )
        busy = _union(((s - t0, s - t0 + d) for s, d, *_ in self.calls))
        print(f"\nwall time with at least one Prefect request in flight: {busy:.3f} s of {total:.3f} s")

    def timeline(self, t0: float, limit: int = 200) -> None:
        print("\n```")
        for started, duration, method, route, status in sorted(self.calls)[:limit]:
            print(f"{(started - t0) * 1000:8.1f} ms  +{duration * 1000:6.1f} ms  {status} {method} {route}")
        print("```")


def _union(spans: Any) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def child_header(backend: str) -> None:
    import prefect
    from prefect.settings import get_current_settings

    load = os.getloadavg()
    print(
        f"\n## backend: {backend} — prefect {prefect.__version__}, API {get_current_settings().api.url}, load {load[0]:.2f}"
    )


def dump_json(name: str, payload: dict[str, Any]) -> None:
    """Keep raw numbers next to the table (``$BENCH_JSON_DIR/NAME.json``), if asked."""
    folder = os.environ.get("BENCH_JSON_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(payload, indent=2))


def run_child(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def print_profile(run: Callable[[], Awaitable[Any]], *, sort: str = "tottime", limit: int = 30) -> None:
    """Run once under cProfile and print the costliest functions as a markdown code block."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    await run()
    profiler.disable()
    print("\n```")
    pstats.Stats(profiler).sort_stats(sort).print_stats(limit)
    print("```")
