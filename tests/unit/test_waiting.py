"""The tests' one polling helper: returns the value, retries until true, fails with the message."""

from __future__ import annotations

import pytest

from support.waiting import eventually, eventually_sync


class Countdown:
    """Falsy (or failing) for the first ``misses`` calls, then ``value``."""

    def __init__(self, misses: int, value: object = "ready", *, fail: bool = False) -> None:
        self.misses = misses
        self.value = value
        self.fail = fail
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.calls <= self.misses:
            assert not self.fail, f"not yet ({self.calls})"
            return None
        return self.value


async def test_returns_the_first_truthy_value() -> None:
    check = Countdown(0, {"id": 7})
    assert await eventually(check, interval=0) == {"id": 7}
    assert check.calls == 1


async def test_retries_a_falsy_check_until_it_is_true() -> None:
    check = Countdown(3)
    assert await eventually(check, interval=0) == "ready"
    assert check.calls == 4


async def test_an_assertion_error_means_not_yet() -> None:
    check = Countdown(2, fail=True)
    assert await eventually(check, interval=0) == "ready"
    assert check.calls == 3


async def test_an_async_check_is_awaited() -> None:
    sync = Countdown(2, 42)

    async def check() -> object:
        return sync()

    assert await eventually(check, interval=0) == 42


async def test_times_out_with_the_message_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the answer; last value: 0") as info:
        await eventually(lambda: 0, timeout=0.05, interval=0.01, message="the answer")
    assert "timed out after 0.05 s" in str(info.value)


async def test_times_out_with_the_last_assertion_error() -> None:
    check = Countdown(10**9, fail=True)
    with pytest.raises(AssertionError, match=r"waiting for the gate; last check failed: not yet") as info:
        await eventually(check, timeout=0.05, interval=0.01, message="the gate")
    assert isinstance(info.value.__cause__, AssertionError)


async def test_other_errors_end_the_wait_at_once() -> None:
    calls = []

    def check() -> bool:
        calls.append(1)
        raise KeyError("broken")

    with pytest.raises(KeyError):
        await eventually(check, interval=0)
    assert len(calls) == 1


def test_the_sync_twin_retries_and_times_out_alike() -> None:
    check = Countdown(2)
    assert eventually_sync(check, interval=0) == "ready"
    assert check.calls == 3
    with pytest.raises(AssertionError, match=r"waiting for nothing; last value: \[\]"):
        eventually_sync(list, timeout=0.05, interval=0.01, message="nothing")


def test_the_sync_twin_refuses_an_async_check() -> None:
    async def check() -> bool:
        return True

    with pytest.raises(TypeError, match="async check"):
        eventually_sync(check)
