"""Token counts and context windows through litellm: deterministic, offline, no I/O.

The session's network guard (tests/conftest.py) fails any test that tries to leave the
machine, so each count here also proves that no tokenizer was downloaded.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from taskmark.blocks import LOCAL_CONTEXT_WINDOW, ChatModel, LLMProvider, _tokens
from taskmark.errors import ProviderError

TEXT = "Hello, world! Tokenizers differ: naïve café résumé 12345 — 漢字."
# The counts tiktoken gives TEXT: o200k_base (GPT-4o and later), cl100k_base (the rest).
O200K, CL100K = 20, 23


def test_llm_provider_is_a_chat_model() -> None:
    assert isinstance(LLMProvider(model="gpt-4o-mini"), ChatModel)


async def test_gpt_4o_mini_counts_with_its_own_encoding() -> None:
    provider = LLMProvider(model="gpt-4o-mini")
    assert await provider.count_tokens(["Hello, world!", "", TEXT, "Hello, world!"]) == [4, 0, O200K, 4]
    # The same model behind its provider prefix counts the same.
    assert await LLMProvider(model="openai/gpt-4o-mini").count_tokens([TEXT]) == [O200K]


async def test_counts_grow_with_the_text() -> None:
    texts = ["market " * n for n in (1, 10, 100, 10_000)]
    counts = await LLMProvider(model="gpt-4o-mini").count_tokens(texts)
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert counts[-1] >= 10_000


@pytest.mark.parametrize(
    ("model", "api_base"),
    [
        ("whatever-unknown", None),
        ("openai/whatever", "http://127.0.0.1:9/v1"),
        ("whatever", "http://127.0.0.1:9/v1"),  # a bare name on a server is openai/whatever
    ],
)
async def test_an_unknown_model_counts_with_cl100k(model: str, api_base: str | None) -> None:
    assert await LLMProvider(model=model, api_base=api_base).count_tokens([TEXT, ""]) == [CL100K, 0]


@pytest.mark.parametrize("model", ["groq/llama-3.1-8b-instant", "replicate/meta/llama-2-70b-chat", "command-r"])
async def test_a_tokenizer_that_would_be_downloaded_falls_back_at_once(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # litellm would fetch these from the Hugging Face Hub (and retry for ~23 s offline), in
    # native code the session's network guard cannot see: any fetch fails the test here.
    from litellm.rust_bridge import tokenizer as tokenizer_dispatch

    fetched: list[str] = []

    def from_pretrained(identifier: str, *args: object, **kwargs: object) -> object:
        fetched.append(identifier)
        raise AssertionError(f"tried to download the tokenizer {identifier!r}")

    monkeypatch.setattr(tokenizer_dispatch, "from_pretrained", from_pretrained)
    assert await LLMProvider(model=model).count_tokens([TEXT]) == [CL100K]
    assert fetched == []


async def test_claude_counts_with_the_bundled_anthropic_tokenizer() -> None:
    (count,) = await LLMProvider(model="anthropic/claude-sonnet-4-5").count_tokens([TEXT])
    assert count > 0


async def test_context_windows_come_from_the_bundled_map() -> None:
    assert await LLMProvider(model="gpt-4o-mini").context_window() == 128_000
    assert await LLMProvider(model="openai/gpt-4o-mini").context_window() == 128_000
    assert await LLMProvider(model="anthropic/claude-sonnet-4-5").context_window() == 200_000


@pytest.mark.parametrize(
    ("model", "api_base"),
    [
        ("whatever-unknown", None),
        ("openai/whatever", "http://127.0.0.1:9/v1"),
        # litellm would ask a server for these; unknown instead.
        ("ollama/llama3", None),
        ("huggingface/meta-llama/Llama-3.1-8B-Instruct", None),
    ],
)
async def test_an_unknown_window_is_none(model: str, api_base: str | None) -> None:
    assert await LLMProvider(model=model, api_base=api_base).context_window() is None


async def test_the_block_can_state_the_window() -> None:
    provider = LLMProvider(model="openai/whatever", api_base="http://127.0.0.1:9/v1", max_input_tokens=32_768)
    assert await provider.context_window() == 32_768
    assert await LLMProvider(model="gpt-4o-mini", max_input_tokens=1_000).context_window() == 1_000


async def test_the_local_window_needs_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_server() -> None:
        raise AssertionError("the local server was started for a context window")

    monkeypatch.setattr(_tokens, "local_endpoint", no_server)
    assert await LLMProvider().context_window() == LOCAL_CONTEXT_WINDOW == 8192


async def test_a_counting_failure_is_a_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskmark.blocks._litellm import litellm

    def broken(**_: object) -> int:
        raise RuntimeError("tokenizer exploded")

    monkeypatch.setattr(litellm(), "token_counter", broken)
    with pytest.raises(
        ProviderError, match=r"gpt-4o-mini: model 'gpt-4o-mini' failed \(RuntimeError, permanent\): tokenizer exploded"
    ):
        await LLMProvider(model="gpt-4o-mini").count_tokens([TEXT])


def test_counting_from_busy_worker_threads_does_not_deadlock() -> None:
    # The context assembler counts from inside asyncio.to_thread workers, blocking each
    # on a coroutine sent back to the loop; counting must not need a worker of that pool.
    provider = LLMProvider(model="gpt-4o-mini")

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))

        def in_worker() -> int:
            future = asyncio.run_coroutine_threadsafe(provider.count_tokens([TEXT]), loop)
            return future.result(timeout=60)[0]

        return await asyncio.gather(*(asyncio.to_thread(in_worker) for _ in range(3)))

    assert asyncio.run(main()) == [O200K] * 3
