"""``LLMProvider``: a configured LLM endpoint, saved as a Prefect Block, called through litellm."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import Field, SecretStr

from taskmark.errors import ProviderError
from taskmark.runs.record import RequestRecord

from ._errors import Failure, classify
from ._local import LOCAL_MODEL, is_local_model
from ._request import build_request, completion_from, log_failure
from ._retry import Backoff, RetriesExhausted, call_with_retries
from ._structured import (
    OutputMode,
    ParseFailure,
    parse_reply,
    quote,
    repair_messages,
    response_format,
    with_instruction,
)
from ._types import CallLabels, Completion, Message, Schema
from ._usage import emit_completed, emit_failed, request_record

__all__ = ["LLMProvider"]

BLOCK_FALLBACK_PREFIX = "llm-provider/"
# Overrides that name a field of the block; anything else is passed to litellm as it is.
_FIELD_OVERRIDES = frozenset(
    {"model", "temperature", "max_tokens", "timeout_s", "max_retries", "retry_backoff_s", "structured_output"}
)


class LLMProvider(Block):
    """An LLM endpoint: a litellm model string with its key, base URL, limits and prices.

    With no settings at all it is the embedded local model (SmolLM2-135M on llama.cpp).
    Calls retry transient failures with exponential backoff and jitter (honouring
    Retry-After), then try ``fallbacks``; permanent failures raise at once. Every call
    emits a ``taskmark.llm.completed`` or ``taskmark.llm.failed`` Prefect event.
    """

    _description = (
        "An LLM endpoint for taskmark: a litellm model string with its key, base URL, timeout, "
        "retries, fallbacks, rate limit and prices. Runs use the block named `default` unless "
        "a definition (or its phase, step or agent) names another with `provider: NAME`; "
        "`--model` and `--api-base` on the command line override `default` for one run. "
        "Without a `default` block, a provider key in the environment (OPENAI_API_KEY...) or "
        "the embedded local model answers."
    )
    _block_type_name = "LLM Provider"
    _block_type_slug = "llm-provider"
    _documentation_url = "https://docs.litellm.ai/docs/providers"  # type: ignore[assignment]
    _code_example = """
    ```python
    from taskmark.blocks import LLMProvider

    llm_provider_block = LLMProvider.load("BLOCK_NAME")
    completion = llm_provider_block.complete([{"role": "user", "content": "Hello"}])
    print(completion.text, completion.usage.total_tokens, completion.cost_usd)
    ```
    """

    model: str = Field(
        default=LOCAL_MODEL,
        title="Model",
        description=(
            "The litellm model string, e.g. 'gpt-4o-mini', 'anthropic/claude-sonnet-4-5', "
            f"'openai/NAME' for an OpenAI-compatible server, or '{LOCAL_MODEL}'."
        ),
    )
    api_base: str | None = Field(
        default=None, title="API base URL", description="Base URL of the API; empty for the provider's own."
    )
    api_key: SecretStr | None = Field(
        default=None,
        title="API key",
        description="API key; empty to use the provider's usual variable (OPENAI_API_KEY...).",
    )
    temperature: float | None = Field(
        default=None, title="Temperature", ge=0, le=2, description="Sampling temperature; empty for the model's."
    )
    max_tokens: int | None = Field(
        default=None, title="Max output tokens", ge=1, description="Most tokens to generate; empty for the model's."
    )
    max_input_tokens: int | None = Field(
        default=None,
        title="Context window (tokens)",
        ge=1,
        description=(
            "The model's context window in tokens, for models litellm does not know "
            "(self-hosted servers); empty to use litellm's model map."
        ),
    )
    timeout_s: float = Field(
        default=60.0, title="Timeout (seconds)", gt=0, description="Seconds one HTTP attempt may take before it fails."
    )
    max_retries: int = Field(
        default=3, title="Max retries", ge=0, le=20, description="Retries of a transient failure, per model."
    )
    retry_backoff_s: float = Field(
        default=1.0,
        title="First retry delay (seconds)",
        ge=0,
        description="First retry delay in seconds; doubles each retry.",
    )
    max_backoff_s: float = Field(
        default=60.0,
        title="Longest retry delay (seconds)",
        ge=0,
        description="Longest wait between retries; a longer Retry-After moves to fallbacks.",
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        title="Fallbacks",
        description=(
            "Tried in order when retries are spent: litellm model strings (sent with this "
            "block's settings) or saved blocks as 'llm-provider/NAME'."
        ),
    )
    rate_limit: int | None = Field(
        default=None,
        title="Rate limit (requests per minute)",
        ge=1,
        description="Requests per minute across all workers (a Prefect global concurrency limit).",
    )
    extra_headers: SecretDict | None = Field(
        default=None, title="Extra HTTP headers", description="HTTP headers sent with each request (kept secret)."
    )
    extra_params: dict[str, Any] = Field(
        default_factory=dict,
        title="Extra litellm parameters",
        description="Other litellm completion parameters, e.g. top_p, seed or stop.",
    )
    input_cost_per_million_tokens: float | None = Field(
        default=None,
        title="Input price (USD per million tokens)",
        ge=0,
        description="Price of a million prompt tokens in USD, if custom.",
    )
    output_cost_per_million_tokens: float | None = Field(
        default=None,
        title="Output price (USD per million tokens)",
        ge=0,
        description="Price of a million completion tokens in USD, if custom.",
    )
    structured_output: OutputMode = Field(
        default="auto",
        title="Structured output mode",
        description=(
            "How a schema is requested: json_schema or json_object response_format, prompt (instructions only) or auto."
        ),
    )

    # -- the ChatModel interface -----------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model a call goes to unless overridden."""
        return self.model

    @property
    def label(self) -> str:
        """How messages and events name this provider: its block name, else its model."""
        return self._block_document_name or self.model

    async def acomplete(
        self,
        messages: Sequence[Message],
        *,
        schema: Schema | None = None,
        labels: CallLabels | None = None,
        **overrides: Any,  # noqa: ANN401
    ) -> Completion:
        """Send a chat request and return the answer.

        Args:
            messages: The conversation, OpenAI-style (``role``, ``content``).
            schema: A pydantic model class or JSON Schema the reply must match; the
                parsed value is in ``Completion.parsed``.
            labels: Where the call belongs (definition, phase, stage), for its event.
            **overrides: Per-call settings: block fields (``model``, ``temperature``,
                ``max_tokens``, ``timeout_s``, ``max_retries``, ``retry_backoff_s``, ``structured_output``) or
                any other litellm parameter. ``None`` values are ignored, so merged agent
                settings can be passed as they are. Keys cannot be overridden here.

        Returns:
            The completion, from this model or a fallback.

        Raises:
            ProviderError: The call failed permanently, or every model's retries were
                spent; the message names provider, model, status and reason, never a key.

        Example:
            >>> completion = await provider.acomplete(
            ...     [{"role": "user", "content": "Name a colour."}], max_tokens=10
            ... )
        """
        started = time.perf_counter()
        primary = self.with_overrides(**overrides)
        request = request_record(messages, primary.temperature, primary.max_tokens)
        try:
            completion = await primary._complete_with_fallbacks(messages, schema)
        except ProviderError as error:
            emit_failed(
                error,
                labels,
                model=primary.model,
                provider=self._block_document_name,
                latency_s=time.perf_counter() - started,
                request=request,
            )
            raise
        completion = completion.model_copy(update={"latency_s": time.perf_counter() - started})
        emit_completed(completion, labels, request)
        return completion

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: Schema | None = None,
        labels: CallLabels | None = None,
        **overrides: Any,  # noqa: ANN401
    ) -> Completion:
        """Synchronous ``acomplete``, for scripts and sync tasks; same arguments."""
        from prefect.utilities.asyncutils import run_coro_as_sync

        result = run_coro_as_sync(self.acomplete(messages, schema=schema, labels=labels, **overrides))
        assert result is not None
        return result

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Count the tokens of several texts in this model's tokenizer, offline.

        Hosted models are counted by litellm with tiktoken encodings bundled in its wheel
        (``o200k_base`` for GPT-4o and later, ``cl100k_base`` for older GPT models);
        Claude models with litellm's bundled Anthropic tokenizer (an approximation).
        Models whose tokenizer litellm would download from Hugging Face (Llama, Command R)
        and models it does not know (``openai/NAME`` on a self-hosted server) are counted
        with ``cl100k_base`` instead, so counting never waits on the network. The local
        model is counted by its own tokenizer, on its llama.cpp server (``/tokenize``),
        which starts if it is not running. Fallback models are not consulted.

        Args:
            texts: The texts to count; special tokens (BOS) and chat framing are not
                included.

        Returns:
            One count per text, in order; 0 for an empty text.

        Raises:
            ProviderError: The local server failed to tokenize (or to start), or litellm
                failed to count; the message never contains a key.

        Example:
            >>> await LLMProvider(model="gpt-4o-mini").count_tokens(["Hello, world!", ""])
            [4, 0]
        """
        from ._tokens import count_tokens_of

        return await count_tokens_of(self.model, self.api_base, texts, label=self.label)

    async def context_window(self) -> int | None:
        """The most input tokens the model takes, for fitting a prompt to it.

        ``max_input_tokens`` if the block sets it; for the local model, the context of one
        server slot (``LOCAL_CONTEXT_WINDOW``, 8192); otherwise litellm's bundled model
        map (``max_input_tokens``, else ``max_tokens``). Never a network call.

        Returns:
            The window in tokens, or None when nothing says (e.g. ``openai/NAME`` on a
            self-hosted server without ``max_input_tokens``).

        Example:
            >>> await LLMProvider(model="gpt-4o-mini").context_window()
            128000
        """
        if self.max_input_tokens is not None:
            return self.max_input_tokens
        from ._tokens import context_window_of

        return await context_window_of(self.model, self.api_base)

    def with_overrides(self, **overrides: Any) -> LLMProvider:  # noqa: ANN401
        """A copy with per-call overrides applied (``None`` values ignored).

        Raises:
            TypeError: An override tries to set ``api_key``, ``api_base`` or headers;
                endpoints and secrets come from blocks and resolution, never from a call.
        """
        forbidden = {"api_key", "api_base", "extra_headers"} & overrides.keys()
        if forbidden:
            raise TypeError(f"cannot override {sorted(forbidden)} per call")
        fields = {k: v for k, v in overrides.items() if k in _FIELD_OVERRIDES and v is not None}
        extra = {k: v for k, v in overrides.items() if k not in _FIELD_OVERRIDES and v is not None}
        if not fields and not extra:
            return self
        copy = self.model_copy(update={**fields, "extra_params": {**self.extra_params, **extra}})
        copy._block_document_name = self._block_document_name
        copy._block_document_id = self._block_document_id
        return copy

    # -- fallbacks, retries, repair ----------------------------------------------------------

    async def _complete_with_fallbacks(self, messages: Sequence[Message], schema: Schema | None) -> Completion:
        requests: list[RequestRecord] = []  # every HTTP request of this call, each model's
        last: ProviderError | None = None
        for index in range(1 + len(self.fallbacks)):
            # Fallback blocks are loaded only when needed: most calls never get there.
            candidate = self if index == 0 else await self._fallback(self.fallbacks[index - 1])
            try:
                completion = await candidate._complete_one_model(messages, schema, requests)
            except RetriesExhausted as spent:
                last = spent.error
                continue
            except ProviderError as error:  # permanent: no fallback can help
                raise _counted(error, requests) from None
            return completion.model_copy(update={"attempts": len(requests), "requests": tuple(requests)})
        assert last is not None
        if self.fallbacks:
            last = ProviderError(
                f"{last.msg}; fallbacks {self.fallbacks} failed too",
                model=last.model,
                status_code=last.status_code,
                transient=True,
            )
        raise _counted(last, requests) from None

    async def _fallback(self, entry: str) -> LLMProvider:
        if entry.startswith(BLOCK_FALLBACK_PREFIX):
            name = entry[len(BLOCK_FALLBACK_PREFIX) :]
            try:
                block: LLMProvider = await LLMProvider.aload(name)
            except ValueError:
                raise ProviderError(
                    f"{self.label}: fallback block {entry!r} does not exist", model=self.model
                ) from None
            # A fallback's own fallbacks are not followed: chains must not loop.
            return block.model_copy(update={"fallbacks": []})
        copy = self.model_copy(update={"model": entry, "fallbacks": []})
        copy._block_document_name = self._block_document_name
        return copy

    async def _complete_one_model(
        self, messages: Sequence[Message], schema: Schema | None, requests: list[RequestRecord]
    ) -> Completion:
        mode = self._output_mode() if schema is not None else "prompt"
        request = list(messages)
        if schema is not None and mode != "json_schema":
            request = with_instruction(request, schema)
        fmt = response_format(schema, mode) if schema is not None else None
        reply = await self._call(request, fmt, requests)
        if schema is None:
            return reply
        try:
            return reply.model_copy(update={"parsed": parse_reply(reply.text, schema)})
        except ParseFailure as failure:
            first_reason = failure.reason
        # One repair request: it is part of parsing, not a retry of a failed call.
        repair = repair_messages(request, reply, first_reason, schema)
        fixed = await self._call(repair, fmt, requests, purpose="repair")
        total = reply.usage + fixed.usage
        cost = _sum_costs(reply.cost_usd, fixed.cost_usd)
        try:
            parsed = parse_reply(fixed.text, schema)
        except ParseFailure as failure:
            # Valid JSON in the wrong shape is a different fault from prose: say which.
            what = (
                f"did not return valid JSON after one repair ({failure.reason})"
                if failure.problems is None
                else f"replied with JSON that does not match the declared outputs after one repair ({failure.problems})"
            )
            error = ProviderError(
                f"{self.label}: model {self.model!r} {what}; the reply begins {quote(fixed.text)}",
                model=self.model,
            )
            error.prompt_tokens, error.completion_tokens = total.prompt_tokens, total.completion_tokens
            error.cost_usd = cost
            raise error from None
        return fixed.model_copy(update={"parsed": parsed, "usage": total, "cost_usd": cost, "repaired": True})

    def _output_mode(self) -> OutputMode:
        if self.structured_output != "auto":
            return self.structured_output
        # Local and OpenAI-compatible servers (llama.cpp, vLLM, Ollama) enforce a JSON
        # schema with a grammar; for hosted models, ask litellm's capability map.
        if is_local_model(self.model) or self.api_base:
            return "json_schema"
        from ._litellm import litellm

        try:
            supported = bool(litellm().supports_response_schema(model=self.model))
        except Exception:  # noqa: BLE001 - unknown model: do not guess an API feature
            supported = False
        return "json_schema" if supported else "prompt"

    async def _call(
        self,
        messages: Sequence[Message],
        fmt: dict[str, Any] | None,
        requests: list[RequestRecord],
        *,
        purpose: Literal["answer", "repair"] = "answer",
    ) -> Completion:
        """One HTTP request with retries; each try is added to ``requests`` with its outcome."""
        kwargs, secrets = await build_request(self, messages, fmt)
        sent = 0.0  # when the try in flight was sent

        def _classify(exc: BaseException) -> Failure:
            return classify(
                exc,
                model=self.model,
                provider=self.label,
                secrets=secrets,
                url=kwargs.get("api_base"),
                block=self._block_document_name,
            )

        def _failed(failure: Failure, attempt: int) -> None:
            error = failure.error
            requests.append(
                RequestRecord(
                    model=self.model,
                    purpose=purpose,
                    outcome="failed",
                    status_code=error.status_code,
                    transient=failure.transient,
                    error=error.msg,
                    latency_s=time.perf_counter() - sent,
                )
            )
            log_failure(failure, attempt)

        async def _once() -> Completion:
            nonlocal sent
            if self.rate_limit:
                from ._rate_limit import acquire_rate_limit

                await acquire_rate_limit(self.label, self.rate_limit, timeout_s=None)
            from ._litellm import litellm

            sent = time.perf_counter()
            response = await litellm().acompletion(**kwargs)
            latency = time.perf_counter() - sent
            completion = completion_from(self, response)
            requests.append(RequestRecord(model=self.model, purpose=purpose, outcome="answered", latency_s=latency))
            return completion

        backoff = Backoff(base_s=self.retry_backoff_s, max_s=self.max_backoff_s)
        completion, _ = await call_with_retries(
            _once, classify=_classify, max_retries=self.max_retries, backoff=backoff, on_failure=_failed
        )
        return completion


def _counted(error: ProviderError, requests: list[RequestRecord]) -> ProviderError:
    """``error`` carrying every request of the call that ends with it."""
    error.attempts, error.requests = len(requests), list(requests)
    return error


def _sum_costs(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b
