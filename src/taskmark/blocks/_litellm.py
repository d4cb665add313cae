"""The one door to litellm: imported on first use, configured once.

``import litellm`` costs ~4 s, so nothing imports it at module level: ``taskmark validate``
and every Prefect process that loads our block types (through the ``prefect.collections``
entry point) must not pay for it.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from types import ModuleType

__all__ = [
    "cost_of",
    "has_provider_key",
    "key_variables",
    "litellm",
    "normalize_model",
    "provider_of",
    "speaks_openai",
]

_IMPORT_LOCK = threading.Lock()


def litellm() -> ModuleType:
    """litellm, imported and configured on the first call."""
    with _IMPORT_LOCK:
        return _import()


@lru_cache(maxsize=1)
def _import() -> ModuleType:
    # The bundled price map, not a download at import: taskmark must start offline and
    # fast. Set LITELLM_LOCAL_MODEL_COST_MAP=False to fetch the newest prices instead.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as module

    # litellm prints help banners to stdout on errors; a library must not print.
    module.suppress_debug_info = True
    return module


@lru_cache(maxsize=256)
def provider_of(model: str) -> str | None:
    """The litellm provider a model string routes to (``openai``, ``anthropic``...), or None."""
    try:
        return str(litellm().get_llm_provider(model)[1])
    except Exception:  # noqa: BLE001 - litellm raises BadRequestError for unknown models
        return None


def normalize_model(model: str, api_base: str | None) -> str:
    """The model string litellm should get.

    A bare name (``llama3``) sent to a custom ``api_base`` means an OpenAI-compatible
    server, which litellm only knows as ``openai/llama3``.
    """
    if api_base and provider_of(model) is None:
        return f"openai/{model}"
    return model


@lru_cache(maxsize=256)
def speaks_openai(model: str) -> bool:
    """Whether litellm sends ``model`` through the OpenAI client (OpenAI or a compatible API)."""
    provider = provider_of(model)
    if provider is None:
        return False
    return provider in {"openai", "text-completion-openai", "custom_openai"} or provider in set(
        litellm().openai_compatible_providers
    )


# Providers whose key litellm's validate_environment does not check (it reports them as
# ready with no key at all).
_UNCHECKED_KEYS = {"zai": ("ZAI_API_KEY",)}


def has_provider_key(model: str) -> bool:
    """Whether the environment holds the key litellm reads for ``model`` (``OPENAI_API_KEY``...)."""
    return _key_check(model)[0]


def key_variables(model: str) -> list[str]:
    """The environment variables litellm would read ``model``'s key from, when they are unset.

    Returns:
        Their names (``["OPENAI_API_KEY"]``), or an empty list when litellm does not say.
    """
    return _key_check(model)[1]


def _key_check(model: str) -> tuple[bool, list[str]]:
    names = _UNCHECKED_KEYS.get(provider_of(model) or "")
    if names is not None:
        return any(os.environ.get(name) for name in names), list(names)
    try:
        result = litellm().validate_environment(model=model)
    except Exception:  # noqa: BLE001 - an unknown model has no known key
        return False, []
    return bool(result.get("keys_in_environment")), [str(name) for name in result.get("missing_keys") or []]


_UNPRICED: set[str] = set()


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """What litellm's price map says the call cost, or None for an unpriced model."""
    # litellm looks a missing model up the slow way every time (and raises); remember it.
    if model in _UNPRICED:
        return None
    try:
        prompt_cost, completion_cost = litellm().cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # noqa: BLE001 - ModelNotMappedError and friends: price unknown
        _UNPRICED.add(model)
        return None
    return float(prompt_cost) + float(completion_cost)
