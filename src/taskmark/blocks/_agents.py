"""From an agent and a rendered prompt to the settings and messages of its call.

Settings merge field by field, first set value wins, in the order
step → phase → definition ``llm:`` → agent file → provider block defaults; the block's
defaults apply simply by not overriding them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._types import Message

if TYPE_CHECKING:
    from taskmark.definition import LLMSettings

__all__ = ["AgentLike", "LLMSettingsLike", "agent_messages", "merge_llm_settings"]


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
