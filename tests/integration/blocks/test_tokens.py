"""Counting against a configured OpenAI-compatible server never calls it; a local server
that fails to tokenize fails as a ``ProviderError`` without its token."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from support.fake_openai import FakeOpenAIServer
from taskmark.blocks import LLMProvider, LocalEndpoint, _tokens
from taskmark.errors import ProviderError

KEY = "sk-test-key-0123456789abcdef"
TOKEN = "local-token-canary-0123456789"
TEXTS = ["Summarise the quarter.", "Revenue rose 12% on strong demand. " * 50, ""]


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every address a socket connects to during the test (from any thread)."""
    seen: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        seen.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield seen


def _provider(fake: FakeOpenAIServer, **fields: Any) -> LLMProvider:
    return LLMProvider(model="openai/fake-model", api_base=fake.api_base, api_key=KEY, **fields)


async def test_counting_sends_nothing_to_the_server(fake_llm: FakeOpenAIServer, connections: list[Any]) -> None:
    provider = _provider(fake_llm)
    counts = await provider.count_tokens(TEXTS)
    assert counts[0] > 0 and counts[1] > 10 * counts[0] and counts[2] == 0
    assert await provider.context_window() is None  # litellm does not know the model
    assert fake_llm.count == 0
    assert not [a for a in connections if isinstance(a, tuple) and a[1] == fake_llm.port]

    # The spy sees a real call, so its silence above means something.
    await provider.acomplete([{"role": "user", "content": "hi"}], max_retries=0)
    assert fake_llm.count == 1
    assert [a for a in connections if isinstance(a, tuple) and a[1] == fake_llm.port]


async def test_the_block_states_a_window_litellm_does_not_know(fake_llm: FakeOpenAIServer) -> None:
    assert await _provider(fake_llm, max_input_tokens=32_768).context_window() == 32_768
    assert fake_llm.count == 0


def _local_at(monkeypatch: pytest.MonkeyPatch, api_base: str) -> None:
    endpoint = LocalEndpoint(api_base=api_base, litellm_model="openai/smollm2", token=TOKEN)
    monkeypatch.setattr(_tokens, "local_endpoint", lambda: endpoint)


async def test_a_server_without_tokenize_is_a_permanent_provider_error(
    fake_llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _local_at(monkeypatch, fake_llm.api_base)  # it answers 404 to /tokenize
    with pytest.raises(ProviderError) as raised:
        await LLMProvider().count_tokens(["hello"])
    assert raised.value.status_code == 404 and not raised.value.transient
    assert "local/smollm2-135m-instruct" in str(raised.value)
    assert TOKEN not in str(raised.value)


async def test_a_server_that_is_gone_is_a_transient_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    _local_at(monkeypatch, f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ProviderError) as raised:
        await LLMProvider().count_tokens(["hello"])
    assert raised.value.transient
    assert TOKEN not in str(raised.value)
