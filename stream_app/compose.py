"""The composition root: settings and a program in, a wired Faust app out.

Everything the worker runs is built here, once, in the order data flows (topics in, tables,
agents, topics out, then the operator surface), and each part is passed to the modules that use
it (`register(app, parts)`); no module reaches for a global. Several apps, each with its own
program and store, can live in one process (the agent tests build one each).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from agents import devices as device_agent
from agents import guard, observe, projection, schedule
from agents import process as process_agent
from agents import rewards as reward_agent
from agents.emit import Emitter
from agents.intake import READ_BATCH
from agents.member_index import MemberIndex
from stream_app import faust_compat, program_guard, runtime, web
from stream_app.broker_contact import BrokerContact
from stream_app.core.due_schedule import DueSchedule
from stream_app.core.program import Program
from stream_app.core.program_versions import ProgramVersions
from stream_app.failstop import FailStop
from stream_app.kafka_security import client_options, exit_unless_login, faust_credentials
from stream_app.parts import Parts
from stream_app.settings import Settings
from tables.devices import devices_table
from tables.member_index import member_index_table
from tables.members import members_table
from tables.redis_projection import RedisProjection, key_prefix
from tables.rewards import rewards_table
from topics.catalog import TopicNames
from topics.declare import create_at_worker_init
from topics.kafka_topics import KafkaTopics
from topics.outgoing import MAX_RECORD_BYTES, OutgoingBatches, ProducerSink

#: Faust and aiokafka log every send at DEBUG; building those records cost ~9% of a worker's time.
CHATTY_LOGGERS = ("aiokafka", "faust.topics")
METADATA_MAX_AGE_MS = 10_000


def faust_app(settings: Settings) -> faust.App:
    """The Faust app with the service's delivery, producer and web settings (docs/configuration.md)."""
    return faust.App(
        settings.app_id,
        broker=settings.broker,
        broker_credentials=faust_credentials(settings.kafka_security),
        store=settings.store,
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        # None of Faust's built-in pages (see also faust_compat.drop_builtin_pages).
        web_router_enabled=False, web_tables_enabled=False, web_graph_enabled=False,
        web_stats_enabled=False, web_metrics_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        topic_allow_declare=True,
        topic_disable_leader=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        table_standby_replicas=1,
        broker_commit_every=1000,
        # Records handed over per fetch: with no bound a fetch brings up to 1 MiB of every partition, and
        # what the event-time merge pauses keeps arriving for a whole fetch (agents/intake.py `_pace`).
        broker_max_poll_records=READ_BATCH,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_seconds,
        # A topic created at start-up can be missing from the consumer's first metadata; Kafka clients
        # look again only after this age (default 5 min), and until then the group is assigned without
        # it (docs/scaling.md, "Events lost after a restart or a rebalance").
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 4),
        consumer_group_instance_id=settings.worker_name,  # static membership: a restart rejoins without waiting
        key_serializer="raw",
        value_serializer="raw",
        producer_linger=0.005,  # batch sends for 5 ms: far fewer produce requests per event
        producer_max_batch_size=512 * 1024,  # an agent batch goes out as one record batch per partition
        producer_max_request_size=MAX_RECORD_BYTES,  # 1 MiB: the largest record sent, as the broker's default limit
        producer_request_timeout=30.0,  # a failed delivery surfaces (and is retried) after 30 s, not Faust's 20 min
        autodiscover=False,
        Monitor=runtime.QuietMonitor,  # no per-message bookkeeping for Faust's own /stats pages (not served)
        cython_optimizations=True,  # faust-streaming's repaired Cython fast paths (stream iterator, conductor)
    )


def build_parts(settings: Settings, program: Program, versions: ProgramVersions | None = None) -> Parts:
    """Every part of one deployment, unregistered; `versions` defaults to `program` alone, since always."""
    faust_compat.check()
    faust_compat.keep_delivered_on_resume()
    faust_compat.fast_hand_off()
    app = faust_app(settings)
    names = TopicNames(settings.topic_prefix)
    outgoing = OutgoingBatches(ProducerSink(app), kind_of=names.kind_of)
    changelogs = OutgoingBatches(ProducerSink(app), kind_of=names.kind_of)
    failstop = FailStop()
    members = members_table(app, changelogs=changelogs, partitions=settings.partitions)
    index = member_index_table(app, changelogs=changelogs, partitions=settings.partitions)
    return Parts(
        settings=settings, program=program, app=app, names=names,
        topics=KafkaTopics(app, names, settings.partitions),
        outgoing=outgoing, changelogs=changelogs, members=members,
        devices=devices_table(app, changelogs=changelogs, partitions=settings.partitions),
        member_index=MemberIndex(app, index, members, program, changelogs, settings.partitions, failstop),
        rewards=rewards_table(app, changelogs=changelogs, partitions=settings.partitions),
        schedule=DueSchedule(),
        projection=RedisProjection(settings.redis_url, key_prefix(settings.app_id)),
        emitter=Emitter(outgoing, names),
        failstop=failstop, broker=BrokerContact(),
        versions=versions or ProgramVersions.single(program),
    )


@dataclass(frozen=True, slots=True)
class Wired:
    """A built app, its parts, and what each module registered on it."""

    app: faust.App
    parts: Parts
    processor: process_agent.MemberProcessor
    indexer: device_agent.DeviceIndexer
    due_work: schedule.DueWork
    observer: observe.Observer
    reward_agent: reward_agent.RewardAgent


def build_app(settings: Settings, program: Program, versions: ProgramVersions | None = None) -> Wired:
    """The wired app: agents, timers, tasks, sensors and web routes registered on it."""
    parts = build_parts(settings, program, versions)
    app = parts.app
    wired = Wired(app, parts, processor=process_agent.register(app, parts), indexer=device_agent.register(app, parts),
                  due_work=schedule.register(app, parts), observer=observe.register(app, parts),
                  reward_agent=reward_agent.register(app, parts))
    projection.register(app, parts)
    guard.register(app, parts)
    runtime.register(app)
    web.register(app, parts)
    faust_compat.drop_builtin_pages(app)

    @app.on_worker_init.connect
    def _log_levels(sender, **kwargs) -> None:
        """After the worker set up logging (`-l`), LOYALTY_LOG_LEVEL decides."""
        apply_log_level(settings.log_level)

    app.on_worker_init.connect(exit_unless_login(settings))  # a wrong password or no broker: exit 2, not a retry loop
    app.on_worker_init.connect(create_at_worker_init(app, parts.topics.produced.values(), settings.bootstrap_servers,
                                                     dict(client_options(settings.kafka_security))))
    program_guard.register(app, parts)  # after the login check: an edited program version in effect, exit 2

    return wired


def apply_log_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
