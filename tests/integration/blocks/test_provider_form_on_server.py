"""What the Prefect UI's block form is built from: the block type and schema the server holds."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client

from taskmark.blocks import LLMProvider

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.asyncio(loop_scope="session")]


async def test_the_server_holds_titles_and_the_default_block_rule() -> None:
    await LLMProvider.register_type_and_schema()
    async with get_client() as client:
        block_type = await client.read_block_type_by_slug("llm-provider")
        schema = await client.get_most_recent_block_schema_for_block_type(block_type.id)
    assert "Runs use the block named `default` unless a definition" in (block_type.description or "")
    assert schema is not None
    properties = schema.fields["properties"]
    assert properties["api_key"]["title"] == "API key"
    assert properties["timeout_s"]["title"] == "Timeout (seconds)"
    assert properties["api_base"]["title"] == "API base URL"
