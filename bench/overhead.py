"""Orchestration overhead per phase: a chain of N phases, one call each, 0 ms per call.

Runs in one process per Prefect backend, against the fast fake LLM (``bench/_fake_llm.py``)
answering at once:

- plain asyncio + litellm: N calls one after another (the floor);
- a hand-written Prefect 3 flow: N async subflows one after another, a task per call;
- taskmark: a generated definition P0 → P1 → … → P(N-1), each phase one agent step.

Overhead per phase = (runner − floor) / N. Prints a table per backend; no assertions.

    python bench/overhead.py [--backend sqlite|postgres|both] [--phases 10] [--repeats 3] [--trace] [--smoke]

Goal (issue 4): ≤ 50 ms per phase on PostgreSQL.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HEAD,
    ApiTrace,
    api_base,
    base_parser,
    bench_main,
    child_header,
    dump_json,
    litellm_call,
    overrides,
    print_profile,
    print_table,
    timed,
    write_definition,
)


def definition_text(phases: int) -> str:
    return HEAD.format(name="chain", concurrent=4) + "".join(
        f"## Phase: P{i}\n"
        + (f"dependsOn: [P{i - 1}]\n" if i else "")
        + f"\n### Steps\n- agent: a - Step {i} on {{{{ topic }}}}\n\n"
        for i in range(phases)
    )


def hand_written(base: str, phases: int) -> Any:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(name="call", persist_result=False, cache_policy=NO_CACHE)
    async def call(prompt: str) -> str:
        return await litellm_call(base, prompt)

    @flow(name="phase", persist_result=False)
    async def phase(prompt: str) -> str:
        return await call(prompt)

    @flow(name="hand-written-chain", persist_result=False)
    async def chain() -> None:
        for i in range(phases):
            await phase.with_options(name=f"P{i}")(f"Step {i}")

    return chain


async def child(args: Any) -> None:
    from taskmark.definition import load_definition
    from taskmark.runs._run import arun

    base = api_base(args.fake_port, 0)
    n = args.phases
    child_header(args.backend)
    definition = load_definition(write_definition(definition_text(n)))
    hand = hand_written(base, n)
    over = overrides(base)

    async def floor() -> None:
        for i in range(n):
            await litellm_call(base, f"Step {i}")

    async def taskmark() -> None:
        result = await arun(definition, {}, overrides=over)
        assert result.state == "COMPLETED" and result.usage.calls == n, (result.state, result.message)

    rows = [
        ("asyncio + litellm (floor)", (await timed(floor, args.repeats))[0]),
        ("hand-written Prefect flow", (await timed(hand, args.repeats))[0]),
        ("taskmark", (await timed(taskmark, args.repeats))[0]),
    ]
    print_table(
        f"chain of {n} phases, one call each, 0 ms per call, {args.backend}",
        rows,
        note=f"median of {args.repeats} after 1 warm-up; load {os.getloadavg()[0]:.2f}",
    )
    floor_s = statistics.median(rows[0][1])
    floor_cpu = statistics.median(rows[0][1].cpu)
    print(
        "\n| runner | wall overhead per phase (ms) = (median − floor) / N | client CPU per phase (ms) |\n| --- | ---: | ---: |"
    )
    for label, times in rows[1:]:
        print(
            f"| {label} | {(statistics.median(times) - floor_s) / n * 1000:.0f} | {(statistics.median(times.cpu) - floor_cpu) / n * 1000:.0f} |"
        )
    dump_json(f"overhead_{args.backend}", {"rows": {k: {"wall": list(v), "cpu": v.cpu} for k, v in rows}, "phases": n})
    if args.trace:
        for label, make in (("hand-written Prefect flow", hand), ("taskmark", taskmark)):
            with ApiTrace() as trace:
                t0 = time.perf_counter()
                await make()
                total = time.perf_counter() - t0
            trace.summary(f"{label}, {args.backend}, {n} phases", t0, total)
    if args.profile:
        await print_profile(taskmark)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--phases", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="cProfile one more taskmark run")
    bench_main(__file__, parser, child, smoke={"phases": 2})


if __name__ == "__main__":
    main()
