"""Parse + validate time of generated definitions of 500, 1,000 and 2,000 phases.

Run: ``python bench/parse.py [--smoke]``. Prints a table; the ratio column compares each size
with the 500-phase baseline measured in the same process (linear growth means ratio ≈ size / 500).
``--smoke``: 20 and 40 phases, one repeat (does it run?).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from taskmark.definition import _expressions, _templates, load_definition

SIZES = (500, 1000, 2000)
REPEATS = 3
SMOKE_SIZES = (20, 40)


def generate(phases: int) -> str:
    """A definition with ``phases`` phases; each depends on the one before and one far back."""
    parts = [
        "# Generated\n\n```yaml\nname: generated\nrequirements:\n  topic: string\n  depth: {type: integer, default: 2}\n```\n\n"
    ]
    for i in range(phases):
        deps = [f"P{i - 1}"] if i else []
        if i >= 10:
            deps.append(f"P{i - 10}")
        # Each phase merges its answers by agent: a field is read through the agent's answer.
        refs = "".join(f' {{{{ phases["{d}"]["worker"].summary }}}}' for d in deps)
        parts.append(
            f"## Phase: P{i}\ndependsOn: [{', '.join(deps)}]\nparallel: {'true' if i % 2 else 'false'}\n\n"
            f"### Steps\n- agent: worker - Work on {{{{ topic }}}} at depth {{{{ depth }}}}.{refs}\n"
            f"- agent: helper - Check {{{{ inputs.topic }}}}\n"
            f"- validation: len(output.summary) > 0 and output.score >= 0\n- aggregate: merge\n\n"
            f"### Outputs\n- summary: string\n- score: number\n\n"
            f"### Agents\n- worker\n- helper\n\n"
        )
    return "".join(parts)


def clear_caches() -> None:
    """Forget analysed templates and expressions, so that no run profits from the one before."""
    _templates._analyse.cache_clear()
    _expressions._analyse.cache_clear()


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: does it run?")
    args = parser.parse_args()
    sizes, repeats = (SMOKE_SIZES, 1) if args.smoke else (SIZES, REPEATS)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "agents").mkdir()
        for agent in ("worker", "helper"):
            (root / "agents" / f"{agent}.md").write_text(f"---\ntemperature: 0.2\n---\nYou are the {agent}.\n")
        rows = []
        for size in sizes:
            path = root / f"gen-{size}.md"
            path.write_text(generate(size))
            times = []
            for _ in range(repeats):
                clear_caches()  # every run parses every template and expression afresh
                start = time.perf_counter()
                definition = load_definition(path)
                times.append(time.perf_counter() - start)
            assert len(definition.phases) == size
            rows.append((size, path.stat().st_size, statistics.median(times)))
    base = rows[0][2]
    ratio = f"ratio vs {sizes[0]}"
    print(f"{'phases':>7} {'bytes':>10} {'parse+validate s':>17} {ratio:>13} {'per phase ms':>13}")
    for size, nbytes, seconds in rows:
        print(f"{size:>7} {nbytes:>10} {seconds:>17.3f} {seconds / base:>13.2f} {seconds / size * 1000:>13.3f}")
    print(f"python {sys.version.split()[0]}, median of {repeats}")


if __name__ == "__main__":
    main()
