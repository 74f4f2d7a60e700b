"""The worker's guards: fail-stop wiring, the shutdown deadline, and the broker connection check.

- At a fail-stop (stream_app/failstop.py) every further offset commit is refused
  (stream_app/faust_compat.py) and `loyalty_worker_failed{reason}` goes to 1.
- When the worker begins to stop (SIGTERM), the FailStop is told, so the process is gone within
  its shutdown deadline whatever it waits for.
- Every few seconds a metadata request through the producer's client tells whether the brokers
  answer (stream_app/broker_contact.py); /ready and `loyalty_broker_connected` follow it.
- After every rebalance, an assignment that lacks a table's changelog partitions (a static member
  handed a stale assignment back, stream_app/assignment.py) makes the group rebalance again.
"""
from __future__ import annotations

import asyncio
import logging
import time

import faust
from faust.exceptions import NotReady

from stream_app import metrics
from stream_app.assignment import uncovered
from stream_app.broker_contact import CHECK_INTERVAL_SECONDS, probe
from stream_app.failstop import EXIT_CODES, Failure
from stream_app.faust_compat import raw_producer, refuse_commits, request_rejoin
from stream_app.parts import Parts

log = logging.getLogger(__name__)
REJOIN_AT_MOST_EVERY_SECONDS = 30.0
SHUTDOWN_POLL_SECONDS = 0.2


def register(app: faust.App, parts: Parts) -> None:
    failstop, broker = parts.failstop, parts.broker
    for reason in EXIT_CODES:
        metrics.WORKER_FAILED.labels(reason).set(0)
    metrics.BROKER_CONNECTED.set_function(lambda: 1 if broker.connected() else 0)  # as of the scrape

    def stop_committing(failure: Failure) -> None:
        refuse_commits(app.consumer)

    def report(failure: Failure) -> None:
        metrics.WORKER_FAILED.labels(failure.reason).set(1)

    failstop.on_failure(stop_committing)
    failstop.on_failure(report)

    async def watch_for_shutdown() -> None:
        """Tell the FailStop as soon as the app begins to stop (mode sets `should_stop` first thing)."""
        try:
            while not app.should_stop:
                await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
        finally:  # cancelled: the app is stopping too
            failstop.shutting_down()

    async def check_broker() -> None:
        async def metadata() -> bool:
            try:
                client = raw_producer(app).client  # the producer's, as ProducerSink uses
            except NotReady:  # not started yet
                return False
            return await client.force_metadata_update()

        while not app.should_stop:
            await probe(metadata, broker)
            await asyncio.sleep(CHECK_INTERVAL_SECONDS)

    app.task(watch_for_shutdown)
    app.task(check_broker)

    sources_by_changelog = {parts.members.changelog_topic.get_topic_name(): sorted(parts.topics.consumed.topics),
                            parts.devices.changelog_topic.get_topic_name(): [parts.names.name("devices")]}
    last_rejoin: list[float] = []

    @app.on_rebalance_complete.connect
    async def _check_assignment(sender, **kwargs) -> None:
        gaps = uncovered(app.consumer.assignment(), sources_by_changelog)
        if not gaps:
            return
        now = time.monotonic()
        if last_rejoin and now - last_rejoin[-1] < REJOIN_AT_MOST_EVERY_SECONDS:
            log.error("assignment still lacks changelog partitions %s; next rebalance request in at most %.0fs",
                      gaps, REJOIN_AT_MOST_EVERY_SECONDS)
            return
        last_rejoin[:] = [now]
        log.warning("assignment lacks changelog partitions %s (a stale assignment): asking the group to rebalance",
                    gaps)
        asyncio.ensure_future(request_rejoin(app))  # not awaited here: Faust's recovery awaits this signal
