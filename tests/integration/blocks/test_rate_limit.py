"""rate_limit is a Prefect global concurrency limit, shared by every worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import rate_limit

from support.fake_openai import FakeOpenAIServer
from taskmark.blocks import LLMProvider
from taskmark.blocks._rate_limit import limit_name

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.asyncio(loop_scope="session")]

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def limit(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    # One model (so one limit) per test: a wait cancelled in one test stays queued in
    # Prefect's slot-acquisition service and would hold up the next test on the same limit.
    model = f"openai/rate-limited-{request.node.name[-40:]}"
    yield model
    async with get_client() as client:
        await client.delete_global_concurrency_limit_by_name(limit_name(model))


async def test_rate_limit_creates_a_decaying_limit_and_holds_calls_back(fake_llm: FakeOpenAIServer, limit: str) -> None:
    provider = LLMProvider(model=limit, api_base=fake_llm.api_base, rate_limit=2)
    # Concurrent first calls in one process create the limit once, not once each.
    await asyncio.gather(provider.acomplete(HI), provider.acomplete(HI))
    async with get_client() as client:
        gcl = await client.read_global_concurrency_limit_by_name(limit_name(limit))
    assert (gcl.limit, gcl.slot_decay_per_second) == (2, pytest.approx(2 / 60))
    assert gcl.active
    # Both slots are taken and one frees every 30 s: any process asking now is held back.
    # (Asked with a timeout, so that no acquisition is left queued after the test.)
    with pytest.raises(TimeoutError):
        await rate_limit(limit_name(limit), occupy=1, timeout_seconds=1, strict=True)
    assert fake_llm.count == 2


async def test_changing_the_rate_updates_the_limit(fake_llm: FakeOpenAIServer, limit: str) -> None:
    await LLMProvider(model=limit, api_base=fake_llm.api_base, rate_limit=600).acomplete(HI)
    await LLMProvider(model=limit, api_base=fake_llm.api_base, rate_limit=1200).acomplete(HI)
    async with get_client() as client:
        gcl = await client.read_global_concurrency_limit_by_name(limit_name(limit))
    assert (gcl.limit, gcl.slot_decay_per_second) == (1200, pytest.approx(20.0))
