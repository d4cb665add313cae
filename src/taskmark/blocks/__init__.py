"""LLM providers: Prefect Blocks over litellm, the embedded local model, accounting.

This is the only package that imports litellm, and it does so lazily: importing
``taskmark.blocks`` (as Prefect does for every process, through the ``prefect.collections``
entry point) never pays litellm's import time.

Flows and tasks reach LLMs through ``ChatModel.acomplete`` (and size prompts with its
``count_tokens`` and ``context_window``); ``LLMProvider`` is the block
that implements it, ``resolve_provider`` picks one for a call, ``merge_llm_settings`` and ``agent_messages``
turn an agent and a prompt into its settings and messages, and ``LLM_REQUEST_CACHE`` caches
answers in Prefect's own task cache.
"""

from __future__ import annotations

from taskmark.blocks._agents import agent_messages, merge_llm_settings
from taskmark.blocks._cache import (
    LLM_REQUEST_CACHE,
    LLMRequestCache,
    llm_cache_options,
    request_cache_key,
)
from taskmark.blocks._errors import classify, redact
from taskmark.blocks._local import (
    LOCAL_CONTEXT_WINDOW,
    LOCAL_MODEL,
    LocalEndpoint,
    local_endpoint,
    local_model_path,
    stop_local_model,
)
from taskmark.blocks._provider import LLMProvider
from taskmark.blocks._resolve import ProviderOverrides, aresolve_provider, resolve_provider
from taskmark.blocks._retry import Backoff
from taskmark.blocks._types import CallLabels, ChatModel, Completion, Message, Schema, Usage
from taskmark.blocks._usage import (
    COMPLETED_EVENT,
    FAILED_EVENT,
    describe_cost,
    request_record,
)

__all__ = [
    "COMPLETED_EVENT",
    "FAILED_EVENT",
    "LLM_REQUEST_CACHE",
    "LOCAL_CONTEXT_WINDOW",
    "LOCAL_MODEL",
    "Backoff",
    "CallLabels",
    "ChatModel",
    "Completion",
    "LLMProvider",
    "LLMRequestCache",
    "LocalEndpoint",
    "Message",
    "ProviderOverrides",
    "Schema",
    "Usage",
    "agent_messages",
    "aresolve_provider",
    "classify",
    "describe_cost",
    "llm_cache_options",
    "local_endpoint",
    "local_model_path",
    "merge_llm_settings",
    "redact",
    "request_cache_key",
    "request_record",
    "resolve_provider",
    "stop_local_model",
]
