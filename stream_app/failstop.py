"""Fail-stop: what a worker does once it can no longer make the events it consumed durable.

A state store that cannot write (disk full, I/O error), a changelog or output record the broker
refuses for good (topic gone, authorization, size) or a bug in the batch pipeline leave events
consumed but not durably applied. Resuming in process would mean reopening RocksDB (it stays
read-only after a background I/O error), rebuilding the in-flight batches and seeking the
consumer back; a restart does all of that already and is tested (SIGKILL). So `FailStop.fail`:

1. latches the failure: the batch pipelines ack nothing from then on and their agents stop
   taking events (agents/batch.py), so no offset past the last durable batch can become
   committable;
2. runs the `on_failure` callbacks at once: the wiring (agents/guard.py) refuses every further
   offset commit (stream_app/faust_compat.py) and sets `loyalty_worker_failed`, and /ready and
   /health answer 503;
3. exits the process with the failure's code after `hold_seconds` (so probes and a scrape see
   it), or at once when the worker is asked to stop; the exit skips Faust's shutdown, which
   would wait forever for the held events (`wait_empty`).

A supervisor restarts the worker; it resumes from the last committed offset, and replayed events
are duplicates the members' event ids absorb. Exit codes (docs/operations.md): `EXIT_CODES`.

`shutting_down()` is the other half: once the worker begins to stop (SIGTERM), it must be gone
within `SHUTDOWN_DEADLINE_SECONDS` whatever it waits for (a delivery that keeps failing, a full
disk), so a thread exits the process then, with `SHUTDOWN_TIMEOUT_EXIT`; nothing is committed
past what was applied, as after a SIGKILL.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

log = logging.getLogger(__name__)

#: Exit code per failure reason (sysexits.h values, so a supervisor can tell them apart).
EXIT_CODES = {
    "store": 74,  # EX_IOERR: the local state store cannot write (disk full, I/O error)
    "changelog": 74,  # EX_IOERR: a table changelog record cannot be delivered (topic gone, too large, refused)
    "output": 78,  # EX_CONFIG: an output topic refuses records for good (topic gone, invalid, size limit)
    "authorization": 77,  # EX_NOPERM: the broker refuses this worker's credentials for a topic or the cluster
    "internal": 70,  # EX_SOFTWARE: an unexpected error in the batch pipeline itself
}
SHUTDOWN_TIMEOUT_EXIT = 75  # EX_TEMPFAIL: asked to stop, but in-flight work did not finish in time
HOLD_SECONDS = 15.0  # a failed worker stays up this long, unready, before it exits
SHUTDOWN_DEADLINE_SECONDS = 20.0  # from the start of a shutdown to the process's exit, at most


class StoreFailure(Exception):
    """The local state store could not read or write (disk full, I/O error): reason `store`."""


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str  # a key of EXIT_CODES
    detail: str
    exit_code: int


def hard_exit(code: int) -> NoReturn:
    """Leave now, without running Faust's shutdown (it would commit and wait for held events)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _thread_timer(seconds: float, action: Callable[[], None]) -> None:
    """Run `action` after `seconds` on a daemon thread: it fires even if the event loop is stuck."""
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


class FailStop:
    """The worker's one-way switch from processing to stopped, shared by every batch pipeline."""

    def __init__(self, *, hold_seconds: float = HOLD_SECONDS,
                 shutdown_deadline_seconds: float = SHUTDOWN_DEADLINE_SECONDS,
                 exit: Callable[[int], None] = hard_exit,
                 timer: Callable[[float, Callable[[], None]], None] = _thread_timer) -> None:
        self.failure: Failure | None = None
        self._hold, self._deadline = hold_seconds, shutdown_deadline_seconds
        self._exit, self._timer = exit, timer
        self._callbacks: list[Callable[[Failure], None]] = []
        self._stopping = False

    def on_failure(self, callback: Callable[[Failure], None]) -> None:
        """Call `callback(failure)` at the failure, before anything else can run."""
        self._callbacks.append(callback)

    def fail(self, reason: str, exc: BaseException) -> Failure:
        """Latch the first failure (later ones are only logged) and schedule the exit."""
        if self.failure is not None:
            log.error("also failed after the worker stopped (%s): %s: %s", reason, type(exc).__name__, exc)
            return self.failure
        failure = self.failure = Failure(reason, f"{type(exc).__name__}: {exc}"[:500], EXIT_CODES[reason])
        log.critical("worker failed (%s): %s; consumption and offset commits stopped, exiting with %d in %.0fs",
                     reason, failure.detail, failure.exit_code, 0 if self._stopping else self._hold,
                     exc_info=exc)
        for callback in self._callbacks:
            try:
                callback(failure)
            except Exception:  # the others (and the exit) must still run
                log.exception("failure callback %r failed", callback)
        if self._stopping:
            self._exit(failure.exit_code)
        else:
            self._timer(self._hold, lambda: self._exit(failure.exit_code))
        return failure

    def shutting_down(self) -> None:
        """The worker begins to stop: exit now if it failed, else at the shutdown deadline at the latest."""
        if self._stopping:
            return
        self._stopping = True
        if self.failure is not None:
            log.warning("stopping a failed worker: exiting with %d now", self.failure.exit_code)
            self._exit(self.failure.exit_code)
            return
        self._timer(self._deadline, self._shutdown_overdue)

    def _shutdown_overdue(self) -> None:
        log.error("shutdown did not finish within %.0fs (in-flight work is stuck): exiting with %d; "
                  "uncommitted events are consumed again at the next start", self._deadline, SHUTDOWN_TIMEOUT_EXIT)
        self._exit(SHUTDOWN_TIMEOUT_EXIT)

    async def halted(self) -> NoReturn:
        """Wait for the exit: what an agent does after a failure instead of taking more events."""
        await asyncio.get_running_loop().create_future()
        raise AssertionError("a halted agent was resumed")
