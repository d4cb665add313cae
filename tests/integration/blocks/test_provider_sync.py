"""The synchronous entry points, against the fake OpenAI-compatible server."""

from __future__ import annotations

import pytest

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import LLMProvider, resolve_provider
from taskmark.errors import ProviderError

HI = [{"role": "user", "content": "hi"}]


def _provider(fake: FakeOpenAIServer) -> LLMProvider:
    return LLMProvider(model="openai/fake-model", api_base=fake.api_base, api_key="sk-test-key-0123456789abcdef")


def test_sync_complete(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(content="sync ok"))
    assert _provider(fake_llm).complete(HI).text == "sync ok"


def test_override_without_a_model_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", "http://127.0.0.1:1/v1")
    with pytest.raises(ProviderError, match="no model is named: set --model, TASKMARK_LLM_MODEL"):
        resolve_provider(None, model=None)
