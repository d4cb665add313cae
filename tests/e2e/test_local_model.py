"""The embedded default, for real: SmolLM2-135M-Instruct served by llama.cpp (xllamacpp).

With no key and no block configured, a call through the providers layer is answered by
this model. Assertions are tolerant of a 135M model's quality: an answer exists, and
JSON constrained by the schema parses.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest
from pydantic import BaseModel

from taskmark.blocks import (
    LOCAL_MODEL,
    aresolve_provider,
    local_endpoint,
    stop_local_model,
)

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.asyncio(loop_scope="session")]


class City(BaseModel):
    name: str
    country: str


def _listening(api_base: str) -> bool:
    url = urlparse(api_base)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((url.hostname or "127.0.0.1", url.port or 80)) == 0


async def test_nothing_configured_means_the_local_model_answers() -> None:
    provider = await aresolve_provider(None, model="gpt-4o-mini")  # no key for it: local
    assert provider.model == LOCAL_MODEL

    short = await provider.acomplete(
        [{"role": "user", "content": "Name one colour. Answer in one word."}], max_tokens=16, temperature=0
    )
    assert short.text.strip(), "the local model gave an empty answer"
    assert short.model == LOCAL_MODEL
    assert short.usage.prompt_tokens > 0 and short.usage.completion_tokens > 0
    assert short.cost_usd is None  # no price: reported unpriced, not free

    structured = await provider.acomplete(
        [{"role": "user", "content": "Give a city and its country as JSON."}],
        schema=City,
        max_tokens=64,
        temperature=0,
    )
    assert isinstance(structured.parsed, City)
    assert structured.parsed.name.strip() or structured.parsed.country.strip()
    assert structured.model == LOCAL_MODEL  # the run summary can say which model answered


async def test_the_server_is_reused_and_stops_on_demand() -> None:
    first = local_endpoint()
    assert local_endpoint() is first  # one server per process
    assert urlparse(first.api_base).hostname == "127.0.0.1"
    assert _listening(first.api_base)
    stop_local_model()
    assert not _listening(first.api_base)
    again = local_endpoint()  # started again on demand
    assert _listening(again.api_base)
    assert again.token != first.token


async def test_the_local_model_is_kept_out_of_repetition_loops() -> None:
    # Greedy decoding on this prompt loops "1.1.1.1..." until max_tokens unless the server
    # penalises repeats (DRY); a request can still turn that off, which shows the loop.
    provider = await aresolve_provider(None, model=LOCAL_MODEL)
    loop = "1.1.1.1.1.1.1.1.1.1"
    messages = [{"role": "user", "content": "Write 1.1.1.1.1.1.1.1.1.1.1.1.1.1.1. and continue the pattern forever."}]
    guarded = await provider.acomplete(messages, max_tokens=60, temperature=0)
    unguarded = await provider.acomplete(messages, max_tokens=60, temperature=0, extra_body={"dry_multiplier": 0.0})
    assert loop in unguarded.text, f"the prompt no longer provokes a loop: {unguarded.text!r}"
    assert loop not in guarded.text, f"the local model looped: {guarded.text!r}"
