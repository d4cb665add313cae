"""Wide fan-out: Brief → (12 calls at once ∥ 1 call) → Wrap; 15 calls, critical path 3 calls.

Runs, in one process per Prefect backend, against the same fake OpenAI-compatible server
(``bench/_fake_llm.py``, its own process, 400 ms per reply):

- plain asyncio + litellm: the floor;
- a hand-written Prefect 3 flow: one async subflow per phase, one task per call, the two
  middle subflows gathered;
- taskmark: a generated definition of the same shape, run with ``taskmark.runs._run.arun``;
- for reference, the same 15 calls as Prefect tasks of one flow without subflows (the shape
  of Pydantic AI's PrefectDurability): what Prefect costs when no subflow is on the path.

Each runner gets one warm-up run, then ``--repeats`` measured runs (median reported); litellm
and Prefect are imported and the client connected before anything is timed. Prints a markdown
table per backend with the ratio to the asyncio floor. No assertions.

    python bench/wide_fanout.py [--backend sqlite|postgres|both] [--latency 0.4] [--repeats 3] [--trace] [--smoke]

``--trace`` adds one more run of each Prefect runner with every Prefect API request timed.
"""

from __future__ import annotations

import asyncio
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
    print_table,
    timed,
    write_definition,
)

WIDTH = 12


def definition_text() -> str:
    fan = "".join(f"- agent: a - Angle {i} on {{{{ topic }}}}\n" for i in range(WIDTH))
    return HEAD.format(name="wide-fanout", concurrent=4) + (
        "## Phase: Brief\n\n### Steps\n- agent: a - Brief on {{ topic }}\n\n"
        f"## Phase: Fan\ndependsOn: [Brief]\nparallel: true\n\n### Steps\n{fan}- aggregate: concat\n\n"
        "## Phase: Side\ndependsOn: [Brief]\n\n### Steps\n- agent: b - Side view of {{ topic }}\n\n"
        "## Phase: Wrap\ndependsOn: [Fan, Side]\n\n### Steps\n- agent: a - Wrap up {{ topic }}\n"
    )


async def floor(base: str) -> None:
    await litellm_call(base, "Brief")
    await asyncio.gather(
        asyncio.gather(*(litellm_call(base, f"Angle {i}") for i in range(WIDTH))), litellm_call(base, "Side")
    )
    await litellm_call(base, "Wrap")


def hand_written(base: str) -> Any:
    """The hand-written Prefect flow: async subflows, a task per call."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(name="call", persist_result=False, cache_policy=NO_CACHE)
    async def call(prompt: str) -> str:
        return await litellm_call(base, prompt)

    @flow(name="phase", persist_result=False)
    async def phase(prompts: list[str]) -> list[str]:
        return list(await asyncio.gather(*(call(p) for p in prompts)))

    @flow(name="hand-written-wide-fanout", persist_result=False)
    async def wide() -> None:
        await phase.with_options(name="Brief")(["Brief"])
        await asyncio.gather(
            phase.with_options(name="Fan")([f"Angle {i}" for i in range(WIDTH)]),
            phase.with_options(name="Side")(["Side"]),
        )
        await phase.with_options(name="Wrap")(["Wrap"])

    return wide


def tasks_only(base: str) -> Any:
    """The same calls as Prefect tasks in one flow, no subflows: what Prefect costs without them."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(name="call", persist_result=False, cache_policy=NO_CACHE)
    async def call(prompt: str) -> str:
        return await litellm_call(base, prompt)

    @flow(name="hand-written-wide-fanout-tasks-only", persist_result=False)
    async def wide() -> None:
        await call("Brief")
        await asyncio.gather(*(call(f"Angle {i}") for i in range(WIDTH)), call("Side"))
        await call("Wrap")

    return wide


async def child(args: Any) -> None:
    from taskmark.definition import load_definition
    from taskmark.runs._run import arun

    base = api_base(args.fake_port, args.latency)
    child_header(args.backend)
    definition = load_definition(write_definition(definition_text()))
    hand = hand_written(base)
    over = overrides(base)
    phases: dict[str, list[float]] = {}

    async def taskmark() -> None:
        result = await arun(definition, {}, overrides=over)
        assert result.state == "COMPLETED" and result.usage.calls == 15, (result.state, result.message, result.usage)
        for name, summary in result.phases.items():
            phases.setdefault(name, []).append(summary.duration_s)

    rows = [
        ("asyncio + litellm (floor)", (await timed(lambda: floor(base), args.repeats))[0]),
        ("hand-written Prefect flow", (await timed(hand, args.repeats))[0]),
        ("taskmark", (await timed(taskmark, args.repeats))[0]),
        ("reference: Prefect flow, a task per call, no subflows", (await timed(tasks_only(base), args.repeats))[0]),
    ]
    critical = 3 * args.latency
    print_table(
        f"wide fan-out, {args.backend}: 15 calls, critical path 3 × {args.latency * 1000:.0f} ms = {critical:.2f} s",
        rows,
        note=f"median of {args.repeats} after 1 warm-up; load {__import__('os').getloadavg()[0]:.2f}",
    )
    print(
        "\ntaskmark phase durations (median, s; from RunResult, includes each subflow's own Prefect calls): "
        + ", ".join(f"{name} {statistics.median(times[1:] or times):.3f}" for name, times in phases.items())
    )
    dump_json(
        f"wide_fanout_{args.backend}", {"rows": {k: {"wall": list(v), "cpu": v.cpu} for k, v in rows}, "phases": phases}
    )
    if args.trace:
        for label, make in (("hand-written Prefect flow", hand), ("taskmark", taskmark)):
            with ApiTrace() as trace:
                t0 = time.perf_counter()
                await make()
                total = time.perf_counter() - t0
            trace.summary(f"{label}, {args.backend}", t0, total)
            if args.trace_timeline:
                trace.timeline(t0)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--latency", type=float, default=0.4, help="seconds per LLM reply")
    parser.add_argument("--trace-timeline", action="store_true", help="with --trace: print every request")
    bench_main(__file__, parser, child, smoke={"latency": 0.0})


if __name__ == "__main__":
    main()
