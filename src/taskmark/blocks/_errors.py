"""Failure classification in one place: a litellm (or transport) exception in, a
``ProviderError`` out, marked transient or permanent, with any Retry-After the server sent.

Transient: 429, 408, 409, 5xx (500/502/503/504/529), timeouts, connection resets and
unreadable replies. Permanent: 400, 401/403, 404, 422, context-window-exceeded,
content-policy and spend/budget limits. What is not recognised is permanent: retrying an
error we do not understand only multiplies it.

Every message is built here from the status and the provider's reason, with the key
redacted, so no secret can leave through an exception, a log line or a failed state.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskmark.errors import ProviderError

__all__ = ["Failure", "classify", "redact"]

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})

_REASON_LIMIT = 300
# A reason quoted from a provider may echo credentials; mask anything shaped like a key
# even when we do not know its value (a fallback's key, a header).
_KEYLIKE = re.compile(r"\b(?:sk|pk|rk|gsk|xai|key|api[-_]?key)[-_][A-Za-z0-9_\-]{16,}|\bAIza[0-9A-Za-z_\-]{30,}")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
_SPEND_LIMIT = re.compile(r"insufficient_quota|exceeded your current quota|budget|billing", re.I)
_NO_CREDENTIALS = re.compile(r"missing credentials|api_key client option must be set", re.I)
_LITELLM_PREFIX = re.compile(r"^(litellm\.\w+:\s*)+|(\w+Error:\s*)+|OpenAIException\s*-\s*")


@dataclass(frozen=True)
class Failure:
    """A classified failure: the error to raise and how long the server asked us to wait."""

    error: ProviderError
    retry_after_s: float | None = None

    @property
    def transient(self) -> bool:
        """Whether another attempt may succeed."""
        return self.error.transient


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove secrets (and anything shaped like a key) from ``text``.

    Args:
        text: Text that may quote a request, a header or a provider's error body.
        secrets: Known secret values to mask wherever they occur.

    Returns:
        The text with each secret replaced by ``***``.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    return _KEYLIKE.sub("***", text)


def classify(
    exc: BaseException,
    *,
    model: str,
    provider: str,
    secrets: Iterable[str | None] = (),
) -> Failure:
    """Translate an exception from a provider call into a ``Failure``.

    Args:
        exc: What litellm (or httpx underneath it) raised.
        model: The model the call went to.
        provider: A human name for the endpoint (block name, or the litellm provider).
        secrets: Values to redact from the reason (the API key).

    Returns:
        The ``ProviderError`` to raise, marked transient or not, and any Retry-After.
    """
    status = _status_of(exc)
    kind = type(exc).__name__
    reason = _reason_of(exc, kind, secrets)
    # An exhausted quota arrives as a 429, and a missing key as a 500 from litellm, but
    # waiting fixes neither.
    transient = (
        _is_transient(exc, kind, status) and not _SPEND_LIMIT.search(reason) and not _NO_CREDENTIALS.search(reason)
    )
    what = "transient" if transient else "permanent"
    status_text = f"HTTP {status}" if status is not None else kind
    message = f"{provider}: model {model!r} failed ({status_text}, {what}): {reason}"
    error = ProviderError(message, model=model, status_code=status, transient=transient)
    return Failure(error=error, retry_after_s=_retry_after(exc) if transient else None)


def _status_of(exc: BaseException) -> int | None:
    if type(exc).__name__ in {"Timeout", "APITimeoutError", "TimeoutError", "ReadTimeout"}:
        return 408
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


_PERMANENT_KINDS = frozenset(
    {
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "BadRequestError",
        "ContextWindowExceededError",
        "ContentPolicyViolationError",
        "UnprocessableEntityError",
        "UnsupportedParamsError",
        "BudgetExceededError",
        "PaymentRequiredError",
        "RejectedRequestError",
        "InvalidRequestError",
        "LiteLLMUnknownProvider",
    }
)
_TRANSIENT_KINDS = frozenset(
    {
        "RateLimitError",
        "Timeout",
        "APITimeoutError",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "BadGatewayError",
        "MidStreamFallbackError",
        # Transport errors that reach us without litellm wrapping them.
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "ReadTimeout",
        "ConnectTimeout",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "TimeoutError",
    }
)


def _is_transient(exc: BaseException, kind: str, status: int | None) -> bool:
    # The class decides first: litellm reports ContextWindowExceeded as 400 and a dropped
    # connection as 500, and only the class tells them apart.
    for klass in type(exc).__mro__:
        if klass.__name__ in _PERMANENT_KINDS:
            return False
        if klass.__name__ in _TRANSIENT_KINDS:
            return True
    if status is not None:
        return status in TRANSIENT_STATUS
    return isinstance(exc, (ConnectionError, TimeoutError))


def _reason_of(exc: BaseException, kind: str, secrets: Iterable[str | None]) -> str:
    if _status_of(exc) == 408 and kind in {"Timeout", "APITimeoutError", "ReadTimeout"}:
        return "no answer within the timeout"
    raw = getattr(exc, "message", None) or str(exc) or kind
    text = _LITELLM_PREFIX.sub("", str(raw)).strip()
    # litellm appends debugging hints after the reason; the first line is the reason.
    text = text.split("\n", 1)[0].strip() or kind
    text = redact(text, secrets)
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 1] + "…"
    return text


def _retry_after(exc: BaseException) -> float | None:
    for headers in _headers_of(exc):
        value = _header(headers, "retry-after-ms")
        if value is not None:
            try:
                return max(0.0, float(value) / 1000)
            except ValueError:
                pass
        value = _header(headers, "retry-after")
        if value is not None:
            parsed = parse_retry_after(value)
            if parsed is not None:
                return parsed
    return None


def _headers_of(exc: BaseException) -> list[Any]:
    found: list[Any] = []
    for attr in ("litellm_response_headers", "headers"):
        value = getattr(exc, attr, None)
        if value:
            found.append(value)
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "headers", None):
        found.append(response.headers)
    return found


def _header(headers: Any, name: str) -> str | None:  # noqa: ANN401
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if str(key).lower() == name:
                return str(value)
        return None
    getter = getattr(headers, "get", None)
    return str(getter(name)) if getter and getter(name) is not None else None


def parse_retry_after(value: str) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date.

    Args:
        value: The header's value.

    Returns:
        Seconds to wait (never negative), or None when the value is not understood.
    """
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
