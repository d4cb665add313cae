"""Token counts and context windows, measured with the model a call will use.

Hosted models are counted by litellm (``token_counter``) and sized by its bundled model
map (``get_model_info``); the local model is counted by its own tokenizer, through the
llama.cpp server's ``/tokenize``. Nothing here may reach the network: counting runs
before every agent call, and a machine without internet must still plan its prompts.

- OpenAI models (``gpt-4o-mini``, ``openai/gpt-4o-mini``) use their tiktoken encoding
  (``o200k_base`` or ``cl100k_base``); litellm ships both files and points tiktoken at
  them, so nothing is downloaded.
- Claude models get litellm's bundled Anthropic tokenizer (an approximation: Anthropic
  publishes none for current models).
- Models whose tokenizer litellm would download from Hugging Face (Llama, Command R) and
  unknown models (an ``openai/NAME`` on a self-hosted server) are counted with
  ``cl100k_base``: close for most BPE vocabularies, never a download.

Work that can take a while (litellm's first import, ~4 s; a megabyte of text, ~20 ms;
starting the local server, ~0.5 s) runs on a small pool of its own, not on the event
loop nor in asyncio's default pool: callers count from inside ``asyncio.to_thread``
workers, and waiting there for a free worker of the same pool could deadlock.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx

from ._errors import classify
from ._litellm import litellm, normalize_model
from ._local import LOCAL_CONTEXT_WINDOW, LOCAL_MODEL, is_local_model, local_endpoint

__all__ = ["context_window_of", "count_tokens_of"]

T = TypeVar("T")

FALLBACK_TOKENIZER_MODEL = "gpt-4"
"""Counted instead of a model whose tokenizer would be downloaded: tiktoken's
``cl100k_base``, which litellm bundles (and uses itself for models it does not know)."""

# litellm's own tokenizers that are files inside its wheel; any other Hugging Face
# tokenizer it selects is fetched from the Hub.
_BUNDLED_HF_TOKENIZERS = frozenset({"anthropic"})

# Providers whose model info litellm asks a server for (Ollama's /api/show, the Hub's
# config.json) instead of its bundled map.
_LIVE_MODEL_INFO = frozenset({"ollama", "ollama_chat", "lemonade", "huggingface"})

TOKENIZE_TIMEOUT_S = 30.0
"""Seconds the local server may take to tokenize one text (a megabyte takes ~0.7 s)."""

_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="taskmark-tokens")


async def _in_worker(function: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_WORKERS, functools.partial(function, *args))


async def count_tokens_of(model: str, api_base: str | None, texts: Sequence[str], *, label: str) -> list[int]:
    """Tokens each of ``texts`` takes in ``model``'s tokenizer, in order.

    Args:
        model: The provider's model string.
        api_base: The provider's base URL (a bare model name there means ``openai/NAME``).
        texts: The texts; duplicates are counted once.
        label: How errors name the provider.

    Returns:
        One count per text.

    Raises:
        ProviderError: The local server could not tokenize, or litellm failed to count.
    """
    unique = [text for text in dict.fromkeys(texts) if text]
    if not unique:
        return [0] * len(texts)
    if is_local_model(model):
        counted = await _count_local(unique, label=label)
    else:
        counted = await _in_worker(_count_with_litellm, model, api_base, unique, label)
    counts = dict(zip(unique, counted, strict=False))
    return [counts.get(text, 0) for text in texts]


async def context_window_of(model: str, api_base: str | None) -> int | None:
    """The most input tokens ``model`` takes, or None when litellm's map does not say.

    The local model's is the context of one server slot. For other models, litellm's
    ``max_input_tokens``, else its ``max_tokens`` (in litellm's map often the output limit,
    so a lower bound). Providers whose info litellm fetches from a server count as unknown.
    """
    if is_local_model(model):
        return LOCAL_CONTEXT_WINDOW
    return await _in_worker(_window_from_litellm, model, api_base)


# -- litellm ----------------------------------------------------------------------------


def _count_with_litellm(model: str, api_base: str | None, texts: list[str], label: str) -> list[int]:
    try:
        counting = _tokenizer_model(normalize_model(model, api_base))
        token_counter = litellm().token_counter
        return [int(token_counter(model=counting, text=text)) for text in texts]
    except Exception as exc:  # noqa: BLE001 - one error type leaves the providers layer
        raise classify(exc, model=model, provider=label).error from None


@functools.lru_cache(maxsize=256)
def _tokenizer_model(model: str) -> str:
    """The model name litellm picks a tokenizer by, or the fallback if that would download."""
    module = litellm()
    try:
        # litellm's tables know bare names: 'openai/gpt-4o-mini' is 'gpt-4o-mini' there.
        bare = str(module.get_llm_provider(model)[0])
    except Exception:  # noqa: BLE001 - an unknown model keeps its name
        bare = model
    try:
        kind = module.utils.huggingface_tokenizer_kind(bare)
    except Exception:  # noqa: BLE001 - cannot tell: the fallback is always offline
        return FALLBACK_TOKENIZER_MODEL
    if kind is None or kind in _BUNDLED_HF_TOKENIZERS:
        return bare
    return FALLBACK_TOKENIZER_MODEL


@functools.lru_cache(maxsize=256)
def _window_from_litellm(model: str, api_base: str | None) -> int | None:
    module = litellm()
    routed = normalize_model(model, api_base)
    try:
        provider = str(module.get_llm_provider(routed)[1])
    except Exception:  # noqa: BLE001 - litellm raises BadRequestError for unknown models
        return None
    if provider in _LIVE_MODEL_INFO:
        return None
    try:
        info = module.get_model_info(routed)
    except Exception:  # noqa: BLE001 - ModelNotMappedError: not in the map
        return None
    for key in ("max_input_tokens", "max_tokens"):
        value = info.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


# -- the local model ----------------------------------------------------------------------


async def _count_local(texts: list[str], *, label: str) -> list[int]:
    """Count with SmolLM2's own tokenizer: one ``/tokenize`` request per text, at once."""
    endpoint = await _in_worker(local_endpoint)
    url = f"{endpoint.server_url}/tokenize"
    headers = {"Authorization": f"Bearer {endpoint.token}"}

    async def one(client: httpx.AsyncClient, text: str) -> int:
        # Special tokens (BOS) are left out, as tiktoken leaves them out.
        response = await client.post(url, json={"content": text, "add_special": False})
        response.raise_for_status()
        tokens = response.json()["tokens"]
        if not isinstance(tokens, list):
            raise ValueError(f"/tokenize answered {type(tokens).__name__}, not a list")
        return len(tokens)

    try:
        # Loopback only: no proxy from the environment may see the token.
        async with httpx.AsyncClient(headers=headers, timeout=TOKENIZE_TIMEOUT_S, trust_env=False) as client:
            return list(await asyncio.gather(*(one(client, text) for text in texts)))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        failure = classify(exc, model=LOCAL_MODEL, provider=label, secrets=[endpoint.token])
        raise failure.error from None
