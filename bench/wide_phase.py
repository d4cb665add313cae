"""One parallel phase of 200 agent calls vs asyncio + litellm for the same 200 calls.

Runs in one process per Prefect backend, against the fast fake LLM (``bench/_fake_llm.py``):

- plain asyncio + litellm: 200 calls gathered (the floor);
- a hand-written Prefect 3 flow: one async subflow, 200 tasks gathered;
- taskmark: a generated definition with one `parallel: true` phase of 200 agent steps.

    python bench/wide_phase.py [--backend sqlite|postgres|both] [--calls 200] [--latency 0.4] [--repeats 3] [--smoke]

Goal (issue 4): within 1.2× the asyncio + litellm floor.
"""

from __future__ import annotations

import asyncio
import os
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


def definition_text(calls: int) -> str:
    steps = "".join(f"- agent: a - Item {i} of {{{{ topic }}}}\n" for i in range(calls))
    return (
        HEAD.format(name="wide-phase", concurrent=4)
        + f"## Phase: Wide\nparallel: true\n\n### Steps\n{steps}- aggregate: concat\n"
    )


def hand_written(base: str, calls: int) -> Any:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(name="call", persist_result=False, cache_policy=NO_CACHE)
    async def call(prompt: str) -> str:
        return await litellm_call(base, prompt)

    @flow(name="phase", persist_result=False)
    async def phase(prompts: list[str]) -> list[str]:
        return list(await asyncio.gather(*(call(p) for p in prompts)))

    @flow(name="hand-written-wide-phase", persist_result=False)
    async def wide() -> None:
        await phase.with_options(name="Wide")([f"Item {i}" for i in range(calls)])

    return wide


async def child(args: Any) -> None:
    from taskmark.definition import load_definition
    from taskmark.runs._run import arun

    base = api_base(args.fake_port, args.latency)
    n = args.calls
    child_header(args.backend)
    definition = load_definition(write_definition(definition_text(n)))
    hand = hand_written(base, n)
    over = overrides(base)

    async def floor() -> None:
        await asyncio.gather(*(litellm_call(base, f"Item {i}") for i in range(n)))

    async def taskmark() -> None:
        result = await arun(definition, {}, overrides=over)
        assert result.state == "COMPLETED" and result.usage.calls == n, (result.state, result.message)

    rows = [
        (f"asyncio + litellm, {n} calls gathered (floor)", (await timed(floor, args.repeats))[0]),
        ("hand-written Prefect flow", (await timed(hand, args.repeats))[0]),
        ("taskmark", (await timed(taskmark, args.repeats))[0]),
    ]
    print_table(
        f"{n} agent calls in one parallel phase, {args.latency * 1000:.0f} ms per call, {args.backend}",
        rows,
        note=f"median of {args.repeats} after 1 warm-up; load {os.getloadavg()[0]:.2f}",
    )
    dump_json(f"wide_phase_{args.backend}", {"rows": {k: {"wall": list(v), "cpu": v.cpu} for k, v in rows}})
    if args.trace:
        with ApiTrace() as trace:
            t0 = time.perf_counter()
            await taskmark()
            total = time.perf_counter() - t0
        trace.summary(f"taskmark, {args.backend}, {n} calls", t0, total)
    if args.profile:
        await print_profile(taskmark)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.4, help="seconds per LLM reply")
    parser.add_argument("--profile", action="store_true", help="cProfile one more taskmark run")
    bench_main(__file__, parser, child, smoke={"calls": 5, "latency": 0.0})


if __name__ == "__main__":
    main()
