"""Retrying transient failures: exponential backoff with jitter that honours Retry-After.

Retries live here rather than in litellm (``num_retries=0``) or the OpenAI client
(``max_retries=0``) so that one policy, one classification and one count of attempts apply
to every provider, and so that fallbacks start only after this budget is spent.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from taskmark.errors import ProviderError

from ._errors import Failure

__all__ = ["Backoff", "RetriesExhausted", "call_with_retries"]

T = TypeVar("T")


class RetriesExhausted(Exception):
    """A transient failure outlasted the retry budget: fallbacks may be tried next.

    ``error`` is the last failure, its message extended with the number of attempts.
    """

    def __init__(self, error: ProviderError, attempts: int) -> None:
        self.error = error
        self.attempts = attempts
        super().__init__(error.msg)


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retry number ``n`` (0-based).

    The wait is ``base_s * 2**n``, capped at ``max_s``, less a random share of up to
    ``jitter`` of it, so that many workers hitting one limit do not retry in lockstep.
    A server's Retry-After is a floor: we never come back sooner than asked.
    """

    base_s: float = 1.0
    max_s: float = 60.0
    jitter: float = 0.5
    rng: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, retry: int, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before retry ``retry``, or None to give up on this model.

        Args:
            retry: 0 for the first retry, 1 for the second, and so on.
            retry_after_s: What the server asked for, if anything.

        Returns:
            The delay; None when the server asks for more than ``max_s``, since retrying
            sooner would only be refused again (fallbacks, if any, are tried instead).
        """
        computed = float(min(self.max_s, self.base_s * (2**retry)))
        computed -= computed * self.jitter * float(self.rng())
        if retry_after_s is None:
            return computed
        if retry_after_s > self.max_s:
            return None
        return max(retry_after_s, computed)


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    classify: Callable[[BaseException], Failure],
    max_retries: int,
    backoff: Backoff,
    on_failure: Callable[[Failure, int], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[T, int]:
    """Run ``call`` until it succeeds, fails permanently, or the retry budget is spent.

    Args:
        call: Makes one attempt.
        classify: Turns an exception into a ``Failure``.
        max_retries: Retries after the first attempt (0: one attempt only).
        backoff: Delay policy.
        on_failure: Told of each failed attempt (for logging), with the attempt number.
        sleep: Injected for tests.

    Returns:
        The result and the number of attempts made.

    Raises:
        ProviderError: A permanent failure, at once.
        RetriesExhausted: A transient failure, once the budget is spent.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call(), attempt
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised typed
            failure = classify(exc)
        if on_failure is not None:
            on_failure(failure, attempt)
        if not failure.transient:
            failure.error.attempts = attempt
            raise failure.error from None
        if attempt > max_retries:
            raise _gave_up(failure.error, attempt) from None
        delay = backoff.delay(attempt - 1, failure.retry_after_s)
        if delay is None:
            raise _gave_up(failure.error, attempt, "Retry-After exceeds the backoff cap") from None
        await sleep(delay)


def _gave_up(error: ProviderError, attempts: int, why: str | None = None) -> RetriesExhausted:
    noun = "attempt" if attempts == 1 else "attempts"
    suffix = f" (gave up after {attempts} {noun}{': ' + why if why else ''})"
    final = ProviderError(error.msg + suffix, model=error.model, status_code=error.status_code, transient=True)
    final.attempts = attempts
    return RetriesExhausted(final, attempts)
