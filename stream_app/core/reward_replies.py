"""The reward agent's answers applied in the member's partition, like due work: state in, Result out."""
from __future__ import annotations

from stream_app.core.due import catch_up, next_due
from stream_app.core.emitted import Outputs
from stream_app.core.engine import Result, clock_of
from stream_app.core.member import Member
from stream_app.core.notify_policy import settle as settle_notifications
from stream_app.core.outcomes import APPLIED, IGNORED
from stream_app.core.program import Program
from stream_app.core.redemption import settle


def apply_reply(state: dict | None, reply: dict, program: Program) -> Result:
    """Confirm or release the member's reservation `reply` answers. An erased member holds nothing: what
    was allocated for it goes back."""
    if state is None:
        out = Outputs(program)
        if reply["op"] != "allocated":
            return Result(None, outcome=IGNORED)
        out.ask_reward_agent("release", reply["member_id"], reply["redemption_id"], reply["reward_code"],
                             reply["quantity"], reply["at"])
        return Result(None, outcome=APPLIED, reward_requests=out.reward_requests)
    member = Member.from_dict(state)
    now = clock_of(member, reply["at"])
    out = Outputs(program)
    catch_up(member, program, now, out)
    first = len(out.notifications)
    outcome = settle(member, reply, program, now, out)
    member.rewards.prune(program.max_event_ids)
    settle_notifications(member, program, now, out, first)
    new_state = member.to_dict()
    return Result(new_state if new_state != state else state, out.rewards, out.notifications, outcome,
                  next_due(member, program, now), out.notifications_dropped, reward_requests=out.reward_requests)
