"""From an agent and a rendered prompt to an answered call.

Settings merge field by field, first set value wins, in the order
step → phase → definition ``llm:`` → agent file → provider block defaults; the block's
defaults apply simply by not overriding them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from taskmark.errors import ProviderError

from ._resolve import ProviderOverrides, aresolve_provider
from ._types import CallLabels, ChatModel, Completion, Message, Schema
from ._usage import UsageLedger

if TYPE_CHECKING:
    from taskmark.definition import LLMSettings

__all__ = ["AgentLike", "LLMSettingsLike", "agent_messages", "call_agent", "merge_llm_settings"]


class LLMSettingsLike(Protocol):
    """What the merge reads: ``taskmark.definition.LLMSettings`` or anything shaped like it."""

    @property
    def provider(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def max_tokens(self) -> int | None: ...


class AgentLike(Protocol):
    """What a call reads from an agent: ``taskmark.definition.Agent`` or alike."""

    @property
    def id(self) -> str: ...
    @property
    def system_prompt(self) -> str: ...
    @property
    def llm(self) -> LLMSettingsLike: ...


_FIELDS = ("provider", "model", "temperature", "max_tokens")


def merge_llm_settings(*layers: LLMSettingsLike | None) -> LLMSettings:
    """Merge settings, highest precedence first; each field takes its first non-None value.

    Args:
        *layers: e.g. ``step.llm, phase.llm, definition.metadata.llm, agent.llm``; None
            entries are skipped.

    Returns:
        One ``LLMSettings``; fields no layer sets stay None (the block's defaults apply).

    Example:
        >>> merge_llm_settings(LLMSettings(temperature=0), LLMSettings(model="m", temperature=1))
        LLMSettings(provider=None, model='m', temperature=0.0, max_tokens=None)
    """
    from taskmark.definition import LLMSettings

    merged: dict[str, Any] = {}
    for name in _FIELDS:
        for layer in layers:
            value = getattr(layer, name, None) if layer is not None else None
            if value is not None:
                merged[name] = value
                break
    return LLMSettings(**merged)


def agent_messages(agent: AgentLike, prompt: str) -> list[Message]:
    """The chat messages for one agent step: its system prompt (if any), then the prompt."""
    messages: list[Message] = []
    if agent.system_prompt.strip():
        messages.append(Message(role="system", content=agent.system_prompt.strip()))
    messages.append(Message(role="user", content=prompt))
    return messages


async def call_agent(
    agent: AgentLike,
    prompt: str,
    *,
    layers: tuple[LLMSettingsLike | None, ...] = (),
    schema: Schema | None = None,
    labels: CallLabels | None = None,
    ledger: UsageLedger | None = None,
    overrides: ProviderOverrides | None = None,
    provider: ChatModel | None = None,
) -> Completion:
    """Ask ``agent`` one question: merge settings, resolve the provider, call, account.

    Args:
        agent: The agent (system prompt and its own settings).
        prompt: The rendered prompt.
        layers: Settings above the agent's, highest first: step, phase, definition.
        schema: What the reply must match, if the step declares outputs.
        labels: Where the call belongs, for its event and usage row.
        ledger: The run's ledger, if it keeps one.
        overrides: CLI flag overrides (the environment is read by resolution).
        provider: Skip resolution and use this model (tests, wrappers).

    Returns:
        The completion.

    Raises:
        ProviderError: The call failed (it is counted in the ledger first).
    """
    settings = merge_llm_settings(*layers, agent.llm)
    labels = labels or CallLabels(agent=agent.id)
    try:
        if provider is None:
            provider = await aresolve_provider(settings.provider, model=settings.model, overrides=overrides)
            model_override = None  # resolution already chose the model
        else:
            model_override = settings.model
        completion = await provider.acomplete(
            agent_messages(agent, prompt),
            schema=schema,
            labels=labels,
            model=model_override,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
        )
    except ProviderError:
        if ledger is not None:
            ledger.add_failure(labels)
        raise
    if ledger is not None:
        ledger.add(completion, labels)
    return completion
