"""The Faust application: `faust -A stream_app.app worker` or `loyalty worker`."""
from __future__ import annotations

import logging

import faust

from stream_app.broker_contact import BrokerContact
from stream_app.core.program import load_program
from stream_app.failstop import FailStop
from stream_app.settings import load_settings
from topics.catalog import TopicNames
from topics.outgoing import MAX_RECORD_BYTES

settings = load_settings()
program = load_program(settings.rules_path)
topic_names = TopicNames(settings.topic_prefix)
failstop = FailStop()  # shared by every batch pipeline (agents/batch.py), /ready and agents/guard.py
broker = BrokerContact()  # kept by agents/guard.py, read by /ready

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    store=settings.store,
    datadir=str(settings.data_dir),
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_bind="0.0.0.0",
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication,
    topic_allow_declare=True,
    topic_disable_leader=True,
    processing_guarantee="at_least_once",
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    table_standby_replicas=1,
    broker_commit_every=1000,
    broker_commit_interval=1.0,
    broker_session_timeout=settings.session_timeout_seconds,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 4),
    consumer_group_instance_id=settings.worker_name,  # static membership: a restart rejoins without waiting
    key_serializer="raw",
    value_serializer="raw",
    producer_linger=0.005,  # batch sends for 5 ms: far fewer produce requests per event
    producer_max_batch_size=512 * 1024,  # an agent batch goes out as one record batch per partition
    producer_max_request_size=MAX_RECORD_BYTES,  # 1 MiB: the largest record sent, as the broker's default limit
    producer_request_timeout=30.0,  # a failed delivery surfaces (and is retried) after 30 s, not Faust's 20 min
)

# Faust and aiokafka log every send at DEBUG; building those records cost ~9% of a worker's time.
for _chatty in ("aiokafka", "faust.topics"):
    logging.getLogger(_chatty).setLevel(logging.INFO)

# Wire the pipeline: topics in, agents, tables, topics out, and the HTTP views.
import agents.devices  # noqa: E402,F401
import agents.guard  # noqa: E402,F401
import agents.observe  # noqa: E402,F401
import agents.process  # noqa: E402,F401
import agents.project  # noqa: E402,F401
import stream_app.web  # noqa: E402,F401
