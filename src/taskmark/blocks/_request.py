"""One HTTP request through litellm: its arguments, its answer, its cost, its log lines.

Kept apart from the block so that ``LLMProvider`` reads as policy (overrides, fallbacks,
retries, repair) and this module as mechanism.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import Failure
from ._local import is_local_model, local_endpoint
from ._types import Completion, Message, Usage

if TYPE_CHECKING:
    from ._provider import LLMProvider

__all__ = ["build_request", "call_cost", "completion_from", "log_failure"]

_NO_KEY_PLACEHOLDER = "no-key-required"


async def build_request(
    provider: LLMProvider, messages: Sequence[Message], fmt: dict[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """Litellm keyword arguments for one request, and the secrets they contain."""
    from ._litellm import has_provider_key, normalize_model, speaks_openai

    secrets: list[str] = []
    api_key: str | None
    api_base: str | None
    if is_local_model(provider.model):
        endpoint = await asyncio.to_thread(local_endpoint)
        model, api_base, api_key = endpoint.litellm_model, endpoint.api_base, endpoint.token
    else:
        api_base = provider.api_base
        model = normalize_model(provider.model, api_base)
        api_key = provider.api_key.get_secret_value() if provider.api_key else None
        if api_key is None and api_base and speaks_openai(model) and not has_provider_key(model):
            # A server of one's own often needs no key (`--api-base` alone), but the OpenAI
            # client refuses to send a request without one. The placeholder is redacted like
            # a key: it never reaches a message or a log line.
            api_key = _NO_KEY_PLACEHOLDER
    if api_key:
        secrets.append(api_key)
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in messages],
        "timeout": provider.timeout_s,
        # Retries are ours (one policy for every provider): none in litellm or openai.
        "num_retries": 0,
        "max_retries": 0,
        # Parameters a model does not take are dropped, not fatal (e.g. temperature
        # on reasoning models).
        "drop_params": True,
        **provider.extra_params,
    }
    if api_base:
        kwargs["api_base"] = api_base
    if api_key:
        kwargs["api_key"] = api_key
    if provider.temperature is not None:
        kwargs["temperature"] = provider.temperature
    if provider.max_tokens is not None:
        kwargs["max_tokens"] = provider.max_tokens
    if fmt is not None:
        kwargs["response_format"] = fmt
    if provider.extra_headers is not None:
        headers = {str(k): str(v) for k, v in provider.extra_headers.get_secret_value().items()}
        kwargs["extra_headers"] = headers
        secrets.extend(v for v in headers.values() if len(v) >= 8)
    return kwargs, secrets


def completion_from(provider: LLMProvider, response: Any) -> Completion:  # noqa: ANN401
    """The ``Completion`` for one litellm response (usage, cost, answering model)."""
    choice = response.choices[0]
    text = choice.message.content or ""
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or prompt + completion_tokens)
    return Completion(
        text=text,
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion_tokens, total_tokens=total),
        cost_usd=call_cost(provider, prompt, completion_tokens),
        model=provider.model,
        provider=provider._block_document_name,
        truncated=getattr(choice, "finish_reason", None) == "length",
    )


def call_cost(provider: LLMProvider, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The block's own prices if set, else litellm's; None if unknown (the local model has no
    price: it is reported unpriced, not free, unless its block sets prices)."""
    if provider.input_cost_per_million_tokens is not None or provider.output_cost_per_million_tokens is not None:
        per_in = (provider.input_cost_per_million_tokens or 0.0) / 1e6
        per_out = (provider.output_cost_per_million_tokens or 0.0) / 1e6
        return prompt_tokens * per_in + completion_tokens * per_out
    if is_local_model(provider.model):
        return None
    from ._litellm import cost_of

    return cost_of(provider.model, prompt_tokens, completion_tokens)


def log_failure(failure: Failure, attempt: int) -> None:
    """Log a failed attempt where the run's logs go (the Prefect UI inside a run)."""
    logger = _logger()
    if failure.transient:
        wait = f", server asked to wait {failure.retry_after_s:g} s" if failure.retry_after_s is not None else ""
        logger.warning("LLM attempt %d failed%s: %s", attempt, wait, failure.error.msg)
    else:
        logger.error("LLM call failed: %s", failure.error.msg)


def _logger() -> Any:  # noqa: ANN401
    # Inside a flow or task run the run logger sends the line to the Prefect UI.
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_logger, get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("taskmark.blocks")
