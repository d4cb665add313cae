"""LLMProvider passes Prefect's standard block tests."""

from __future__ import annotations

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from taskmark.blocks import LLMProvider


class TestLLMProviderBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return LLMProvider

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The suite's version downloads the logo (and is skipped without Pillow); tests
        # have no network. taskmark ships no logo: the UI shows its generic block icon.
        assert block._logo_url is None


def test_secret_fields_are_declared_secret() -> None:
    schema = LLMProvider.model_json_schema()
    assert set(schema["secret_fields"]) >= {"api_key", "extra_headers.*"}


def test_repr_and_dump_hide_the_key() -> None:
    canary = "sk-canary-0123456789abcdef"
    block = LLMProvider(model="gpt-4o-mini", api_key=canary, extra_headers={"Authorization": f"Bearer {canary}"})
    assert canary not in repr(block)
    assert canary not in str(block)
    assert canary not in block.model_dump_json()
    assert block.api_key is not None and block.api_key.get_secret_value() == canary


def test_defaults_are_the_local_model_with_a_real_timeout() -> None:
    block = LLMProvider()
    assert block.model == "local/smollm2-135m-instruct"
    assert 0 < block.timeout_s <= 600
