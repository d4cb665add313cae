"""What the providers layer adds to a raw litellm call, against a local fake server.

Prints a table: sequential and concurrent calls, raw ``litellm.acompletion`` versus
``LLMProvider.acomplete`` (classification, retries wrapper, accounting). No assertions:
numbers are for reading, not for CI.

    python bench/llm_overhead.py [CALLS] [SERVER_DELAY_S] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import LLMProvider
from taskmark.blocks._litellm import litellm

HI = [{"role": "user", "content": "hi"}]


async def _raw(server: FakeOpenAIServer) -> None:
    await litellm().acompletion(
        model="openai/bench", api_base=server.api_base, api_key="k", messages=HI, num_retries=0, max_retries=0
    )


async def _provider(provider: LLMProvider) -> None:
    await provider.acomplete(HI)


async def _measure(label: str, make: object, calls: int, parallel: bool) -> tuple[str, float, float]:
    started = time.perf_counter()
    if parallel:
        await asyncio.gather(*[make() for _ in range(calls)])  # type: ignore[operator]
        per_call = []
    else:
        per_call = []
        for _ in range(calls):
            t = time.perf_counter()
            await make()  # type: ignore[operator]
            per_call.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    median = statistics.median(per_call) * 1000 if per_call else float("nan")
    return label, total, median


async def main(calls: int, delay_s: float) -> None:
    server = FakeOpenAIServer().start()
    server.default = lambda _req: Reply(content="ok", delay_s=delay_s)
    provider = LLMProvider(model="openai/bench", api_base=server.api_base, api_key="k")
    await _raw(server)  # import and connection set-up are not measured
    await _provider(provider)
    rows = []
    for parallel in (False, True):
        mode = "concurrent" if parallel else "sequential"
        rows.append(await _measure(f"litellm, {mode}", lambda: _raw(server), calls, parallel))
        rows.append(await _measure(f"LLMProvider, {mode}", lambda: _provider(provider), calls, parallel))
    server.stop()
    print(f"{calls} calls, server delay {delay_s * 1000:.0f} ms")
    print(f"{'path':<28} {'total s':>9} {'median ms':>10}")
    for label, total, median in rows:
        print(f"{label:<28} {total:>9.3f} {median:>10.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("calls", nargs="?", type=int, default=50)
    parser.add_argument("delay_s", nargs="?", type=float, default=0.0, metavar="SERVER_DELAY_S")
    parser.add_argument("--smoke", action="store_true", help="5 calls: does it run?")
    args = parser.parse_args()
    asyncio.run(main(5 if args.smoke else args.calls, args.delay_s))
