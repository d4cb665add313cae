"""Classification of provider failures, on litellm's own exception classes."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmark.blocks import classify, redact
from taskmark.blocks._errors import parse_retry_after
from taskmark.blocks._litellm import litellm

CANARY = "sk-canary-9f8e7d6c5b4a39281706"


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return httpx.Response(status, headers=headers or {}, request=request)


def _litellm_errors() -> dict[str, tuple[BaseException, int | None, bool]]:
    exc = litellm().exceptions
    common = {"llm_provider": "openai", "model": "m"}
    return {
        "429": (exc.RateLimitError("slow down", response=_response(429), **common), 429, True),
        "500": (exc.InternalServerError("oops", **common), 500, True),
        "503": (exc.ServiceUnavailableError("busy", **common), 503, True),
        "502": (exc.BadGatewayError("gateway", **common), 502, True),
        "529": (exc.APIError(529, "overloaded", **common), 529, True),
        "timeout": (exc.Timeout("timed out", **common), 408, True),
        "connection": (exc.APIConnectionError("reset by peer", **common), 500, True),
        "400": (exc.BadRequestError("bad", **common), 400, False),
        "401": (
            exc.AuthenticationError(f"Incorrect API key provided: {CANARY}", **common),
            401,
            False,
        ),
        "403": (exc.PermissionDeniedError("no", response=_response(403), **common), 403, False),
        "404": (exc.NotFoundError("no such model", **common), 404, False),
        "context": (exc.ContextWindowExceededError("too long", **common), 400, False),
        "budget": (exc.BudgetExceededError(current_cost=2.0, max_budget=1.0), 422, False),
        "quota": (
            exc.RateLimitError("You exceeded your current quota", response=_response(429), **common),
            429,
            False,
        ),
    }


@pytest.mark.parametrize("case", list(_litellm_errors()))
def test_classification(case: str) -> None:
    exc, status, transient = _litellm_errors()[case]
    failure = classify(exc, model="m", provider="prov", secrets=[CANARY])
    assert failure.error.transient is transient
    assert failure.error.status_code == status
    assert failure.error.model == "m"
    assert failure.error.msg.startswith("prov: model 'm' failed (")
    assert CANARY not in str(failure.error)
    assert CANARY not in repr(failure.error)


def test_unknown_exceptions_are_permanent() -> None:
    failure = classify(ValueError("what is this"), model="m", provider="p")
    assert failure.error.transient is False


def test_plain_connection_errors_are_transient() -> None:
    assert classify(ConnectionResetError("reset"), model="m", provider="p").transient


def test_retry_after_is_read_from_the_response_headers() -> None:
    exc = litellm().exceptions.RateLimitError(
        "slow", llm_provider="openai", model="m", response=_response(429, {"Retry-After": "12"})
    )
    assert classify(exc, model="m", provider="p").retry_after_s == 12.0


def test_retry_after_ms_wins_over_seconds() -> None:
    exc = litellm().exceptions.RateLimitError(
        "slow",
        llm_provider="openai",
        model="m",
        response=_response(429, {"retry-after-ms": "250", "retry-after": "9"}),
    )
    assert classify(exc, model="m", provider="p").retry_after_s == 0.25


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    parsed = parse_retry_after(when)
    assert parsed is not None and 25 <= parsed <= 31
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0


def test_a_long_reason_is_cut() -> None:
    exc = litellm().exceptions.BadRequestError("x" * 5000, llm_provider="openai", model="m")
    assert len(classify(exc, model="m", provider="p").error.msg) < 400


@given(secret=st.text(min_size=4, max_size=40).filter(lambda s: s.strip() == s and "*" not in s))
def test_redact_removes_any_known_secret(secret: str) -> None:
    text = f"error: key {secret} rejected; again: {secret}!"
    assert secret not in redact(text, [secret])


def test_redact_masks_key_shaped_strings_and_bearer_tokens() -> None:
    text = "Bearer abc.def.ghi and sk-proj-ABCDEFGHIJKLMNOPQRSTUV and AIza" + "x" * 35
    out = redact(text)
    assert "abc.def.ghi" not in out
    assert "sk-proj-ABCDEFGHIJKLMNOPQRSTUV" not in out
    assert "AIza" not in out
    assert "APITimeoutError" == redact("APITimeoutError")
