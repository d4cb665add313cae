"""Provider resolution and saved blocks, against Prefect's real local server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prefect.client.orchestration import get_client

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import LOCAL_MODEL, LLMProvider, ProviderOverrides, aresolve_provider
from taskmark.errors import ProviderError

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.asyncio(loop_scope="session")]

KEY = "sk-saved-key-0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def saved_blocks() -> AsyncIterator[list[str]]:
    """Names of blocks a test saves; deleted afterwards so tests do not see each other's."""
    names: list[str] = []
    yield names
    async with get_client() as client:
        for name in names:
            try:
                await client.delete_block_document((await client.read_block_document_by_name(name, "llm-provider")).id)
            except Exception:  # noqa: BLE001 - already gone
                pass


async def _save(block: LLMProvider, name: str, names: list[str]) -> None:
    await block.save(name, overwrite=True)
    names.append(name)


async def test_saved_block_keeps_its_secret_and_the_api_hides_it(saved_blocks: list[str]) -> None:
    await _save(
        LLMProvider(model="gpt-4o-mini", api_key=KEY, extra_headers={"X-Auth": KEY}, rate_limit=60),
        "secret-check",
        saved_blocks,
    )
    loaded = await LLMProvider.aload("secret-check")
    assert loaded.api_key is not None and loaded.api_key.get_secret_value() == KEY
    assert loaded.extra_headers is not None and loaded.extra_headers.get_secret_value() == {"X-Auth": KEY}
    async with get_client() as client:
        document = await client.read_block_document_by_name("secret-check", "llm-provider", include_secrets=False)
    assert KEY not in document.model_dump_json()
    assert document.data["api_key"] == "********"


async def test_explicit_block_name_wins_and_the_definition_model_overrides_its_default(
    saved_blocks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "env-model")  # an override loses to a named block
    await _save(LLMProvider(model="block-model", api_base="http://127.0.0.1:1/v1"), "team", saved_blocks)
    assert (await aresolve_provider("team")).model == "block-model"
    chosen = await aresolve_provider("team", model="definition-model")
    assert (chosen.model, chosen.api_base) == ("definition-model", "http://127.0.0.1:1/v1")
    assert chosen.label == "team"


async def test_a_missing_named_block_is_an_error() -> None:
    with pytest.raises(ProviderError, match=r"no LLMProvider block named 'nope': create it"):
        await aresolve_provider("nope")


async def test_overrides_win_over_a_saved_default(saved_blocks: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    await _save(LLMProvider(model="default-model"), "default", saved_blocks)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "env-model")
    assert (await aresolve_provider(None, model="def-model")).model == "env-model"
    flags = ProviderOverrides(model="flag-model")
    assert (await aresolve_provider("default", overrides=flags)).model == "flag-model"


async def test_saved_default_block_then_provider_keys_then_local(
    saved_blocks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing configured: the local model, whatever the definition asked for.
    assert (await aresolve_provider(None, model="gpt-4o-mini")).model == LOCAL_MODEL
    # A key litellm knows for the definition's model.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0123456789abcdef")
    keyed = await aresolve_provider(None, model="gpt-4o-mini")
    assert (keyed.model, keyed.api_key, keyed.api_base) == ("gpt-4o-mini", None, None)
    # A key for another provider does not make an Anthropic model answerable.
    assert (await aresolve_provider(None, model="anthropic/claude-3-5-haiku-latest")).model == LOCAL_MODEL
    # Nor a Zhipu one, whose key litellm itself does not check.
    assert (await aresolve_provider(None, model="zai/glm-4.6")).model == LOCAL_MODEL
    monkeypatch.setenv("ZAI_API_KEY", "zai-key-0123456789")
    assert (await aresolve_provider(None, model="zai/glm-4.6")).model == "zai/glm-4.6"
    # A saved default block wins over provider keys; the definition's model overrides its own.
    await _save(LLMProvider(model="block-default", api_base="http://127.0.0.1:1/v1"), "default", saved_blocks)
    chosen = await aresolve_provider("default", model="gpt-4o-mini")
    assert (chosen.model, chosen.api_base) == ("gpt-4o-mini", "http://127.0.0.1:1/v1")
    assert (await aresolve_provider(None)).model == "block-default"


async def test_fallback_to_a_saved_block(fake_llm: FakeOpenAIServer, saved_blocks: list[str]) -> None:
    await _save(
        LLMProvider(model="openai/backup", api_base=fake_llm.api_base, api_key="sk-backup-0123456789abcdef"),
        "backup",
        saved_blocks,
    )
    fake_llm.default = lambda req: (
        Reply(status=503) if req.body["model"] == "primary" else Reply(content="backup answered")
    )
    primary = LLMProvider(
        model="openai/primary",
        api_base=fake_llm.api_base,
        api_key=KEY,
        max_retries=0,
        fallbacks=["llm-provider/backup"],
    )
    completion = await primary.acomplete(HI)
    assert completion.text == "backup answered"
    assert completion.model == "openai/backup"
    assert completion.provider == "backup"
    assert fake_llm.requests[-1].headers["authorization"] == "Bearer sk-backup-0123456789abcdef"


async def test_a_missing_fallback_block_is_named(fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = lambda _req: Reply(status=503)
    primary = LLMProvider(
        model="openai/primary", api_base=fake_llm.api_base, max_retries=0, fallbacks=["llm-provider/ghost"]
    )
    with pytest.raises(ProviderError, match=r"fallback block 'llm-provider/ghost' does not exist"):
        await primary.acomplete(HI)
