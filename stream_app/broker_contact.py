"""Whether this worker can reach the Kafka cluster: a metadata request that succeeded recently.

Faust's consumer and producer retry a lost connection quietly (the consumer keeps its assignment
until the session times out), so the assignment alone says nothing about the broker. A background
task (agents/guard.py) asks for cluster metadata every `CHECK_INTERVAL_SECONDS` through the
producer's client; /ready and `loyalty_broker_connected` report the broker lost once no request
succeeded for `STALE_AFTER_SECONDS`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 2.0
REQUEST_TIMEOUT_SECONDS = 5.0
STALE_AFTER_SECONDS = 15.0


class BrokerContact:
    """The time of the last successful metadata request, and what follows from it."""

    def __init__(self, stale_after: float = STALE_AFTER_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_after, self._clock = stale_after, clock
        self._last: float | None = None  # never, yet

    def succeeded(self) -> None:
        self._last = self._clock()

    def connected(self) -> bool:
        return self._last is not None and self._clock() - self._last <= self._stale_after

    def seconds_since_contact(self) -> float | None:
        return None if self._last is None else self._clock() - self._last


async def probe(request: Callable[[], Awaitable[bool]], contact: BrokerContact,
                timeout: float = REQUEST_TIMEOUT_SECONDS) -> bool:
    """One metadata request (`request()` is True when a broker answered); record a success."""
    try:
        answered = await asyncio.wait_for(request(), timeout)
    except (TimeoutError, OSError, KafkaError) as exc:
        log.debug("broker metadata request failed: %r", exc)
        return False
    if answered:
        contact.succeeded()
    return bool(answered)
