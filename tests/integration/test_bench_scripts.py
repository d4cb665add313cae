"""Every benchmark in bench/ still runs: each script once with ``--smoke`` (tiny sizes, one
repeat, SQLite only), as a user would start it, printing its table. Nothing is timed here:
the numbers are for reading, not for CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~2 minutes together: several start a Prefect server of their own

ROOT = Path(__file__).parents[2]
SCRIPTS = sorted(path for path in (ROOT / "bench").glob("*.py") if not path.name.startswith("_"))

PLAIN_HEADERS = {"llm_overhead": "median ms", "parse": "parse+validate s"}
"""The header line of the scripts whose table is not a markdown one."""

DEADLINE_S = 600
"""How long one smoke run may take before the test fails (a deadline, not a measurement)."""


def test_every_script_is_covered() -> None:
    assert {path.stem for path in SCRIPTS} >= {"context", "load", "overhead", "parse", "refine_loop"}


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_bench_script_runs_with_smoke(script: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TASKMARK_"))}
    env.update(
        {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    )
    done = subprocess.run(
        [sys.executable, str(script.relative_to(ROOT)), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, (
        f"{script.name} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    lines = done.stdout.splitlines()
    header = PLAIN_HEADERS.get(script.stem)
    if header is None:
        assert any(line.startswith("| ") for line in lines), f"no table in the output of {script.name}:\n{done.stdout}"
    else:
        assert any(header in line for line in lines), (
            f"no '{header}' table in the output of {script.name}:\n{done.stdout}"
        )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
