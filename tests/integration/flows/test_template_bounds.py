"""Templates that would run long, from the user's side, on Prefect's real server: a render past
the sandbox's bounds fails its phase naming the step and its line; a render that runs long
never holds up the run, so maxExecutionTime holds; `taskmark context` says what is wrong
instead of hanging."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import ProviderOverrides
from taskmark.definition._sandbox import MAX_LOOP_ITERATIONS
from taskmark.runs._run import arun

from .conftest import prompt_of

# Validate cannot tell how far `n` goes; a run can (10,000 × 10,000 iterations).
NESTED = """# Grid

```yaml
name: grid
requirements:
  n: {type: integer, default: 10000}
```

## Phase: Plan

### Steps
- agent: a - plan the grid

## Phase: Grid
dependsOn: Plan

### Steps
- agent: b - Cells:{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}
  after {{ phases["Plan"] }}
"""

# No loop and no output: 2**40 macro calls, stopped only by time.
DOUBLING = """# Doubling

```yaml
name: doubling
maxExecutionTime: 2s
```

## Phase: Endless

### Steps
- agent: b - {% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}
"""


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, row in enumerate(path.read_text().splitlines(), 1) if needle in row)


def _taskmark(*args: str, api_base: str) -> subprocess.CompletedProcess[str]:
    """The `taskmark` command in another process (a render that held its event loop could not be
    timed out in this one), against this test's Prefect server and the fake LLM server."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "TASKMARK_LLM_API_BASE": api_base,
        "TASKMARK_LLM_MODEL": "openai/fake-model",
        "TASKMARK_LLM_API_KEY": "sk-test-not-real",
    }
    command = [str(Path(sys.executable).with_name("taskmark")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


async def test_a_render_past_its_bounds_fails_its_phase_naming_the_step_and_its_line(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    llm.default = lambda r: Reply(content="planned")
    path = write("grid", NESTED)
    result = await arun(path, overrides=overrides)
    assert result.state == "FAILED"
    assert result.phases["Plan"].state == "COMPLETED"
    assert result.phases["Grid"].state == "FAILED"
    assert result.phases["Grid"].error == (
        f"phase 'Grid' failed in promptTemplating: the prompt of agent 'b' ({path}:{_line_of(path, 'agent: b')}:3) "
        f"could not be rendered: the template looped more than {MAX_LOOP_ITERATIONS:,} times"
    )
    assert [prompt_of(r) for r in llm.requests] == ["plan the grid"]  # nothing sent for the grid


async def test_max_execution_time_holds_while_a_template_renders(
    llm: FakeOpenAIServer, write: Callable[[str, str], Path]
) -> None:
    path = write("doubling", DOUBLING)
    done = await asyncio.to_thread(_taskmark, "run", str(path), "--json", api_base=llm.api_base)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["phases"]["Endless"]["state"] == "TIMED_OUT"
    assert result["phases"]["Endless"]["error"] == ("phase 'Endless' timed out: the run exceeded maxExecutionTime (2s)")


async def test_context_preview_says_a_template_went_past_its_bounds_instead_of_hanging(
    llm: FakeOpenAIServer, write: Callable[[str, str], Path]
) -> None:
    path = write("grid", NESTED)
    preview = await asyncio.to_thread(
        _taskmark, "context", str(path), "--phase", "Grid", "--json", api_base=llm.api_base
    )
    assert preview.returncode == 0, preview.stderr
    (step,) = json.loads(preview.stdout)["steps"]
    assert step["problem"] == (
        f"the prompt of agent 'b' ({path}:{_line_of(path, 'agent: b')}:3) could not be rendered: "
        f"the template looped more than {MAX_LOOP_ITERATIONS:,} times"
    )
    assert llm.requests == []
