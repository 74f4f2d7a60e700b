"""Every topic the worker reads or writes, created before Faust subscribes to any of them.

Faust creates a table's changelog topic when the table starts, moments before the consumer subscribes;
a topic created that late can be missing from the group's first metadata (0 partitions), and when the
next metadata refresh finds it the whole group rebalances, seconds after it settled. So the worker
creates what is missing at `app.on_worker_init`, with the settings Faust would have used, and waits
until each partition has a leader; Faust's own declarations then find every topic there.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import faust
from mode.utils.times import want_seconds

log = logging.getLogger(__name__)
LEADER_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TopicSpec:
    """What a topic is created with: as `faust.topics.Topic.declare` would create it."""

    name: str
    partitions: int
    replication: int
    config: dict[str, str]


def spec_of(app: faust.App, topic: faust.TopicT) -> list[TopicSpec]:
    """One spec per Kafka topic of a Faust topic (cleanup policy and retention as Faust's driver sets them)."""
    config: dict[str, str] = {}
    policy = [name for name, wanted in (("compact", topic.compacting), ("delete", topic.deleting)) if wanted]
    if policy:
        config["cleanup.policy"] = ",".join(policy)
    if topic.retention:
        config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
    config.update({key: str(value) for key, value in (topic.config or {}).items()})
    partitions = topic.partitions or app.conf.topic_partitions
    replication = topic.replicas or app.conf.topic_replication_factor or 1
    return [TopicSpec(name, partitions, replication, dict(config)) for name in topic.topics]


def worker_topics(app: faust.App, contract: Iterable[faust.TopicT]) -> list[TopicSpec]:
    """The contract's topics and every table's changelog."""
    topics = [*contract, *(table.changelog_topic for table in app.tables.values())]
    return [spec for topic in topics for spec in spec_of(app, topic)]


async def create_missing(admin, specs: list[TopicSpec]) -> list[str]:
    """Create the topics of `specs` the cluster does not have; the names created."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    existing = set(await admin.list_topics())
    missing = [spec for spec in specs if spec.name not in existing]
    if not missing:
        return []
    result = await admin.create_topics([NewTopic(s.name, s.partitions, s.replication, topic_configs=s.config)
                                        for s in missing])
    for name, code, *_ in getattr(result, "topic_errors", []):
        if code not in (0, TopicAlreadyExistsError.errno):  # another worker created it meanwhile: fine
            raise RuntimeError(f"cannot create topic {name}: error code {code}")
    return [spec.name for spec in missing]


async def wait_for_leaders(admin, specs: list[TopicSpec], timeout: float) -> list[str]:
    """Wait until every partition of `specs` has a leader; the topics still without one at `timeout`."""
    deadline = time.monotonic() + timeout
    waiting = {spec.name: spec.partitions for spec in specs}
    while True:
        for description in await admin.describe_topics(list(waiting)):
            led = [p for p in description.get("partitions", ()) if p.get("leader", -1) >= 0]
            if description.get("error_code", 0) == 0 and len(led) >= waiting.get(description["topic"], 0):
                waiting.pop(description["topic"], None)
        if not waiting or time.monotonic() >= deadline:
            return sorted(waiting)
        await asyncio.sleep(0.2)


async def declare(bootstrap: str, options: dict, specs: list[TopicSpec], timeout: float) -> list[str]:
    """Create what is missing and wait for its leaders; the topics created."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="loyalty-topics", **options)
    await admin.start()
    try:
        created = await create_missing(admin, specs)
        if created:
            leaderless = await wait_for_leaders(admin, specs, timeout)
            if leaderless:  # Faust's consumer finds them at its next metadata refresh; the group rebalances once
                log.warning("topics still without a leader after %.0f s: %s", timeout, ", ".join(leaderless))
        return created
    finally:
        await admin.close()


def create_at_worker_init(app: faust.App, contract: Iterable[faust.TopicT], bootstrap: str, options: dict,
                          timeout: float = LEADER_TIMEOUT_S):
    """A receiver for `app.on_worker_init` (after the login check): create the worker's topics.

    Where the login may not create topics (the operator creates them), it says so and goes on: Faust's
    own declarations then run as they would have.
    """
    from aiokafka.errors import KafkaError

    contract = list(contract)

    def receiver(*_: object, **__: object) -> None:
        loop = asyncio.new_event_loop()  # not the worker's loop: that one is created after this
        try:
            created = loop.run_until_complete(declare(bootstrap, options, worker_topics(app, contract), timeout))
            if created:
                log.info("created %d topics: %s", len(created), ", ".join(created))
        except (KafkaError, RuntimeError) as exc:
            log.warning("cannot create the worker's topics before start (%s: %s); Faust declares them as it starts",
                        type(exc).__name__, exc)
        finally:
            loop.close()

    return receiver
