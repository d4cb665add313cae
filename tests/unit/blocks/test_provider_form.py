"""The LLM Provider block's form in the Prefect UI: readable field titles, and a description
that says which block runs use."""

from __future__ import annotations

import pytest

from taskmark.blocks import LLMProvider

TITLES = {
    "model": "Model",
    "api_base": "API base URL",
    "api_key": "API key",
    "temperature": "Temperature",
    "max_tokens": "Max output tokens",
    "max_input_tokens": "Context window (tokens)",
    "timeout_s": "Timeout (seconds)",
    "max_retries": "Max retries",
    "retry_backoff_s": "First retry delay (seconds)",
    "max_backoff_s": "Longest retry delay (seconds)",
    "fallbacks": "Fallbacks",
    "rate_limit": "Rate limit (requests per minute)",
    "extra_headers": "Extra HTTP headers",
    "extra_params": "Extra litellm parameters",
    "input_cost_per_million_tokens": "Input price (USD per million tokens)",
    "output_cost_per_million_tokens": "Output price (USD per million tokens)",
    "structured_output": "Structured output mode",
}


@pytest.mark.parametrize(("field", "title"), sorted(TITLES.items()))
def test_each_field_has_a_readable_title(field: str, title: str) -> None:
    assert LLMProvider.model_json_schema()["properties"][field]["title"] == title


def test_every_field_is_titled() -> None:
    assert set(LLMProvider.model_json_schema()["properties"]) == set(TITLES)


def test_the_description_says_runs_use_the_default_block() -> None:
    description = LLMProvider.get_description() or ""
    assert "Runs use the block named `default` unless a definition" in description
    assert "`provider: NAME`" in description
    assert LLMProvider.model_json_schema()["description"] == description
