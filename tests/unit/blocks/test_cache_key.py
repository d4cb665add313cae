"""The response cache's key: what must and must not change it."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from taskmark.blocks import LLM_REQUEST_CACHE, LLMProvider, llm_cache_options, request_cache_key

MESSAGES = [{"role": "user", "content": "hello"}]


class Out(BaseModel):
    answer: str


def _key(provider: LLMProvider, **kw: object) -> str:
    return request_cache_key(
        provider,
        kw.get("messages", MESSAGES),  # type: ignore[arg-type]
        kw.get("schema"),  # type: ignore[arg-type]
        kw.get("overrides"),  # type: ignore[arg-type]
    )


def test_equal_requests_have_equal_keys() -> None:
    assert _key(LLMProvider(model="m")) == _key(LLMProvider(model="m"))


def test_what_decides_the_answer_changes_the_key() -> None:
    base = _key(LLMProvider(model="m"))
    assert _key(LLMProvider(model="other")) != base
    assert _key(LLMProvider(model="m", api_base="http://127.0.0.1:1/v1")) != base
    assert _key(LLMProvider(model="m", temperature=0.3)) != base
    assert _key(LLMProvider(model="m"), messages=[{"role": "user", "content": "bye"}]) != base
    assert _key(LLMProvider(model="m"), schema=Out) != base
    assert _key(LLMProvider(model="m"), overrides={"max_tokens": 5}) != base
    assert _key(LLMProvider(model="m"), overrides={"model": "other"}) == _key(LLMProvider(model="other"))


def test_key_and_unset_overrides_do_not_change_the_key() -> None:
    base = _key(LLMProvider(model="m"))
    assert _key(LLMProvider(model="m", api_key="sk-one-0123456789abcdef")) == base
    assert _key(LLMProvider(model="m"), overrides={"temperature": None}) == base
    assert _key(LLMProvider(model="m", timeout_s=5, max_retries=0)) == base


def test_policy_needs_a_provider_and_messages() -> None:
    assert LLM_REQUEST_CACHE.compute_key(None, {"messages": MESSAGES}, {}) is None  # type: ignore[arg-type]
    key = LLM_REQUEST_CACHE.compute_key(None, {"provider": LLMProvider(model="m"), "messages": MESSAGES}, {})  # type: ignore[arg-type]
    assert key is not None and key.startswith("taskmark-llm-")


def test_scope_separates_answers() -> None:
    base = _key(LLMProvider(model="m"))
    assert request_cache_key(LLMProvider(model="m"), MESSAGES, scope="run-1/A/inference/w/0") != base
    scoped = LLM_REQUEST_CACHE.compute_key(
        None, {"provider": LLMProvider(model="m"), "messages": MESSAGES, "scope": "s"}, {}
    )  # type: ignore[arg-type]
    assert scoped == "taskmark-llm-" + request_cache_key(LLMProvider(model="m"), MESSAGES, scope="s")


def test_cache_options() -> None:
    assert llm_cache_options(None) == {
        "cache_policy": LLM_REQUEST_CACHE,
        "cache_expiration": None,
        "refresh_cache": False,
        "persist_result": True,
    }
    assert llm_cache_options(None, refresh=True)["refresh_cache"] is True
    options = llm_cache_options(3600)
    assert options["cache_expiration"] == timedelta(hours=1)
    assert options["cache_policy"] is LLM_REQUEST_CACHE
    assert options["persist_result"] is True
