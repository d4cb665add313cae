"""Failure classification in one place: a litellm (or transport) exception in, a
``ProviderError`` out, marked transient or permanent, with any Retry-After the server sent.

Transient: 429, 408, 409, 5xx (500/502/503/504/529), timeouts, connection resets and
unreadable replies. Permanent: 400, 401/403, 404, 422, context-window-exceeded,
content-policy and spend/budget limits. What is not recognised is permanent: retrying an
error we do not understand only multiplies it.

Every message is built here from the status and the provider's reason, with the key
redacted, so no secret can leave through an exception, a log line or a failed state. Two
faults that litellm reports as an HTTP status though no HTTP exchange took place are said as
what they are: a connection that could not be made ("could not connect to URL (connection
refused)", still transient), and a missing key ("no API key for MODEL (set OPENAI_API_KEY
...)", permanent: no request was sent, and none will be until a key is given).
"""

from __future__ import annotations

import email.utils
import re
import socket
import ssl
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
_NO_CREDENTIALS = re.compile(
    r"missing credentials|api_key client option must be set|missing [\w ]{0,30}api key|no api key (was )?(provided|set)",
    re.I,
)
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
    url: str | None = None,
    block: str | None = None,
) -> Failure:
    """Translate an exception from a provider call into a ``Failure``.

    Args:
        exc: What litellm (or httpx underneath it) raised.
        model: The model the call went to.
        provider: A human name for the endpoint (block name, or the litellm provider).
        secrets: Values to redact from the reason (the API key).
        url: The API base the request went to, for a connection failure; None for the
            provider's own (then the URL is taken from the failed request, if known).
        block: The saved ``LLMProvider`` block the call's settings come from, if any: a
            missing key is then fixed on the block.

    Returns:
        The ``ProviderError`` to raise, marked transient or not, and any Retry-After.
    """
    kind = type(exc).__name__
    reason = _reason_of(exc, kind, secrets)
    if _NO_CREDENTIALS.search(reason):
        # litellm reports a missing key as a 500 or 401, though nothing was sent; waiting
        # will not fix it.
        return Failure(error=ProviderError(_no_key(model, provider, block), model=model))
    status = _status_of(exc)
    unreachable = _connect_failure(exc) if status != 408 else None
    if unreachable is not None:
        where = redact(url or _url_of(exc), secrets)
        message = f"{provider}: model {model!r} could not connect to {where} ({unreachable})"
        error = ProviderError(message, model=model, transient=_is_transient(exc, kind, status))
        return Failure(error=error, retry_after_s=None)
    # An exhausted quota arrives as a 429, but waiting does not fix it.
    transient = _is_transient(exc, kind, status) and not _SPEND_LIMIT.search(reason)
    what = "transient" if transient else "permanent"
    status_text = f"HTTP {status}" if status is not None else kind
    message = f"{provider}: model {model!r} failed ({status_text}, {what}): {reason}"
    error = ProviderError(message, model=model, status_code=status, transient=transient)
    return Failure(error=error, retry_after_s=_retry_after(exc) if transient else None)


def _no_key(model: str, provider: str, block: str | None) -> str:
    from ._litellm import key_variables

    names = " or ".join(key_variables(model)) or "the provider's key variable"
    where = (
        f"set {names}, or the api_key of LLMProvider block {block!r}"
        if block
        else f"set {names} or TASKMARK_LLM_API_KEY, or pass --api-key"
    )
    who = "" if provider == model else f"{provider}: "
    return f"{who}no API key for {model!r} ({where})"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


# Raised while opening a connection (httpx, aiohttp under litellm), before any byte of a
# request was sent.
_CONNECT_KINDS = frozenset({"ConnectError", "ClientConnectorError", "ClientConnectorDNSError", "ConnectTimeout"})


def _connect_failure(exc: BaseException) -> str | None:
    """Why a connection could not be opened, or None if the failure came later."""
    chain = _chain(exc)
    if not any(type(e).__name__ in _CONNECT_KINDS or isinstance(e, ConnectionRefusedError) for e in chain):
        return None
    for error in reversed(chain):  # the innermost error is the most precise
        if isinstance(error, ConnectionRefusedError):
            return "connection refused"
        if isinstance(error, socket.gaierror) or type(error).__name__ == "ClientConnectorDNSError":
            return "host name not found"
        if isinstance(error, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(error, TimeoutError) or type(error).__name__ == "ConnectTimeout":
            return "connection timed out"
    return "connection failed"


def _url_of(exc: BaseException) -> str:
    # Innermost first: litellm's own exceptions carry a placeholder request of their own.
    for error in reversed(_chain(exc)):
        try:
            # httpx's ConnectError raises RuntimeError when it carries no request.
            request = getattr(error, "request", None)
        except RuntimeError:
            continue
        url = getattr(request, "url", None)
        if url is not None:
            return str(url)
    return "the provider's API"


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
