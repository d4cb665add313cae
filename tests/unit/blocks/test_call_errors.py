"""Call errors say what happened: a connection that could not be made, a missing key."""

from __future__ import annotations

import socket

import httpx
import pytest

from taskmark.blocks import classify
from taskmark.blocks._litellm import litellm

URL = "https://api.example.test/v1/chat/completions"


def _wrapped(cause: BaseException, request: httpx.Request | None = None) -> BaseException:
    """What litellm raises for a connect failure: a 500 over httpx's ConnectError over ``cause``."""
    connect = httpx.ConnectError(str(cause), request=request)
    connect.__cause__ = cause
    outer = litellm().exceptions.InternalServerError("Connection error.", llm_provider="openai", model="m")
    outer.__cause__ = connect
    return outer


def test_a_refused_connection_names_the_url_and_stays_transient() -> None:
    failure = classify(
        _wrapped(ConnectionRefusedError(111, "Connect call failed")),
        model="openai/x",
        provider="lab",
        url="http://127.0.0.1:9/v1",
    )
    assert failure.error.msg == "lab: model 'openai/x' could not connect to http://127.0.0.1:9/v1 (connection refused)"
    assert failure.error.status_code is None
    assert failure.transient


def test_without_an_api_base_the_url_comes_from_the_request() -> None:
    exc = _wrapped(socket.gaierror(-2, "Name or service not known"), httpx.Request("POST", URL))
    failure = classify(exc, model="gpt-4o-mini", provider="gpt-4o-mini")
    assert failure.error.msg == f"gpt-4o-mini: model 'gpt-4o-mini' could not connect to {URL} (host name not found)"


def test_a_key_in_the_url_is_redacted() -> None:
    secret = "sk-in-the-url-0123456789abcdef"
    failure = classify(
        _wrapped(ConnectionRefusedError()), model="m", provider="p", url=f"http://h/v1?key={secret}", secrets=[secret]
    )
    assert secret not in failure.error.msg


def test_a_connection_lost_after_connecting_is_not_a_connect_failure() -> None:
    exc = litellm().exceptions.APIConnectionError("reset by peer", llm_provider="openai", model="m")
    assert "could not connect" not in classify(exc, model="m", provider="p").error.msg


@pytest.mark.parametrize(
    ("exc", "model", "variable"),
    [
        (
            lambda: litellm().exceptions.InternalServerError(
                "Missing credentials. Please pass an `api_key`", llm_provider="openai", model="gpt-4o-mini"
            ),
            "gpt-4o-mini",
            "OPENAI_API_KEY",
        ),
        (
            lambda: litellm().exceptions.AuthenticationError(
                "AnthropicException - Missing Anthropic API Key - A call is being made to anthropic",
                llm_provider="anthropic",
                model="claude",
            ),
            "anthropic/claude-sonnet-4-5",
            "ANTHROPIC_API_KEY",
        ),
    ],
)
def test_a_missing_key_names_the_variable_litellm_reads(exc: object, model: str, variable: str) -> None:
    failure = classify(exc(), model=model, provider=model)  # type: ignore[operator]
    assert failure.error.msg == f"no API key for {model!r} (set {variable} or TASKMARK_LLM_API_KEY, or pass --api-key)"
    assert not failure.transient
    assert failure.error.status_code is None


def test_a_missing_key_on_a_saved_block_points_at_the_block() -> None:
    exc = litellm().exceptions.InternalServerError("Missing credentials.", llm_provider="openai", model="gpt-4o-mini")
    failure = classify(exc, model="gpt-4o-mini", provider="team", block="team")
    assert failure.error.msg == (
        "team: no API key for 'gpt-4o-mini' (set OPENAI_API_KEY, or the api_key of LLMProvider block 'team')"
    )
