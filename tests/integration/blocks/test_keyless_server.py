"""A provider with an api base and no key reaches a keyless OpenAI-compatible server; the
placeholder the OpenAI client needs never shows in a message or a log line."""

from __future__ import annotations

import logging

import pytest

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import LLMProvider
from taskmark.errors import ProviderError

pytestmark = pytest.mark.asyncio(loop_scope="session")

HI = [{"role": "user", "content": "Hello"}]
PLACEHOLDER = "no-key-required"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "openai/served-model", "deepseek/deepseek-chat"])
async def test_a_hosted_model_name_on_an_api_base_needs_no_key(fake_llm: FakeOpenAIServer, model: str) -> None:
    completion = await LLMProvider(model=model, api_base=fake_llm.api_base).acomplete(HI)
    assert completion.text == "ok"
    assert fake_llm.count == 1


async def test_the_placeholder_never_reaches_a_message_or_a_log(
    fake_llm: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.push(Reply(status=401, error_message=f"Incorrect API key provided: {PLACEHOLDER}"))
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as info:
        await LLMProvider(model="gpt-4o-mini", api_base=fake_llm.api_base).acomplete(HI)
    assert "HTTP 401" in str(info.value)
    assert PLACEHOLDER not in str(info.value)
    assert PLACEHOLDER not in caplog.text
