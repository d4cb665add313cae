"""Every example in definitions/ runs to COMPLETED against an OpenAI-compatible server given
by --api-base, with the exact number of calls its phases imply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support.fake_openai import FakeOpenAIServer, schema_reply
from taskmark.cli import app

DEFINITIONS = Path(__file__).parents[3] / "definitions"

# Calls each phase makes when every answer passes its checks: one per agent step, a
# consensus call, and critique + refine once where critique runs `always`.
EXAMPLES = {
    "daily-market-analysis": (["-p", "question=Why did bond yields jump this morning?"], 1 + 1 + 4 + 1),
    "investment-committee": (
        ["-p", "company=NVIDIA Corporation", "-p", "ticker=NVDA", "-p", "thesis=Demand outgrows supply."],
        1 + 6 + 2 + 5 + 3 + (5 + 1) + (1 + 1 + 1),
    ),
    "content-generation": (["-p", "topic=Running Postgres on Kubernetes"], 3 + 3 + 3),
}


SLOW = {"daily-market-analysis", "investment-committee"}
"""Examples that take over ~10 s (17 s and 12 s on 2 cores)."""


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in sorted(EXAMPLES)]
)
def test_example_completes_with_exact_calls(
    name: str, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    fake_llm.default = schema_reply
    params, calls = EXAMPLES[name]
    args = ["run", str(DEFINITIONS / f"{name}.md"), *params, "--json", "--no-cache"]
    args += ["--model", "openai/fake-model", "--api-base", fake_llm.api_base, "--api-key", "sk-test-not-real"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["state"] == "COMPLETED"
    assert {phase["state"] for phase in report["phases"].values()} == {"COMPLETED"}
    assert report["usage"]["calls"] == calls == fake_llm.count
    assert report["usage"]["failed_calls"] == 0
