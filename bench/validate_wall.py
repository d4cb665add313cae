"""`taskmark validate definitions/` process wall time vs `python -c pass`, median of 5.

Each is a fresh subprocess (what a user or an editor integration pays). A third row shows
what the validate process imported that it should not (prefect, litellm), from
``python -X importtime``.

    python bench/validate_wall.py [--repeats 5] [PATH] [--smoke]

Goal (issue 4): ≤ 0.5 s, importing neither prefect nor litellm.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats + 1):  # the first warms the OS file cache; not counted
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode not in (0, 2):
            raise SystemExit(f"{command} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", default="definitions/")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one repeat: does it run?")
    args = parser.parse_args()
    if args.smoke:
        args.repeats = 1
    env_python = sys.executable
    taskmark = shutil.which("taskmark") or str(Path(env_python).with_name("taskmark"))
    rows = [
        ("python -c pass", wall([env_python, "-c", "pass"], args.repeats)),
        (f"taskmark validate {args.path}", wall([taskmark, "validate", args.path], args.repeats)),
        (f"python -m taskmark.cli validate {args.path} (no console-script shim)", []),
    ]
    # The console script's own wrapper (importlib.metadata lookups) is measured by row 2;
    # row 3 runs the same CLI without it, when the package offers `python -m`.
    probe = subprocess.run([env_python, "-c", "import taskmark.cli.__main__"], capture_output=True, check=False)
    if probe.returncode == 0:
        rows[2] = (rows[2][0], wall([env_python, "-m", "taskmark.cli", "validate", args.path], args.repeats))
    else:
        rows.pop()
    base = statistics.median(rows[0][1])
    print(f"\n### process wall time, median of {args.repeats}; load {os.getloadavg()[0]:.2f}\n")
    print("| command | median (s) | min | max | − python -c pass (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, times in rows:
        med = statistics.median(times)
        print(f"| {label} | {med:.3f} | {min(times):.3f} | {max(times):.3f} | {med - base:.3f} |")

    trace = subprocess.run(
        [
            env_python,
            "-X",
            "importtime",
            "-c",
            f"import sys; sys.argv=['taskmark','validate',{args.path!r}]; from taskmark.cli import main; main()",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    heavy = [
        line for line in trace.stderr.splitlines() if "| prefect" in line or "| litellm" in line.replace("  ", " ")
    ]
    top: list[tuple[int, str]] = []
    for line in trace.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = [p.strip() for p in line.split("|")]
            try:
                top.append((int(parts[1]), parts[2]))
            except ValueError:
                pass
    print(f"\nprefect or litellm imported by validate: {'yes' if heavy else 'no'}")
    print(
        "largest cumulative imports (ms): "
        + ", ".join(f"{name.strip()} {us / 1000:.0f}" for us, name in sorted(top, reverse=True)[:8])
    )


if __name__ == "__main__":
    main()
