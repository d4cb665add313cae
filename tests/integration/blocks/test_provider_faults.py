"""LLMProvider through litellm over real HTTP against the fake OpenAI-compatible server:
success, structured output, every failure class, fallbacks, accounting and events."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import BaseModel

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from taskmark.blocks import (
    COMPLETED_EVENT,
    FAILED_EVENT,
    CallLabels,
    LLMProvider,
    ProviderOverrides,
    resolve_provider,
)
from taskmark.errors import ProviderError

KEY = "sk-test-key-0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]

# One event loop for the module: litellm keeps a logging worker bound to the loop it
# first ran on, and a loop per test leaves one pending task behind each time.
pytestmark = pytest.mark.asyncio(loop_scope="session")


class Verdict(BaseModel):
    category: str
    confidence: float


def _provider(fake: FakeOpenAIServer, **kw: Any) -> LLMProvider:
    settings: dict[str, Any] = {
        "model": "openai/fake-model",
        "api_base": fake.api_base,
        "api_key": KEY,
        "retry_backoff_s": 0.001,
        "timeout_s": 5,
    }
    settings.update(kw)
    return LLMProvider(**settings)


async def test_success(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(content="Hello there", prompt_tokens=12, completion_tokens=3))
    completion = await _provider(fake_llm).acomplete(HI, temperature=0.2, max_tokens=20)
    assert completion.text == "Hello there"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 3)
    assert completion.usage.total_tokens == 15
    assert completion.model == "openai/fake-model"
    assert completion.attempts == 1
    assert completion.cost_usd is None  # an unpriced custom model
    assert completion.latency_s > 0
    (request,) = fake_llm.requests
    assert request.body["model"] == "fake-model"
    assert request.messages == HI
    assert request.body["temperature"] == 0.2
    assert request.body["max_tokens"] == 20
    assert request.headers["authorization"] == f"Bearer {KEY}"


async def test_json_schema_output(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(content='{"category": "macro", "confidence": 0.8}'))
    completion = await _provider(fake_llm).acomplete(HI, schema=Verdict)
    assert completion.parsed == Verdict(category="macro", confidence=0.8)
    assert completion.repaired is False
    fmt = fake_llm.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["required"] == ["category", "confidence"]


async def test_prompt_mode_puts_the_schema_in_the_system_message(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(content='{"category": "news", "confidence": 1}'))
    provider = _provider(fake_llm, structured_output="prompt")
    completion = await provider.acomplete(HI, schema=Verdict)
    assert completion.parsed.category == "news"
    body = fake_llm.requests[0].body
    assert "response_format" not in body
    assert body["messages"][0]["role"] == "system"
    assert "JSON Schema" in body["messages"][0]["content"]


async def test_unparseable_reply_gets_one_repair(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(
        Reply(content="The category is macro.", prompt_tokens=10, completion_tokens=5),
        Reply(content='{"category": "macro", "confidence": 0.5}', prompt_tokens=30, completion_tokens=9),
    )
    provider = _provider(fake_llm, input_cost_per_million_tokens=1.0, output_cost_per_million_tokens=2.0)
    completion = await provider.acomplete(HI, schema=Verdict)
    assert completion.parsed == Verdict(category="macro", confidence=0.5)
    assert completion.repaired is True
    assert completion.attempts == 2
    assert [(r.purpose, r.outcome) for r in completion.requests] == [("answer", "answered"), ("repair", "answered")]
    assert completion.usage.total_tokens == 54  # both calls are counted
    assert completion.cost_usd == pytest.approx((40 * 1.0 + 14 * 2.0) / 1e6)
    repair = fake_llm.requests[1].messages
    assert repair[-2] == {"role": "assistant", "content": "The category is macro."}
    assert "cannot be used (not JSON" in repair[-1]["content"]


async def test_a_reply_cut_off_at_max_tokens_is_asked_for_afresh(fake_llm: FakeOpenAIServer) -> None:
    loop = '{"category": "' + "1." * 200
    fake_llm.push(
        Reply(content=loop, finish_reason="length"),
        Reply(content='{"category": "macro", "confidence": 0.5}'),
    )
    completion = await _provider(fake_llm).acomplete(HI, schema=Verdict, max_tokens=50)
    assert completion.parsed == Verdict(category="macro", confidence=0.5)
    assert completion.repaired is True
    repair = fake_llm.requests[1].messages
    assert repair[: len(HI)] == HI
    assert all("1.1.1" not in m["content"] for m in repair), "the loop was fed back to the model"
    assert "ran past the length limit" in repair[-1]["content"]


async def test_reply_still_unparseable_after_repair_is_a_clear_error(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(content="no JSON here"), Reply(content="Still not JSON, sorry! " * 20))
    with pytest.raises(ProviderError) as info:
        await _provider(fake_llm, max_retries=3).acomplete(HI, schema=Verdict)
    message = str(info.value)
    assert "did not return valid JSON after one repair (not JSON" in message
    assert "the reply begins 'Still not JSON, sorry! Still not JSON" in message
    assert info.value.transient is False
    assert fake_llm.count == 2  # a parse failure is not retried
    assert [(r.purpose, r.outcome) for r in info.value.requests] == [("answer", "answered"), ("repair", "answered")]


async def test_429_then_success_honours_retry_after(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(status=429, headers={"Retry-After": "1"}), Reply(content="after the wait"))
    completion = await _provider(fake_llm).acomplete(HI)
    assert completion.text == "after the wait"
    assert completion.attempts == 2
    failed, answered = completion.requests
    assert (failed.outcome, failed.status_code, failed.transient) == ("failed", 429, True)
    assert (answered.outcome, answered.status_code, answered.error) == ("answered", None, None)
    first, second = fake_llm.requests
    # A lower bound the server measured: what Retry-After promises, whatever the machine's speed.
    assert second.arrived_at - first.arrived_at >= 1.0, "the client came back before Retry-After"


async def test_retry_after_ms(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(status=429, headers={"retry-after-ms": "300"}), Reply(content="ok"))
    await _provider(fake_llm).acomplete(HI)
    first, second = fake_llm.requests
    assert second.arrived_at - first.arrived_at >= 0.3, "the client came back before retry-after-ms"


async def test_retry_after_beyond_the_cap_moves_on(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(status=429, headers={"Retry-After": "3600"}))
    with pytest.raises(ProviderError, match=r"gave up after 1 attempt: Retry-After exceeds the backoff cap"):
        await _provider(fake_llm, max_backoff_s=5).acomplete(HI)
    assert fake_llm.count == 1


@pytest.mark.parametrize("status", [500, 502, 503, 529])
async def test_5xx_past_the_retry_budget(fake_llm: FakeOpenAIServer, status: int) -> None:
    fake_llm.default = lambda _req: Reply(status=status, error_message="overloaded")
    with pytest.raises(ProviderError) as info:
        await _provider(fake_llm, max_retries=2).acomplete(HI)
    assert fake_llm.count == 3
    assert info.value.status_code == status
    assert info.value.transient is True
    assert [(r.outcome, r.status_code) for r in info.value.requests] == [("failed", status)] * 3
    assert all(r.error is not None and "overloaded" in r.error for r in info.value.requests)
    assert str(info.value) == (
        f"openai/fake-model: model 'openai/fake-model' failed (HTTP {status}, transient): "
        "overloaded (gave up after 3 attempts)"
    )


async def test_timeout(fake_llm: FakeOpenAIServer) -> None:
    answered = threading.Event()  # the server answers only after the test: only the timeout can end the call

    def late(_request: RecordedRequest) -> Reply:
        answered.wait(120)
        return Reply(content="too late")

    fake_llm.default = late
    try:
        with pytest.raises(ProviderError) as info:
            await _provider(fake_llm, timeout_s=0.3, max_retries=1).acomplete(HI)
    finally:
        answered.set()
    assert fake_llm.count == 2
    assert info.value.status_code == 408
    assert "no answer within the timeout" in str(info.value)


async def test_garbage_reply_is_retried_then_succeeds(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.push(Reply(raw=b"<html>502 proxy error</html>"), Reply(content="clean"))
    completion = await _provider(fake_llm).acomplete(HI)
    assert completion.text == "clean"
    assert completion.attempts == 2


async def test_garbage_reply_every_time_fails_clearly(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda _req: Reply(raw=b"\x00\xffnot json at all")
    with pytest.raises(ProviderError, match=r"transient\).*gave up after 2 attempts") as info:
        await _provider(fake_llm, max_retries=1).acomplete(HI)
    assert info.value.transient is True


@pytest.mark.parametrize(
    ("status", "message", "code"),
    [
        (400, "Invalid value for 'temperature'", None),
        (401, f"Incorrect API key provided: {KEY}", "invalid_api_key"),
        (403, "Project does not have access", None),
        (404, "The model 'fake-model' does not exist", "model_not_found"),
        (400, "This model's maximum context length is 8192 tokens", "context_length_exceeded"),
        (429, "You exceeded your current quota, please check your plan and billing", "insufficient_quota"),
    ],
)
async def test_permanent_errors_are_not_retried(
    fake_llm: FakeOpenAIServer, status: int, message: str, code: str | None
) -> None:
    fake_llm.default = lambda _req: Reply(status=status, error_message=message, error_code=code)
    with pytest.raises(ProviderError) as info:
        await _provider(fake_llm, max_retries=5, fallbacks=["openai/other"]).acomplete(HI)
    assert fake_llm.count == 1
    assert info.value.transient is False
    assert info.value.status_code == status
    [request] = info.value.requests
    assert (request.outcome, request.status_code, request.transient) == ("failed", status, False)
    assert request.error is not None and KEY not in request.error
    text = str(info.value)
    assert text.startswith(f"openai/fake-model: model 'openai/fake-model' failed (HTTP {status}, permanent): ")
    assert KEY not in text and KEY not in repr(info.value)


async def test_fallback_model_answers_when_retries_are_spent(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda req: (
        Reply(status=503) if req.body["model"] == "fake-model" else Reply(content="from the fallback")
    )
    provider = _provider(fake_llm, max_retries=1, fallbacks=["openai/backup-model"])
    completion = await provider.acomplete(HI)
    assert completion.text == "from the fallback"
    assert completion.model == "openai/backup-model"
    assert completion.attempts == 3
    assert [r.body["model"] for r in fake_llm.requests] == ["fake-model", "fake-model", "backup-model"]
    assert [(r.model, r.outcome) for r in completion.requests] == [
        ("openai/fake-model", "failed"),
        ("openai/fake-model", "failed"),
        ("openai/backup-model", "answered"),
    ]
    # The fallback is sent with the block's own settings.
    assert fake_llm.requests[-1].headers["authorization"] == f"Bearer {KEY}"


async def test_every_fallback_failing(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda _req: Reply(status=500, error_message="down")
    provider = _provider(fake_llm, max_retries=0, fallbacks=["openai/b", "openai/c"])
    with pytest.raises(ProviderError, match=r"fallbacks \['openai/b', 'openai/c'\] failed too") as info:
        await provider.acomplete(HI)
    assert [r.body["model"] for r in fake_llm.requests] == ["fake-model", "b", "c"]
    assert [r.model for r in info.value.requests] == ["openai/fake-model", "openai/b", "openai/c"]
    assert info.value.attempts == 3


async def test_connection_refused_is_transient(fake_llm: FakeOpenAIServer) -> None:
    provider = LLMProvider(model="openai/x", api_base="http://127.0.0.1:9/v1", max_retries=1, retry_backoff_s=0.001)
    with pytest.raises(ProviderError) as info:
        await provider.acomplete(HI)
    assert info.value.transient is True
    assert "gave up after 2 attempts" in str(info.value)


async def test_extra_headers_params_and_no_key_placeholder(fake_llm: FakeOpenAIServer) -> None:
    provider = LLMProvider(
        model="local-llama",  # a bare name on a custom base means an OpenAI-compatible server
        api_base=fake_llm.api_base,
        extra_headers={"X-Team": "research"},
        extra_params={"seed": 7, "top_p": 0.5},
    )
    await provider.acomplete(HI)
    request = fake_llm.requests[0]
    assert request.body["model"] == "local-llama"
    assert request.body["seed"] == 7 and request.body["top_p"] == 0.5
    assert request.headers["x-team"] == "research"
    assert request.headers["authorization"] == "Bearer no-key-required"


async def test_overrides_cannot_carry_keys(fake_llm: FakeOpenAIServer) -> None:
    with pytest.raises(TypeError, match="cannot override \\['api_key'\\] per call"):
        await _provider(fake_llm).acomplete(HI, api_key="sk-other")


async def test_parallel_calls(fake_llm: FakeOpenAIServer) -> None:
    provider = _provider(fake_llm)
    await provider.acomplete(HI)  # litellm's import and first-call set-up are not measured
    fake_llm.reset()
    everyone = threading.Barrier(20)  # each call is answered once all 20 are at the server

    def reply(_request: RecordedRequest) -> Reply:
        everyone.wait(120)  # breaks (and the calls fail) if the client sends them one by one
        return Reply(content="p")

    fake_llm.default = reply
    results = await asyncio.gather(*[provider.acomplete(HI) for _ in range(20)])
    assert [r.text for r in results] == ["p"] * 20
    assert fake_llm.max_in_flight == 20, "calls were serialised"
    assert fake_llm.count == 20


async def test_cost_from_block_prices_and_from_litellm(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda _req: Reply(prompt_tokens=1000, completion_tokens=500)
    priced = _provider(fake_llm, input_cost_per_million_tokens=0.5, output_cost_per_million_tokens=1.5)
    assert (await priced.acomplete(HI)).cost_usd == pytest.approx(1000 * 0.5e-6 + 500 * 1.5e-6)
    known = _provider(fake_llm, model="openai/gpt-4o-mini")
    cost = (await known.acomplete(HI)).cost_usd
    assert cost is not None and cost > 0  # litellm's bundled price map


async def test_events_for_completed_and_failed_calls(fake_llm: FakeOpenAIServer, captured_events: Any) -> None:
    provider = _provider(fake_llm, input_cost_per_million_tokens=1.0, output_cost_per_million_tokens=1.0)
    labels = CallLabels(definition="daily", phase="Rapid Analysis", stage="inference", agent="macro")
    fake_llm.push(Reply(prompt_tokens=20, completion_tokens=5))
    await provider.acomplete(HI, labels=labels)
    fake_llm.push(Reply(status=401, error_message=f"bad key {KEY}"))
    with pytest.raises(ProviderError):
        await provider.acomplete(HI, labels=labels)

    (done,) = captured_events.named(COMPLETED_EVENT)
    assert done.resource["prefect.resource.id"] == "taskmark.llm.openai/fake-model"
    assert done.resource["taskmark.definition"] == "daily"
    assert done.resource["taskmark.phase"] == "Rapid Analysis"
    assert done.resource["taskmark.stage"] == "inference"
    assert done.payload["total_tokens"] == 25
    assert done.payload["cost_usd"] == pytest.approx(25e-6)
    assert done.payload["latency_s"] > 0
    (failed,) = captured_events.named(FAILED_EVENT)
    assert failed.payload["status_code"] == 401
    assert failed.payload["transient"] is False
    assert KEY not in failed.model_dump_json()


async def test_api_base_override_sends_every_call_there(
    fake_llm: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", KEY)
    provider = resolve_provider(None, model="my-served-model")
    assert provider.api_base == fake_llm.api_base
    assert KEY not in repr(provider)
    fake_llm.push(Reply(content="via override"))
    assert (await provider.acomplete(HI)).text == "via override"
    assert fake_llm.requests[0].body["model"] == "my-served-model"
    assert fake_llm.requests[0].headers["authorization"] == f"Bearer {KEY}"
    # A CLI flag wins over the environment; the environment fills what the flag leaves.
    flagged = resolve_provider(None, model="m", overrides=ProviderOverrides(model="flag-model"))
    assert (flagged.model, flagged.api_base) == ("flag-model", fake_llm.api_base)
