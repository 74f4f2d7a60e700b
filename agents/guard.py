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

from faust.exceptions import NotReady

from stream_app import metrics
from stream_app.app import app, broker, failstop
from stream_app.assignment import uncovered
from stream_app.broker_contact import CHECK_INTERVAL_SECONDS, probe
from stream_app.failstop import EXIT_CODES, Failure
from stream_app.faust_compat import refuse_commits, request_rejoin

log = logging.getLogger(__name__)
REJOIN_AT_MOST_EVERY_SECONDS = 30.0
_last_rejoin: float | None = None

SHUTDOWN_POLL_SECONDS = 0.2

for _reason in EXIT_CODES:
    metrics.WORKER_FAILED.labels(_reason).set(0)
metrics.BROKER_CONNECTED.set_function(lambda: 1 if broker.connected() else 0)  # as of the scrape


def _stop_committing(failure: Failure) -> None:
    refuse_commits(app.consumer)


def _report(failure: Failure) -> None:
    metrics.WORKER_FAILED.labels(failure.reason).set(1)


failstop.on_failure(_stop_committing)
failstop.on_failure(_report)


@app.task
async def watch_for_shutdown() -> None:
    """Tell the FailStop as soon as the app begins to stop (mode sets `should_stop` first thing)."""
    try:
        while not app.should_stop:
            await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
    finally:  # cancelled: the app is stopping too
        failstop.shutting_down()


@app.task
async def check_broker() -> None:
    async def metadata() -> bool:
        try:
            client = app.producer._ensure_producer().client  # the producer's, as ProducerSink uses
        except NotReady:  # not started yet
            return False
        return await client.force_metadata_update()

    while not app.should_stop:
        await probe(metadata, broker)
        await asyncio.sleep(CHECK_INTERVAL_SECONDS)


def _sources_by_changelog() -> dict[str, list[str]]:
    """Each table's changelog topic -> the topics of the agents that write it."""
    from agents.devices import device_links
    from tables.devices import devices
    from tables.members import members
    from topics.channels import consumed

    return {members.changelog_topic.get_topic_name(): sorted(consumed.topics),
            devices.changelog_topic.get_topic_name(): sorted(device_links.topics)}


@app.on_rebalance_complete.connect
async def _check_assignment(sender, **kwargs) -> None:
    global _last_rejoin
    gaps = uncovered(app.consumer.assignment(), _sources_by_changelog())
    if not gaps:
        return
    now = time.monotonic()
    if _last_rejoin is not None and now - _last_rejoin < REJOIN_AT_MOST_EVERY_SECONDS:
        log.error("assignment still lacks changelog partitions %s; next rebalance request in at most %.0fs",
                  gaps, REJOIN_AT_MOST_EVERY_SECONDS)
        return
    _last_rejoin = now
    log.warning("assignment lacks changelog partitions %s (a stale assignment): asking the group to rebalance", gaps)
    asyncio.ensure_future(request_rejoin(app))  # not awaited here: Faust's recovery awaits this signal
