"""Resume without re-calling: a retried run gets back every answer it already paid for."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import ProviderOverrides
from taskmark.runs._run import RetryError, aretry, arun

from .conftest import prompt_of

CHAIN = """# Chain

```yaml
name: chain
requirements:
  topic: {type: string, default: tides}
```

## Phase: One

### Steps
- agent: a - first on {{ topic }}

## Phase: Two
dependsOn: [One]

### Steps
- agent: a - second after {{ phases["One"] }}

## Phase: Three
dependsOn: [Two]

### Steps
- agent: b - third after {{ phases["Two"] }}

## Phase: Four
dependsOn: [Three]

### Steps
- agent: b - fourth after {{ phases["Three"] }}
"""


def _answers(broken: set[str]) -> object:
    def reply(request: object) -> Reply:
        prompt = prompt_of(request)  # type: ignore[arg-type]
        word = prompt.split()[0]
        if word in broken:
            return Reply(status=400, error_message="this prompt is refused", error_type="invalid_request_error")
        return Reply(content=f"{word} done")

    return reply


async def test_retry_calls_only_what_did_not_complete(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: object
) -> None:
    path: Path = write("chain", CHAIN)  # type: ignore[operator]
    llm.default = _answers({"fourth"})  # type: ignore[assignment]
    failed = await arun(path, overrides=overrides)
    assert failed.state == "FAILED" and failed.phases["Four"].state == "FAILED"
    assert [prompt_of(r).split()[0] for r in llm.requests] == [
        "first",
        "second",
        "third",
        "fourth",
    ]  # a 400 is not retried

    llm.reset()
    llm.default = _answers(set())  # type: ignore[assignment]
    assert failed.flow_run_id is not None
    retried = await aretry(failed.flow_run_id, overrides=overrides)
    assert retried is not None and retried.state == "COMPLETED"
    assert retried.flow_run_id == failed.flow_run_id  # the same run, not a new one
    assert [prompt_of(r).split()[0] for r in llm.requests] == ["fourth"]  # phases one to three: zero repeats
    assert retried.phases["Four"].outputs == "fourth done"
    assert retried.usage.calls == 1

    async with get_client() as client:
        run = await client.read_flow_run(failed.flow_run_id)  # type: ignore[arg-type]
    assert run.state is not None and run.state.is_completed() and run.run_count >= 2


@pytest.mark.slow
async def test_replay_after_edit_recalls_the_edited_phase_and_what_follows(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: object
) -> None:
    path: Path = write("edited", CHAIN.replace("name: chain", "name: edited"))  # type: ignore[operator]
    llm.default = _answers(set())  # type: ignore[assignment]
    first = await arun(path, overrides=overrides)
    assert first.state == "COMPLETED" and llm.count == 4
    path.write_text(path.read_text().replace("third after", "third, briefly, after"))
    llm.reset()
    llm.default = _answers(set())  # type: ignore[assignment]
    assert first.flow_run_id is not None
    again = await aretry(first.flow_run_id, overrides=overrides)
    assert again is not None and again.state == "COMPLETED"
    assert [prompt_of(r).split()[0] for r in llm.requests] == ["third,", "fourth"]


@pytest.mark.slow
async def test_a_new_run_asks_afresh(llm: FakeOpenAIServer, overrides: ProviderOverrides, write: object) -> None:
    path: Path = write("fresh", CHAIN.replace("name: chain", "name: fresh"))  # type: ignore[operator]
    llm.default = _answers(set())  # type: ignore[assignment]
    await arun(path, overrides=overrides)
    await arun(path, overrides=overrides)
    assert llm.count == 8


async def test_unknown_and_running_runs_cannot_be_retried(llm: FakeOpenAIServer) -> None:
    with pytest.raises(RetryError, match="no flow run"):
        await aretry("00000000-0000-0000-0000-000000000000")
    with pytest.raises(RetryError, match="no flow run"):
        await aretry("not-a-uuid")
