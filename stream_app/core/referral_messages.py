"""The core's entry point for a referral message from another member's partition (stream_app/core/referrals.py).

Like `engine.advance`, a message is applied at the member's clock (never backwards), after the
member's due work up to it. A claim for a member without a state is answered `referrer_unknown`
and stores nothing; a decision for a member without a state (erased since) does nothing.
"""
from __future__ import annotations

from datetime import datetime

from stream_app.core.due import catch_up, next_due
from stream_app.core.emitted import Outputs
from stream_app.core.engine import Result, clock_of
from stream_app.core.member import Member
from stream_app.core.notify_policy import settle
from stream_app.core.outcomes import APPLIED, IGNORED
from stream_app.core.program import Program
from stream_app.core.referrals import CLAIMED_TYPE, on_claim, on_decision, reply

__all__ = ["apply_message", "message_time_ms"]


def message_time_ms(message: dict) -> int:
    return int(datetime.fromisoformat(message["occurred_at"]).timestamp() * 1000)


def apply_message(state: dict | None, message: dict, program: Program) -> Result:
    """Apply a `referral_claimed` (at the referrer) or `referral_decided` (at the friend) message."""
    if state is None:
        if message["type"] == CLAIMED_TYPE:
            return Result(None, outcome=APPLIED, messages=[reply(message, message["member_id"], "referrer_unknown")])
        return Result(None, outcome=IGNORED)
    member = Member.from_dict(state)
    now = clock_of(member, message_time_ms(message))
    out = Outputs(program)
    catch_up(member, program, now, out)
    first = len(out.notifications)
    (on_claim if message["type"] == CLAIMED_TYPE else on_decision)(member, message, program, now, out)
    settle(member, program, now, out, first)
    new_state = member.to_dict()
    changed = new_state != state
    return Result(new_state if changed else state, out.rewards, out.notifications,
                  APPLIED if changed or out.messages else IGNORED, next_due(member, program, now),
                  out.notifications_dropped, messages=out.messages)
