"""The block type reaches the Prefect server's catalogue: by `prefect block register -m`
and by the `prefect.collections` entry point that Prefect loads for every process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.asyncio(loop_scope="session")]


async def test_prefect_block_register_adds_the_llm_provider_type() -> None:
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "taskmark.blocks"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LLM Provider" in result.stdout
    async with get_client() as client:
        block_type = await client.read_block_type_by_slug("llm-provider")
        schemas = await client.read_block_schemas()
    assert block_type.name == "LLM Provider"
    assert "taskmark.blocks" in (block_type.code_example or "")
    schema = next(s for s in schemas if s.block_type_id == block_type.id)
    assert "api_key" in schema.fields["secret_fields"]
