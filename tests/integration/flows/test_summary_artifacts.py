"""The artifacts a run leaves for people, read back through the Prefect API: the final
phase's outputs first and readable, then the inputs, each phase, the raw JSON; usage by
phase and model, `unpriced` where no price is known; every phase's outputs, readable."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import ProviderOverrides
from taskmark.runs._run import arun

from .conftest import answer_by_prompt

DEFINITION = """# Tide brief

```yaml
name: tide-brief
requirements:
  topic: {type: string, default: tides}
  days: {type: integer, default: 3}
```

## Phase: Notes

### Steps
- agent: a - notes on {{ topic }}

## Phase: Brief
dependsOn: [Notes]

### Steps
- agent: b - brief on {{ topic }} over {{ days }} days from {{ phases["Notes"] }}

### Outputs
- headline: string - The headline
- points: array - What matters
  - items: {type: string}
"""
BRIEF = {"headline": "Tides turn twice a day", "points": ["The moon pulls the sea.", "The sun | helps."]}


async def artifacts_of(flow_run_id: str | None) -> dict[str, Any]:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a.data for a in found}


async def test_summary_leads_with_the_final_outputs_and_usage_is_by_phase_and_model(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    llm.default = answer_by_prompt(
        {
            "notes on": Reply(
                content="Tides follow the moon.\n\nSprings and neaps.", prompt_tokens=4, completion_tokens=2
            ),
            "brief on": Reply(content=json.dumps(BRIEF), prompt_tokens=6, completion_tokens=3),
        }
    )
    result = await arun(write("tide-brief", DEFINITION), {"topic": "tides"}, overrides=overrides)
    assert result.state == "COMPLETED"

    artifacts = await artifacts_of(result.flow_run_id)
    summary = artifacts["tide-brief-summary"]
    assert re.findall(r"^## (.*)$", summary, re.M) == ["Brief", "Inputs", "Phases", "Outputs as JSON"]
    final = summary.split("## Brief\n\n", 1)[1].split("## Inputs", 1)[0]
    assert (
        final
        == "**headline**: Tides turn twice a day\n\n**points**\n\n- The moon pulls the sea.\n- The sun | helps.\n\n"
    )
    assert "| input | value |\n| --- | --- |\n| topic | tides |\n| days | 3 |" in summary
    phases = summary.split("## Phases\n\n", 1)[1]
    assert re.search(r"^\| Notes \| completed \| \d+\.\d\d s \|  \|$", phases, re.M)
    assert re.search(r"^\| Brief \| completed \| \d+\.\d\d s \|  \|$", phases, re.M)
    raw = summary.split("## Outputs as JSON\n\n```json\n", 1)[1].rsplit("\n```", 1)[0]
    assert json.loads(raw) == {"Notes": "Tides follow the moon.\n\nSprings and neaps.", "Brief": BRIEF}

    assert artifacts["outputs-tide-brief"] == (  # every phase's outputs, readable: no JSON anything parses
        "# Outputs of Tide brief\n\n## Notes\n\nTides follow the moon.\n\nSprings and neaps.\n\n## Brief\n\n"
        "**headline**: Tides turn twice a day\n\n**points**\n\n- The moon pulls the sea.\n- The sun | helps.\n"
    )

    usage = artifacts["tide-brief-usage"]
    rows = usage if isinstance(usage, list) else json.loads(usage)
    assert [(r["phase"], r["model"], r["calls"], r["prompt tokens"], r["cost (USD)"]) for r in rows] == [
        ("Notes", "openai/fake-model", 1, 4, "unpriced"),  # litellm has no price for it: not $0
        ("Brief", "openai/fake-model", 1, 6, "unpriced"),
        ("total", "", 2, 10, "unpriced"),
    ]
    assert rows[-1]["unpriced calls"] == 2
