"""Backoff arithmetic and the retry loop, with time injected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmark.blocks import Backoff
from taskmark.blocks._errors import Failure
from taskmark.blocks._retry import RetriesExhausted, call_with_retries
from taskmark.errors import ProviderError


def _failure(transient: bool, retry_after: float | None = None) -> Failure:
    error = ProviderError("p: model 'm' failed", model="m", status_code=503, transient=transient)
    return Failure(error=error, retry_after_s=retry_after)


def test_delay_doubles_and_is_capped_without_jitter() -> None:
    backoff = Backoff(base_s=1.0, max_s=5.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


@given(
    retry=st.integers(min_value=0, max_value=30),
    draw=st.floats(min_value=0.0, max_value=0.999),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_jitter_only_shortens_and_never_goes_negative(retry: int, draw: float, jitter: float) -> None:
    backoff = Backoff(base_s=0.5, max_s=30.0, jitter=jitter, rng=lambda: draw)
    delay = backoff.delay(retry)
    assert delay is not None
    assert 0.0 <= delay <= min(30.0, 0.5 * 2**retry)


def test_retry_after_is_a_floor() -> None:
    backoff = Backoff(base_s=0.1, max_s=60.0, jitter=0.0)
    assert backoff.delay(0, retry_after_s=7.0) == 7.0
    assert backoff.delay(10, retry_after_s=0.0) == pytest.approx(60.0)


def test_retry_after_beyond_the_cap_gives_up() -> None:
    assert Backoff(max_s=10.0).delay(0, retry_after_s=11.0) is None


async def test_transient_failures_are_retried_with_the_computed_delays() -> None:
    slept: list[float] = []
    outcomes = [_failure(True, retry_after=3.0), _failure(True), None]

    async def call() -> str:
        if outcomes[0] is not None:
            outcomes.pop(0)
            raise RuntimeError("boom")
        return "done"

    failures = iter([_failure(True, retry_after=3.0), _failure(True)])

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    value, attempts = await call_with_retries(
        call,
        classify=lambda _exc: next(failures),
        max_retries=3,
        backoff=Backoff(base_s=0.5, jitter=0.0),
        sleep=sleep,
    )
    assert (value, attempts) == ("done", 3)
    assert slept == [3.0, 1.0]


async def test_permanent_failure_is_raised_at_once() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("bad request")

    async def sleep(_seconds: float) -> None:
        raise AssertionError("a permanent failure must not wait")

    with pytest.raises(ProviderError, match="failed") as info:
        await call_with_retries(
            call, classify=lambda _e: _failure(False), max_retries=5, backoff=Backoff(), sleep=sleep
        )
    assert calls == 1
    assert info.value.transient is False


async def test_budget_spent_reports_the_attempts() -> None:
    async def call() -> None:
        raise RuntimeError("503")

    async def sleep(_seconds: float) -> None:
        return None

    with pytest.raises(RetriesExhausted) as info:
        await call_with_retries(call, classify=lambda _e: _failure(True), max_retries=2, backoff=Backoff(), sleep=sleep)
    assert info.value.attempts == 3
    assert info.value.error.msg.endswith("(gave up after 3 attempts)")
