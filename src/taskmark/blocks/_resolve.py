"""Which provider answers a call; the first match wins.

In order:

1. an explicit block name on the step, phase, agent or definition (``provider: NAME``;
   ``default`` means "resolve as usual");
2. overrides: CLI flags ``--model``/``--api-base``/``--api-key``, then the environment
   (``TASKMARK_LLM_MODEL``, ``TASKMARK_LLM_API_BASE``, ``TASKMARK_LLM_API_KEY``);
3. a saved ``LLMProvider`` block named ``default``;
4. the provider keys litellm already reads (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``,
   ``GEMINI_API_KEY``, ``DEEPSEEK_API_KEY``...) for the definition's model;
5. the embedded local model.

The definition's model (merged step → phase → definition → agent) overrides a block's
default model in 1 and 3; an override's model (2) wins over the definition's, since
``--model`` is the user saying "this run, this model".
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pydantic import SecretStr

from taskmark.errors import ProviderError
from taskmark.settings import Settings

from ._litellm import has_provider_key
from ._local import is_local_model
from ._provider import LLMProvider

__all__ = ["DEFAULT_BLOCK", "ProviderOverrides", "aresolve_provider", "resolve_provider"]

DEFAULT_BLOCK = "default"
API_KEY_ENV = "TASKMARK_LLM_API_KEY"

LOCAL_TIMEOUT_S = 600.0
"""Seconds one call to the local model may take."""


@dataclass(frozen=True)
class ProviderOverrides:
    """Endpoint overrides from CLI flags or the environment; unset fields are None."""

    model: str | None = None
    api_base: str | None = None
    api_key: SecretStr | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> ProviderOverrides:
        """Read ``TASKMARK_LLM_MODEL``, ``TASKMARK_LLM_API_BASE`` and ``TASKMARK_LLM_API_KEY``.

        The key is read here as a secret, never through ``Settings``, which holds only
        what may be printed.
        """
        settings = Settings()
        key = os.environ.get(API_KEY_ENV)
        return cls(
            model=settings.llm_model or None,
            api_base=settings.llm_api_base or None,
            api_key=SecretStr(key) if key else None,
        )

    def over(self, other: ProviderOverrides) -> ProviderOverrides:
        """These overrides, each unset field taken from ``other`` (flags over environment)."""
        return ProviderOverrides(
            model=self.model or other.model,
            api_base=self.api_base or other.api_base,
            api_key=self.api_key or other.api_key,
        )

    def __bool__(self) -> bool:
        return bool(self.model or self.api_base or self.api_key)


async def aresolve_provider(
    name: str | None,
    *,
    model: str | None = None,
    overrides: ProviderOverrides | None = None,
) -> LLMProvider:
    """Pick the provider for a call (see the module docstring for the order).

    Args:
        name: The block name from the merged settings, or None.
        model: The model from the merged settings, or None.
        overrides: CLI flags; the environment fills their unset fields.

    Returns:
        The provider, with its ``model`` set to the model the call should use.

    Raises:
        ProviderError: A named block does not exist, or overrides give no model.
    """
    if name and name != DEFAULT_BLOCK:
        block = await _load(name)
        if block is None:
            raise ProviderError(
                f"no LLMProvider block named {name!r}: create it (see docs/providers.md) or remove `provider: {name}`",
                model=model,
            )
        return _with_model(block, model)

    chosen = (overrides or ProviderOverrides()).over(ProviderOverrides.from_env())
    if chosen:
        final = chosen.model or model
        if final is None:
            raise ProviderError(
                "an LLM endpoint is overridden (--api-base/--api-key or TASKMARK_LLM_*) but no "
                "model is named: set --model, TASKMARK_LLM_MODEL or the definition's llm.model",
            )
        return LLMProvider(model=final, api_base=chosen.api_base, api_key=chosen.api_key)

    block = await _load(DEFAULT_BLOCK)
    if block is not None:
        return _with_model(block, model)

    if model and not is_local_model(model) and has_provider_key(model):
        return LLMProvider(model=model)

    # The local model writes ~10-40 tokens a second on a laptop's CPU: a long answer is not a hung server.
    return LLMProvider(timeout_s=LOCAL_TIMEOUT_S)


def resolve_provider(
    name: str | None,
    *,
    model: str | None = None,
    overrides: ProviderOverrides | None = None,
) -> LLMProvider:
    """Synchronous ``aresolve_provider``; same arguments."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    result = run_coro_as_sync(aresolve_provider(name, model=model, overrides=overrides))
    assert result is not None
    return result


async def _load(name: str) -> LLMProvider | None:
    try:
        return await LLMProvider.aload(name)
    except ValueError:
        # Prefect raises ValueError both for a missing document and an unregistered type.
        return None


def _with_model(block: LLMProvider, model: str | None) -> LLMProvider:
    return block.with_overrides(model=model) if model else block
