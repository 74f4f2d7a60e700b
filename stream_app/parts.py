"""The parts of one deployment, built once by the composition root (stream_app/compose.py) and passed
to each module's `register(app, parts)`: nothing in the shell reaches for a global app, table or setting."""
from __future__ import annotations

from dataclasses import dataclass

import faust

from agents.emit import Emitter
from agents.member_index import MemberIndex
from stream_app.broker_contact import BrokerContact
from stream_app.core.due_schedule import DueSchedule
from stream_app.core.program import Program
from stream_app.core.program_versions import ProgramVersions
from stream_app.failstop import FailStop
from stream_app.settings import Settings
from tables.changelog import BatchedChangelogTable
from tables.redis_projection import RedisProjection
from topics.catalog import TopicNames
from topics.kafka_topics import KafkaTopics
from topics.outgoing import OutgoingBatches


@dataclass(frozen=True, slots=True)
class Parts:
    settings: Settings
    #: the version in effect when the worker started (views, the due schedule's rebuild); events and due
    #: work are applied under the version in effect at their instant (`versions`)
    program: Program
    app: faust.App
    names: TopicNames
    topics: KafkaTopics
    #: outputs and dead letters of a batch, handed over first...
    outgoing: OutgoingBatches
    #: ...and the table changelog records, handed over once those are acknowledged (agents/batch.py)
    changelogs: OutgoingBatches
    members: BatchedChangelogTable
    devices: BatchedChangelogTable
    #: next due instant, tier and segment per member, written with the members table (tables/member_index.py)
    member_index: MemberIndex
    #: live stock, pause and coupon codes per reward code (agents/rewards.py)
    rewards: BatchedChangelogTable
    schedule: DueSchedule
    projection: RedisProjection
    emitter: Emitter
    #: shared by every batch pipeline (agents/batch.py), /ready and agents/guard.py
    failstop: FailStop
    #: kept by agents/guard.py, read by /ready
    broker: BrokerContact
    versions: ProgramVersions
