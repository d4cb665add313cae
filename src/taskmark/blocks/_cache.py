"""The response cache: Prefect's own task cache, keyed on what decides an LLM's answer.

An inference task that takes ``provider``, ``messages``, ``schema``, ``overrides`` (and
optionally ``scope`` and ``labels``) parameters gets ``cache_policy=LLM_REQUEST_CACHE`` with
its result persisted (``llm_cache_options(ttl)``). An identical request in the same scope is
then answered from Prefect's result storage without a call, in any process that shares it —
which is what lets a retried run skip the calls it already paid for.

The key covers the model, endpoint, sampling parameters, messages, schema and scope, and
for a call inside a refine loop its stage and round (``CallLabels.round``): a loop's round
often sends exactly the request of the round before it, and answering it from that round
would make the loop do nothing. It never covers the API key (a secret must not shape a file
name), and not the local server's per-process address, so cached local answers survive a
restart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from ._provider import LLMProvider
from ._structured import schema_json
from ._types import CallLabels, ChatModel, Message, Schema

__all__ = ["LLM_REQUEST_CACHE", "LLMRequestCache", "llm_cache_options", "request_cache_key"]

KEY_VERSION = "1"


def request_cache_key(
    provider: ChatModel,
    messages: Sequence[Message],
    schema: Schema | None = None,
    overrides: Mapping[str, Any] | None = None,
    scope: str | None = None,
    labels: CallLabels | None = None,
) -> str:
    """A stable hash of everything that decides the answer to a request.

    Args:
        provider: The block (or any ``ChatModel``) the request goes to.
        messages: The conversation.
        schema: The requested schema, if any.
        overrides: Per-call overrides, as passed to ``acomplete``.
        scope: Where the answer may be reused (a run and a call's place in it); None for
            anywhere.
        labels: Where the call belongs; only a refine loop's stage and round count (the
            rest is already in the messages or the scope).

    Returns:
        A hex digest; equal for equal requests in any process.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if isinstance(provider, LLMProvider):
        effective = provider.with_overrides(**overrides)
        endpoint: dict[str, Any] = {
            "model": effective.model,
            "api_base": effective.api_base,
            "temperature": effective.temperature,
            "max_tokens": effective.max_tokens,
            "extra_params": effective.extra_params,
            "structured_output": effective.structured_output,
        }
    else:
        endpoint = {"model": provider.model_name, "overrides": overrides}
    material: dict[str, Any] = {
        "v": KEY_VERSION,
        "endpoint": endpoint,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "schema": schema_json(schema) if schema is not None else None,
        "scope": scope,
    }
    if labels is not None and labels.round is not None:
        # Added only inside a loop, so the keys of every other call (and the answers
        # already stored under them) stay as they were.
        material["loop"] = [labels.stage, labels.round]
    blob = json.dumps(material, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class LLMRequestCache(CachePolicy):
    """A cache policy for an inference task, keyed by ``request_cache_key``.

    The task's parameter names are configurable; a task without a provider or messages
    parameter is not cached (the key is None).
    """

    provider_param: str = "provider"
    messages_param: str = "messages"
    schema_param: str = "schema"
    overrides_param: str = "overrides"
    scope_param: str = "scope"
    labels_param: str = "labels"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,  # noqa: ANN401
    ) -> str | None:
        """The cache key for one task run's inputs."""
        provider = inputs.get(self.provider_param)
        messages = inputs.get(self.messages_param)
        if provider is None or messages is None:
            return None
        key = request_cache_key(
            provider,
            messages,
            inputs.get(self.schema_param),
            inputs.get(self.overrides_param),
            inputs.get(self.scope_param),
            labels if isinstance(labels := inputs.get(self.labels_param), CallLabels) else None,
        )
        return f"taskmark-llm-{key}"


LLM_REQUEST_CACHE = LLMRequestCache()
"""The policy for a task with ``provider``, ``messages``, ``schema``, ``overrides``, ``scope``, ``labels`` parameters."""


def llm_cache_options(
    ttl: timedelta | float | None, *, refresh: bool = False, policy: CachePolicy = LLM_REQUEST_CACHE
) -> dict[str, Any]:
    """Task options for the response cache, for ``task.with_options(**options)``.

    Args:
        ttl: How long an answer stays valid (a timedelta or seconds); None for as long as
            result storage keeps it.
        refresh: Call anyway and store the new answer (``--no-cache``).
        policy: The key policy, if the task's parameters are named differently.

    Returns:
        ``cache_policy``, ``cache_expiration``, ``refresh_cache`` and ``persist_result``
        (a cached answer must be stored to be found again).

    Example:
        >>> infer = inference_task.with_options(**llm_cache_options(timedelta(hours=1)))
    """
    expiration = None if ttl is None else ttl if isinstance(ttl, timedelta) else timedelta(seconds=float(ttl))
    return {"cache_policy": policy, "cache_expiration": expiration, "refresh_cache": refresh, "persist_result": True}
