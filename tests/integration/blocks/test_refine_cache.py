"""A refine loop under the response cache (`cache: {ttl}`): each round asks the model, even
when its request is the same as an earlier round's — `taskmark run` from the user's side."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from taskmark.cli import app

# The critique and refine prompts name neither the output nor the critique, so every round
# sends exactly the request of the round before it.
DEFINITION = """# Loop Cache

```yaml
name: loop-cache
cache: {{ttl: 1 hour}}
```

## Phase: Loop

### Steps
- agent: writer - Draft a number ({token})
- validation: output.n > 100

### Outputs
- n: integer

### Critique
- agent: critic - Critique the number ({token})

### Refine
maxRefinements: 2

- agent: reviser - Revise the number ({token})
"""


@pytest.fixture
def definition(tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Path:
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    for agent in ("writer", "critic", "reviser"):
        (tmp_path / "agents" / f"{agent}.md").write_text(f"You are the {agent}.\n")
    path = tmp_path / "loop.md"
    # A fresh token per test: the cache lives in result storage shared by the whole session.
    path.write_text(DEFINITION.format(token=uuid.uuid4().hex))
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    return path


def _prompt(request: RecordedRequest) -> str:
    return str(request.messages[-1]["content"])


def test_each_refine_round_asks_the_model(definition: Path, fake_llm: FakeOpenAIServer) -> None:
    revisions = iter([5, 500])  # round 1 still fails `output.n > 100`; round 2 passes

    def reply(request: RecordedRequest) -> Reply:
        prompt = _prompt(request)
        if prompt.startswith("Critique"):
            return Reply(content="Too small.")
        if prompt.startswith("Revise"):
            return Reply(content=json.dumps({"n": next(revisions)}))
        return Reply(content=json.dumps({"n": 1}))

    fake_llm.default = reply
    args = ["run", str(definition), "--json", "--model", "openai/fake-model", "--api-base", fake_llm.api_base]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    kinds = [_prompt(r).split()[0] for r in fake_llm.requests]
    assert kinds == ["Draft", "Critique", "Revise", "Critique", "Revise"]
    report = json.loads(result.stdout)
    assert report["phases"]["Loop"]["outputs"] == {"n": 500}


def test_a_second_run_reuses_each_round_in_its_place(definition: Path, fake_llm: FakeOpenAIServer) -> None:
    revisions = iter([5, 500])

    def reply(request: RecordedRequest) -> Reply:
        prompt = _prompt(request)
        if prompt.startswith("Revise"):
            return Reply(content=json.dumps({"n": next(revisions)}))
        return Reply(content="Too small." if prompt.startswith("Critique") else json.dumps({"n": 1}))

    fake_llm.default = reply
    args = ["run", str(definition), "--json", "--model", "openai/fake-model", "--api-base", fake_llm.api_base]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    calls = fake_llm.count

    again = CliRunner().invoke(app, args)  # within the TTL: every round's answer is stored

    assert again.exit_code == 0, again.output
    assert fake_llm.count == calls == 5
    assert json.loads(again.stdout)["phases"]["Loop"]["outputs"] == {"n": 500}
