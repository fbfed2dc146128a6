"""The sign-in throttle's window, on a clock the test moves (no sleeping)."""

from __future__ import annotations

from aicrm.api.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waiting_retry_after_seconds_lets_a_client_try_again() -> None:
    clock = Clock()
    throttle = Throttle(failures=3, window=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("a") is None
        throttle.failed("a")
        clock.now += 5
    wait = throttle.retry_after("a")
    assert wait == 45  # the first failure (at 1000) leaves the window at 1060; now is 1015
    assert throttle.retry_after("b") is None  # other clients are not affected
    clock.now += wait - 1
    assert throttle.retry_after("a") == 1
    clock.now += 1  # the advice followed: waited Retry-After seconds in all
    assert throttle.retry_after("a") is None
    throttle.failed("a")  # one more try, then blocked again until the next one ages out
    assert throttle.retry_after("a") == 5


def test_memory_is_bounded() -> None:
    from aicrm.api import throttle as module

    clock = Clock()
    limited = Throttle(clock=clock)
    for i in range(module.MAX_CLIENTS + 50):
        limited.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limited._seen) == module.MAX_CLIENTS
