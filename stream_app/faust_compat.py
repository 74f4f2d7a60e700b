"""What this app needs from faust-streaming beyond its documented API, in one place, checked.

Written against faust-streaming 0.15.3; tests/unit/shell/test_faust_compat.py fails when the code
underneath changes (version, signatures, call paths), so an upgrade re-checks each item:

- `refuse_commits(consumer)`: after a fail-stop (stream_app/failstop.py) no offset may be
  committed. Faust commits from its commit timer, after every `broker_commit_every` acks, in
  `wait_empty` (rebalances, shutdown), on task errors and through `app.commit`; every one of those
  calls `Consumer.commit`, which calls `Consumer.force_commit`, the only caller of the code that
  computes and sends offsets (`_commit_tps` -> `_commit_offsets` -> `_commit`). Replacing
  `force_commit` on the consumer instance therefore stops them all.
- `verify_source_partitions(table, source_topic, verify)`: Faust checks at a table's first write
  from a source topic that the topic and the table's changelog have as many partitions
  (`Table._verify_source_topic_partitions`), with the counts of the consumer's metadata snapshot
  (aiokafka's `GroupCoordinator._metadata_snapshot`). A topic missing from the metadata when the
  group was joined counts 0 there (aiokafka: `partitions_for_topic(topic) or []`); at a fresh
  deployment's first start the changelog topics, created moments before, can be missing, and the
  first write would raise PartitionsMismatch ("... has 0 partitions") and fail-stop the worker.
  The check is skipped while a count is 0 (and not remembered, so the next write checks again); a
  real mismatch still raises. aiokafka rejoins the group once the topic shows up in its metadata.
- `request_rejoin(app)`: makes the consumer rejoin its group now, from the consumer's own thread
  (Faust runs aiokafka in `AIOKafkaConsumerThread`: `call_thread`, `_ensure_consumer()`), with
  aiokafka's `GroupCoordinator.request_rejoin`. A rejoining group leader always makes the broker
  rebalance (for a follower with unchanged metadata the broker just answers with the current
  assignment), which is how aiokafka itself reacts to topic metadata changes. Used when a static
  member got a stale assignment back (stream_app/assignment.py).
- Static membership needs no override: `AIOKafkaConsumerThread._create_worker_consumer` passes
  `conf.consumer_group_instance_id` to aiokafka as `group_instance_id` (stream_app/app.py sets it
  from LOYALTY_WORKER_NAME).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECKED_FAUST_VERSION = "0.15.3"


def refuse_commits(consumer) -> None:
    """From now on every offset commit of `consumer` (a Faust Consumer) commits nothing."""

    log.warning("offset commits refused from now on: the worker has failed and is stopping")

    async def _refused(*args, **kwargs) -> bool:
        return False

    consumer.force_commit = _refused


def verify_source_partitions(table, source_topic: str, verify: Callable[[str], None]) -> None:
    """Faust's partition-count check (`verify`), once the consumer's metadata knows both topics."""
    consumer = table.app.consumer
    if 0 in (consumer.topic_partitions(source_topic), consumer.topic_partitions(table.changelog_topic_name)):
        return  # one topic missing from the metadata snapshot: check again at the next write
    verify(source_topic)


async def request_rejoin(app) -> None:
    """Ask the group to rebalance: the consumer rejoins at its next poll."""
    thread = app.consumer._thread

    async def rejoin() -> None:
        thread._ensure_consumer()._coordinator.request_rejoin()

    await thread.call_thread(rejoin)
