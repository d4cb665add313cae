"""Context cost of refine loops: time per refine iteration at 1,000 and at 10,000 iterations.

What is measured, and why this way: a definition cannot ask for 10,000 refinements
(``maxRefinements`` is at most 20), and through Prefect each iteration costs two task runs
(critique + refine calls), which would measure Prefect's per-task cost, not taskmark's context
handling. So this drives taskmark's own critique/refine loop (``loop`` from
``taskmark.tasks._loop``) for one phase whose quality check always fails, with the
phase's ``maxRefinements`` raised past its limit in memory and the runtime's LLM call replaced
by an in-process stub that answers at once. Everything else is the product's code: prompt
rendering (Jinja2 sandbox) for critique and refine, parsing the reply against the declared
outputs, structure and quality checks, and the merges into the phase's context (critiques,
answer state, each stage's end kept with ``Lifecycle.ended``).

A second table times ``Lifecycle.ended`` alone — the stage-result merge — on a phase that
already holds 1,000 vs 10,000 stage results, per merge.

    python bench/refine_loop.py [--repeats 3] [--smoke]

Goal (issue 4): time per iteration at 10,000 within 1.2× of that at 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_profile, write_definition

SIZES = (1_000, 10_000)
SMOKE_SIZES = (10, 100)

DEFINITION = """# Refine bench

```yaml
name: refine-bench
requirements:
  topic: {type: string, default: tides}
```

## Phase: Draft

### Steps
- agent: a - Write about {{ topic }} as JSON.
- validation: output.score >= 10

### Outputs
- summary: string
- score: number

### Critique
- agent: critic - Critique this draft on {{ topic }}: {{ output }} {% if errors %}Failed: {{ errors }}{% endif %}

### Refine
maxRefinements: 20

- agent: reviser - Revise the draft on {{ topic }}. Draft: {{ output }} Review: {{ critique }}
"""


class StubRuntime:
    """Just what ``Lifecycle`` asks of a Runtime during the loop; the call answers at once."""

    def __init__(self, definition: Any) -> None:
        from taskmark.blocks import Completion

        self.definition = definition
        self.recorder = None  # no run record: the loop alone is measured
        self.calls = 0
        self.critique = Completion(text="Too low a score; add evidence.", model="stub")
        self.revision = Completion(
            text='{"summary": "tides rise", "score": 1}', parsed={"summary": "tides rise", "score": 1}, model="stub"
        )

    async def call(
        self,
        phase: Any,
        stage: str,
        agent: Any,
        prompt: str,
        layers: Any,
        schema: Any,
        *,
        tags: tuple[str, ...] = (),
        loop_round: int | None = None,
    ) -> Any:
        self.calls += 1
        return self.critique if stage == "critique" else self.revision


def lifecycle_for(iterations: int) -> tuple[Any, StubRuntime]:
    from taskmark.definition import load_definition
    from taskmark.tasks._answers import parse_text
    from taskmark.tasks._checks import check
    from taskmark.tasks._lifecycle import Lifecycle

    definition = load_definition(write_definition(DEFINITION, agents=("a", "critic", "reviser")))
    phase = definition.phase("Draft")
    assert phase.refine is not None
    # Past the definition format's limit of 20, in memory only.
    object.__setattr__(phase.refine.options, "max_refinements", iterations)
    runtime = StubRuntime(definition)
    lifecycle = Lifecycle(definition, phase, {"topic": "tides"}, {}, runtime, {})  # type: ignore[arg-type]
    for answer in lifecycle.answers:  # what inference and parsing leave behind
        answer.text = '{"summary": "tides", "score": 1}'
        answer.value, _ = parse_text(answer.text, None, phase.outputs)
        answer.errors = check(lifecycle, answer)
    assert all(a.errors for a in lifecycle.answers), "the quality check must fail for the loop to run"
    return lifecycle, runtime


async def loop_once(iterations: int) -> tuple[float, int]:
    from taskmark.tasks._context import StageResult
    from taskmark.tasks._loop import loop

    lifecycle, runtime = lifecycle_for(iterations)
    started = time.perf_counter()
    result = await loop(lifecycle)
    lifecycle.ended("critique", "completed", result)  # the stage's merge, as stage() does it
    elapsed = time.perf_counter() - started
    answer = lifecycle.answers[0]
    assert answer.refinements == iterations, (answer.refinements, answer.failure)
    assert isinstance(result, StageResult)
    return elapsed, runtime.calls


def merge_cost(stored: int, merges: int = 2_000) -> float:
    """Seconds per ``Lifecycle.ended`` on a phase already holding ``stored`` stage results."""
    from taskmark.tasks._context import StageResult

    lifecycle, _ = lifecycle_for(1)
    for i in range(stored):
        lifecycle.ended(f"s{i}", "completed", StageResult(data={"i": i, "text": "x" * 50}, flags={f"f{i % 50}": i}))
    results = [StageResult(data={"i": i}, flags={"ok": True}) for i in range(merges)]
    started = time.perf_counter()
    for i, result in enumerate(results):
        lifecycle.ended(f"new{i % 10}", "completed", result)
    return (time.perf_counter() - started) / merges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one 1,000-iteration loop")
    parser.add_argument("--smoke", action="store_true", help="10 and 100 iterations, one repeat: does it run?")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    sizes = SMOKE_SIZES if args.smoke else SIZES
    if args.smoke:
        args.repeats = 1

    asyncio.run(loop_once(100))  # warm-up: imports, template and expression caches
    per_iteration: dict[int, list[float]] = {}
    calls: dict[int, int] = {}
    for size in sizes:
        for _ in range(args.repeats):
            elapsed, calls[size] = asyncio.run(loop_once(size))
            per_iteration.setdefault(size, []).append(elapsed / size)
    base = statistics.median(per_iteration[sizes[0]])
    print(
        f"\n### refine loop (taskmark's tasks._loop.loop, stubbed LLM), median of {args.repeats}; load {os.getloadavg()[0]:.2f}\n"
    )
    print(f"| iterations | stub calls | total (s) | per iteration (µs) | × at {sizes[0]:,} |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        med = statistics.median(per_iteration[size])
        print(f"| {size:,} | {calls[size]:,} | {med * size:.3f} | {med * 1e6:.1f} | {med / base:.2f} |")

    merges = {size: statistics.median(merge_cost(size) for _ in range(args.repeats)) for size in sizes}
    print("\n### stage-result merge (Lifecycle.ended) on a phase holding N stage results\n")
    print(f"| stored results | per merge (µs) | × at {sizes[0]:,} |")
    print("| ---: | ---: | ---: |")
    for size in sizes:
        print(f"| {size:,} | {merges[size] * 1e6:.2f} | {merges[size] / merges[sizes[0]]:.2f} |")

    if args.profile:
        asyncio.run(print_profile(lambda: loop_once(1_000), sort="cumulative", limit=25))


if __name__ == "__main__":
    main()
