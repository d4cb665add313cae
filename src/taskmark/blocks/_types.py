"""The values that cross the providers boundary: messages in, a ``Completion`` out.

``ChatModel`` is the whole interface flows and tasks depend on, in the spirit of
pydantic-ai's ``Model``: anything with an ``acomplete`` (a saved block, a test double, a
wrapper that adds caching or tracing) can answer an agent step, and its
``count_tokens`` and ``context_window`` let a caller fit the prompt to that model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from taskmark.runs.record import RequestRecord

__all__ = [
    "CallLabels",
    "ChatModel",
    "Completion",
    "Message",
    "Schema",
    "Usage",
]


class Message(TypedDict):
    """One chat message in the OpenAI shape that litellm accepts for every provider."""

    role: Literal["system", "user", "assistant"]
    content: str


Schema: TypeAlias = "type[BaseModel] | Mapping[str, Any]"
"""What a caller may ask the reply to match: a pydantic model class or a JSON Schema."""


class Usage(BaseModel):
    """Tokens one call (or a sum of calls) used."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = Field(default=0, ge=0, description="Tokens sent to the model.")
    completion_tokens: int = Field(default=0, ge=0, description="Tokens the model generated.")
    total_tokens: int = Field(default=0, ge=0, description="Prompt plus completion tokens.")

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class Completion(BaseModel):
    """The answer to one logical request (including any retries, fallback or repair)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    text: str = Field(description="The assistant's reply as text.")
    parsed: Any = Field(
        default=None,
        description=(
            "The reply parsed against the requested schema: an instance of the pydantic "
            "model, or the decoded JSON for a JSON Schema; None when no schema was given."
        ),
    )
    usage: Usage = Field(default_factory=Usage, description="Tokens of every HTTP call this answer took.")
    cost_usd: float | None = Field(default=None, description="Cost in US dollars; None where the price is unknown.")
    latency_s: float = Field(default=0.0, ge=0, description="Wall time of the whole request, retries included.")
    model: str = Field(description="The model that answered (a fallback's, if one did).")
    provider: str | None = Field(default=None, description="The provider block's name, when it was loaded by name.")
    attempts: int = Field(default=1, ge=1, description="HTTP calls made: the first, retries, fallbacks and a repair.")
    requests: tuple[RequestRecord, ...] = Field(default=(), description="Each of those HTTP calls, with its outcome.")
    repaired: bool = Field(default=False, description="Whether a repair call was needed to get parseable JSON.")
    truncated: bool = Field(
        default=False,
        description="Whether the reply stopped at the token limit (finish_reason 'length').",
    )


class CallLabels(BaseModel):
    """Where in a workflow a call belongs; attached to events and usage rows."""

    model_config = ConfigDict(frozen=True)

    definition: str | None = Field(default=None, description="The definition's name.")
    phase: str | None = Field(default=None, description="The phase's name.")
    stage: str | None = Field(default=None, description="The lifecycle stage.")
    step: str | None = Field(default=None, description="The step, e.g. its agent id.")
    agent: str | None = Field(default=None, description="The agent's id.")
    round: int | None = Field(
        default=None,
        ge=1,
        description=(
            "The critique/refine round (1-based) of a call made inside a refine loop; None "
            "elsewhere. Part of the response cache key, so no round is answered by an earlier one."
        ),
    )

    def as_event_labels(self) -> dict[str, str]:
        """The labels set, with ``taskmark.`` keys, for an event's resource."""
        return {f"taskmark.{k}": str(v) for k, v in self.model_dump().items() if v is not None}


@runtime_checkable
class ChatModel(Protocol):
    """The interface by which flows and tasks reach an LLM.

    Implementations must not put secrets in anything they return or raise.
    """

    @property
    def model_name(self) -> str:
        """The model a call goes to unless overridden."""
        ...

    async def acomplete(
        self,
        messages: Sequence[Message],
        *,
        schema: Schema | None = None,
        labels: CallLabels | None = None,
        **overrides: Any,  # noqa: ANN401
    ) -> Completion:
        """Answer ``messages``; see ``LLMProvider.acomplete``."""
        ...

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes in this model's tokenizer, in order, without a model call.

        See ``LLMProvider.count_tokens``.
        """
        ...

    async def context_window(self) -> int | None:
        """The most input tokens this model takes; None when unknown.

        See ``LLMProvider.context_window``.
        """
        ...
