"""Broker contact (stream_app/broker_contact.py): /ready's view of whether the brokers answer."""
from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError

from stream_app.broker_contact import STALE_AFTER_SECONDS, BrokerContact, probe


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_contact_yet_is_not_connected_and_a_success_goes_stale():
    clock = Clock()
    contact = BrokerContact(clock=clock)
    assert not contact.connected() and contact.seconds_since_contact() is None
    contact.succeeded()
    clock.now += STALE_AFTER_SECONDS
    assert contact.connected()
    clock.now += 0.1
    assert not contact.connected() and contact.seconds_since_contact() > STALE_AFTER_SECONDS


async def test_a_probe_records_only_an_answer():
    clock = Clock()
    contact = BrokerContact(clock=clock)

    async def answered() -> bool:
        return True

    async def unanswered() -> bool:
        return False

    async def refused() -> bool:
        raise KafkaConnectionError("refused")

    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    assert not await probe(unanswered, contact) and not contact.connected()
    assert not await probe(refused, contact) and not contact.connected()
    assert not await probe(hangs, contact, timeout=0.01) and not contact.connected()
    assert await probe(answered, contact) and contact.connected()
