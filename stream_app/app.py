"""The Faust application: `faust -A stream_app.app worker` or `loyalty worker`."""
from __future__ import annotations

import logging

import faust

from stream_app.core.program import load_program
from stream_app.kafka_security import exit_unless_login, faust_credentials
from stream_app.settings import load_settings
from topics.catalog import TopicNames

settings = load_settings()
program = load_program(settings.rules_path)
topic_names = TopicNames(settings.topic_prefix)

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    broker_credentials=faust_credentials(settings.kafka_security),
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
    key_serializer="raw",
    value_serializer="raw",
    producer_linger=0.005,  # batch sends for 5 ms: far fewer produce requests per event
    producer_max_batch_size=512 * 1024,  # an agent batch goes out as one record batch per partition
)
app.on_worker_init.connect(exit_unless_login(settings))  # a wrong password or no broker: exit 2, not a retry loop

# Faust and aiokafka log every send at DEBUG; building those records cost ~9% of a worker's time.
for _chatty in ("aiokafka", "faust.topics"):
    logging.getLogger(_chatty).setLevel(logging.INFO)

# Wire the pipeline: topics in, agents, tables, topics out, and the HTTP views.
import agents.devices  # noqa: E402,F401
import agents.observe  # noqa: E402,F401
import agents.process  # noqa: E402,F401
import agents.project  # noqa: E402,F401
import stream_app.web  # noqa: E402,F401
