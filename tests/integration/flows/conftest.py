"""Compiler tests: definitions written by the tests, run on Prefect's real server, answered
by the fake OpenAI-compatible server over HTTP through litellm."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import FlowRun
from pydantic import SecretStr

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from taskmark.blocks import ProviderOverrides


@pytest.fixture
def llm(fake_llm: FakeOpenAIServer, prefect_harness: None) -> Iterator[FakeOpenAIServer]:
    """The fake server, answering by a rule tests set with ``answer``."""
    yield fake_llm


@pytest.fixture
def overrides(llm: FakeOpenAIServer) -> ProviderOverrides:
    return ProviderOverrides(model="openai/fake-model", api_base=llm.api_base, api_key=SecretStr("sk-test-not-real"))


async def flow_run_of(name: str) -> FlowRun | None:
    """The newest run of the flow ``name`` on the test server, or None."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))
    return runs[0] if runs else None


def prompt_of(request: RecordedRequest) -> str:
    """The user message of a request."""
    return next(m["content"] for m in request.messages if m["role"] == "user")


def answer_by_prompt(
    rules: dict[str, Reply | Callable[[RecordedRequest], Reply]], default: Reply | None = None
) -> Callable[[RecordedRequest], Reply]:
    """A reply rule: the first key found in the prompt decides the reply."""

    def reply(request: RecordedRequest) -> Reply:
        text = prompt_of(request)
        for key, value in rules.items():
            if key in text:
                return value(request) if callable(value) else value
        return default or Reply(content="ok")

    return reply


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a definition (and agents `a`, `b`, `critic`, `reviser`, `chair`) to a folder."""
    agents = tmp_path / "agents"
    agents.mkdir()
    for name in ("a", "b", "critic", "reviser", "chair"):
        (agents / f"{name}.md").write_text(f"You are {name}.\n")

    def write(name: str, text: str) -> Path:
        path = tmp_path / f"{name}.md"
        path.write_text(text)
        return path

    return write


def run(coro: Any) -> Any:
    return asyncio.run(coro)
