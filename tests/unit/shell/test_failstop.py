"""The fail-stop switch (stream_app/failstop.py): one failure latched, reported, and an exit that comes."""
from __future__ import annotations

import asyncio

import pytest

from stream_app.failstop import (
    EXIT_CODES,
    HOLD_SECONDS,
    SHUTDOWN_DEADLINE_SECONDS,
    SHUTDOWN_TIMEOUT_EXIT,
    FailStop,
)


class Clockwork:
    """Records the exit and the timers a FailStop asks for; `fire()` runs them as their time comes."""

    def __init__(self) -> None:
        self.exits: list[int] = []
        self.timers: list[tuple[float, object]] = []

    def failstop(self) -> FailStop:
        return FailStop(exit=self.exits.append, timer=lambda seconds, action: self.timers.append((seconds, action)))

    def fire(self) -> None:
        for _, action in self.timers:
            action()


def test_a_failure_is_latched_reported_and_exits_after_the_hold_with_its_code():
    clock = Clockwork()
    failstop = clock.failstop()
    seen = []
    failstop.on_failure(seen.append)

    failure = failstop.fail("store", OSError("IO error: No space left on device"))

    assert failstop.failure == failure
    assert (failure.reason, failure.exit_code) == ("store", 74)
    assert failure.detail == "OSError: IO error: No space left on device"
    assert seen == [failure]
    assert [seconds for seconds, _ in clock.timers] == [HOLD_SECONDS] and clock.exits == []
    clock.fire()
    assert clock.exits == [74]


def test_only_the_first_failure_counts():
    clock = Clockwork()
    failstop = clock.failstop()
    first = failstop.fail("changelog", RuntimeError("topic gone"))
    again = failstop.fail("internal", ValueError("later"))
    assert again is first and failstop.failure.reason == "changelog"
    assert len(clock.timers) == 1


def test_a_broken_callback_does_not_stop_the_others_nor_the_exit():
    clock = Clockwork()
    failstop = clock.failstop()
    seen = []
    failstop.on_failure(lambda failure: 1 / 0)
    failstop.on_failure(seen.append)
    failstop.fail("output", RuntimeError("x"))
    assert len(seen) == 1 and len(clock.timers) == 1


def test_stopping_a_failed_worker_exits_at_once():
    clock = Clockwork()
    failstop = clock.failstop()
    failstop.fail("authorization", RuntimeError("denied"))
    failstop.shutting_down()
    assert clock.exits == [77]


def test_a_failure_during_a_shutdown_exits_at_once():
    clock = Clockwork()
    failstop = clock.failstop()
    failstop.shutting_down()
    failstop.fail("store", OSError("disk"))
    assert clock.exits == [74]


def test_a_shutdown_that_does_not_finish_exits_at_its_deadline():
    clock = Clockwork()
    failstop = clock.failstop()
    failstop.shutting_down()
    failstop.shutting_down()  # said twice: one deadline
    assert [seconds for seconds, _ in clock.timers] == [SHUTDOWN_DEADLINE_SECONDS]
    assert clock.exits == []
    clock.fire()
    assert clock.exits == [SHUTDOWN_TIMEOUT_EXIT]


def test_exit_codes_are_distinct_per_kind_of_cause():
    assert EXIT_CODES == {"store": 74, "changelog": 74, "output": 78, "authorization": 77, "internal": 70}
    assert SHUTDOWN_TIMEOUT_EXIT not in EXIT_CODES.values() and 0 not in EXIT_CODES.values()
    assert SHUTDOWN_DEADLINE_SECONDS < 30  # SIGTERM stops a worker within 30 s


def test_the_default_timer_runs_its_action_on_a_thread():
    exits: list[int] = []
    failstop = FailStop(hold_seconds=0.01, exit=exits.append)
    failstop.fail("internal", RuntimeError("bug"))
    assert asyncio.run(_wait_for(lambda: exits == [70]))


async def _wait_for(check, seconds: float = 2.0) -> bool:
    for _ in range(int(seconds / 0.01)):
        if check():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_halted_waits_until_cancelled():
    halted = asyncio.ensure_future(Clockwork().failstop().halted())
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(halted), 0.05)
    halted.cancel()
    with pytest.raises(asyncio.CancelledError):
        await halted
