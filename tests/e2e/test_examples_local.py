"""The README's main job, for real: an example definition run by the `taskmark` command with
nothing configured, answered by the local SmolLM2 model, on Prefect's real server.

A 135M model's answers are not judged; what is asserted is what taskmark promises: the run
completes, every phase's output has exactly its declared fields within their bounds, and
`--json` accounts for every call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskmark.definition import load_definition
from taskmark.tasks._answers import check_structure, output_schema

ROOT = Path(__file__).parents[2]
EXAMPLES = {
    "daily-market-analysis": ["--param", "question=Why did bond yields jump this morning?"],
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_completes_on_the_local_model(name: str, prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKMARK_", "OPENAI_"))}
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    path = ROOT / "definitions" / f"{name}.md"
    command = [str(Path(sys.executable).with_name("taskmark")), "run", str(path), *EXAMPLES[name], "--json"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["state"] == "COMPLETED"
    definition = load_definition(path)
    inputs = {n: r.default for n, r in definition.metadata.requirements.items() if not r.required}
    for phase in definition.phases:
        result = report["phases"][phase.name]
        assert result["state"] == "COMPLETED", phase.name
        schema = output_schema(phase.outputs, inputs)
        if schema is not None and not phase.options.parallel:
            assert check_structure(result["outputs"], schema) == [], phase.name
    agent_steps = sum(len(p.agent_steps()) for p in definition.phases)
    assert report["usage"]["calls"] + report["usage"]["failed_calls"] >= agent_steps
    assert report["usage"]["cost_usd"] == 0.0
