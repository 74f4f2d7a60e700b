"""The worker refuses to start when a program version already in effect was edited (docs/program.md).

Before Faust starts (`app.on_worker_init`), the compacted internal topic `program-versions` is read
whole (one record per version name: its hash, written when a worker first ran under it), the
versions in effect now are compared with it (stream_app/core/program_versions.py `guard`), and those
not recorded yet are recorded. An edited version: say which on stderr and exit 2. A version that
takes effect while the worker runs is recorded by a timer at its effective_from.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable

import faust
import orjson
from aiokafka.errors import KafkaError

from stream_app.core.program_versions import ProgramVersions, VersionEdited, guard
from stream_app.failstop import hard_exit
from stream_app.kafka_security import client_options
from stream_app.parts import Parts
from stream_app.settings import Settings
from topics.declare import TopicSpec, create_missing

log = logging.getLogger(__name__)
KIND = "program-versions"
CHECK_EVERY_S = 1.0


async def read_records(bootstrap: str, options: dict, topic: str, partitions: int, replication: int) -> dict[str, dict]:
    """Every version record of `topic` (created compacted when missing), the newest per version name."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="loyalty-program-guard", **options)
    await admin.start()
    try:
        await create_missing(admin, [TopicSpec(topic, partitions, replication, {"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                client_id="loyalty-program-guard", **options)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: dict[str, dict] = {}
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for messages in (await consumer.getmany(*tps, timeout_ms=1000)).values():
                for message in messages:
                    if message.value is not None:
                        records[message.key.decode()] = orjson.loads(message.value)
        return records
    finally:
        await consumer.stop()


async def write_records(bootstrap: str, options: dict, topic: str, records: list[dict]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="loyalty-program-guard", **options)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(topic, orjson.dumps(record), key=record["name"].encode())
    finally:
        await producer.stop()


async def check(settings: Settings, topic: str, versions: ProgramVersions, now: int) -> list[dict]:
    """Compare and record; raises VersionEdited. The records written."""
    options = dict(client_options(settings.kafka_security))
    recorded = await read_records(settings.bootstrap_servers, options, topic, settings.partitions,
                                  settings.replication)
    new = guard(versions, recorded, now)
    if new:
        await write_records(settings.bootstrap_servers, options, topic, new)
    return new


def exit_if_edited(settings: Settings, topic: str, versions: ProgramVersions,
                   clock: Callable[[], float] = time.time) -> Callable[..., None]:
    """A receiver for `app.on_worker_init`: check the versions in effect; exit 2 when one was edited."""

    def receiver(*_: object, **__: object) -> None:
        if len(versions.versions) == 1:
            return  # no [[versions]]: nothing is guarded (the program applies from the next restart on)
        loop = asyncio.new_event_loop()  # not the worker's loop: that one is created after this
        try:
            for record in loop.run_until_complete(check(settings, topic, versions, int(clock() * 1000))):
                log.info("program version %s recorded (sha256 %s)", record["name"], record["hash"])
        except VersionEdited as exc:
            print(f"loyalty: {settings.rules_path or 'the packaged program'}: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        except (KafkaError, OSError) as exc:  # the versions cannot be checked: do not run unchecked
            print(f"loyalty: cannot check the program versions on {topic}: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        finally:
            loop.close()

    return receiver


def register(app: faust.App, parts: Parts) -> None:
    settings, versions = parts.settings, parts.versions
    topic = parts.names.name(KIND)
    app.on_worker_init.connect(exit_if_edited(settings, topic, versions))
    upcoming = [v.effective_from for v in versions.upcoming(int(time.time() * 1000))]
    if not upcoming:
        return

    async def record_versions_taking_effect() -> None:
        """Record each version as it takes effect while this worker runs (an edit after that is refused)."""
        while upcoming:
            await asyncio.sleep(max(0.0, upcoming[0] / 1000 - time.time()))
            upcoming.pop(0)
            try:
                await check(settings, topic, versions, int(time.time() * 1000))
            except VersionEdited as exc:  # another worker recorded other contents: the workers' files differ
                log.critical("%s", exc)
                hard_exit(2)  # as at start; what was not committed is read again (at-least-once)

    app.task(record_versions_taking_effect, name="stream_app.program_guard.record_versions_taking_effect")
