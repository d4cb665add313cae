"""The response cache is Prefect's own task cache: a real task in a real flow against
Prefect's local server, calling the fake LLM server over HTTP."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from prefect import flow, task

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import Completion, LLMProvider, Message, llm_cache_options

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.asyncio(loop_scope="session")]


@task
async def inference(
    provider: LLMProvider,
    messages: list[Message],
    schema: Any = None,
    overrides: dict[str, Any] | None = None,
) -> Completion:
    return await provider.acomplete(messages, schema=schema, **(overrides or {}))


def _provider(fake: FakeOpenAIServer) -> LLMProvider:
    return LLMProvider(model="openai/cache-model", api_base=fake.api_base, api_key="sk-cache-key-0123456789abcdef")


def _messages() -> list[Message]:
    # Unique per test: the cache lives in result storage shared by the whole session.
    return [{"role": "user", "content": f"question {uuid.uuid4()}"}]


async def test_identical_request_is_answered_from_cache_across_runs(fake_llm: FakeOpenAIServer) -> None:
    cached = inference.with_options(**llm_cache_options(timedelta(hours=1)))
    messages = _messages()
    fake_llm.push(Reply(content="first answer"))

    @flow
    async def run(messages: list[Message], overrides: dict[str, Any]) -> tuple[str, str, str]:
        provider = _provider(fake_llm)
        a = await cached(provider, messages, overrides=overrides)
        b = await cached(provider, messages, overrides=overrides)
        c = await cached(provider, messages, overrides={**overrides, "temperature": 0.9})
        return a.text, b.text, c.text

    first = await run(messages, {"max_tokens": 10})
    assert first[:2] == ("first answer", "first answer")
    assert fake_llm.count == 2  # the repeat was cached; the new temperature was not

    again = await run(messages, {"max_tokens": 10})  # a new flow run: the cache still holds
    assert again == first
    assert fake_llm.count == 2, "the server saw a second identical request"


async def test_refresh_calls_every_time(fake_llm: FakeOpenAIServer) -> None:
    uncached = inference.with_options(**llm_cache_options(None, refresh=True))
    messages = _messages()

    @flow
    async def run() -> None:
        provider = _provider(fake_llm)
        await uncached(provider, messages)
        await uncached(provider, messages)

    await run()
    assert fake_llm.count == 2


async def test_expired_answers_are_not_reused(fake_llm: FakeOpenAIServer) -> None:
    short = inference.with_options(**llm_cache_options(timedelta(microseconds=1)))
    messages = _messages()

    @flow
    async def run() -> None:
        provider = _provider(fake_llm)
        await short(provider, messages)
        await short(provider, messages)

    await run()
    assert fake_llm.count == 2
