"""The local model counts with its own tokenizer (llama.cpp's ``/tokenize`` on the real
SmolLM2 server) and reports the context its server was started with."""

from __future__ import annotations

import httpx

from taskmark.blocks import LOCAL_CONTEXT_WINDOW, LLMProvider, local_endpoint

TEXT = "Hello, world! Tokenizers differ: naïve café résumé 12345 — 漢字."


async def test_counts_come_from_the_model_s_own_tokenizer() -> None:
    local = LLMProvider()
    (own,) = await local.count_tokens([TEXT])
    # tiktoken's encodings, as litellm counts GPT-4o and unknown models.
    (o200k,) = await LLMProvider(model="gpt-4o-mini").count_tokens([TEXT])
    (cl100k,) = await LLMProvider(model="whatever-unknown").count_tokens([TEXT])
    assert own > 0
    assert own not in (o200k, cl100k), (own, o200k, cl100k)

    # The same count the server gives when asked directly, without special tokens.
    endpoint = local_endpoint()
    response = httpx.post(
        f"{endpoint.server_url}/tokenize",
        json={"content": TEXT},
        headers={"Authorization": f"Bearer {endpoint.token}"},
        timeout=30,
        trust_env=False,
    )
    assert own == len(response.json()["tokens"])


async def test_counts_are_positive_and_grow_with_the_text() -> None:
    texts = ["The market moved on the news. " * n for n in (1, 4, 16, 64, 256)]
    counts = await LLMProvider().count_tokens([*texts, "", texts[0]])
    assert counts[-2] == 0 and counts[-1] == counts[0]
    growing = counts[: len(texts)]
    assert all(c > 0 for c in growing)
    assert growing == sorted(growing) and len(set(growing)) == len(growing), growing


async def test_the_window_is_the_server_s_per_slot_context() -> None:
    assert await LLMProvider().context_window() == LOCAL_CONTEXT_WINDOW == 8192
    endpoint = local_endpoint()
    props = httpx.get(
        f"{endpoint.server_url}/props",
        headers={"Authorization": f"Bearer {endpoint.token}"},
        timeout=30,
        trust_env=False,
    ).json()
    assert props["default_generation_settings"]["n_ctx"] == LOCAL_CONTEXT_WINDOW
