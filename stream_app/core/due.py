"""Due work: what time alone does to a member (release, expiry, warnings, birthday, tier, segment).

`catch_up` steps through every exact instant at which work fell due, so results and ids do not
depend on when a tick or the next event arrives; `next_due` is what the shell schedules.
"""
from __future__ import annotations

from stream_app.core import order_history
from stream_app.core.calendar import birthday_in_year, local_date, local_midnight_ms, rfc3339
from stream_app.core.earning import earn_available
from stream_app.core.emitted import Outputs
from stream_app.core.ledger import EXPIRES, REMAINING
from stream_app.core.member import Member
from stream_app.core.notify_policy import held_due_at, settle
from stream_app.core.program import Program
from stream_app.core.referrals import decide_due
from stream_app.core.referrals import due_times as referral_due_times
from stream_app.core.segments import evaluate_segment, segment_due_at
from stream_app.core.tiers import evaluate_tier, tier_due_at

MAX_DUE_STEPS = 10_000  # bound on due instants replayed at once (a member idle for years)


def catch_up(member: Member, program: Program, now: int, out: Outputs) -> None:
    """Do the member's due work at each instant it fell due after its clock up to `now`, in order,
    then at `now`; the clock (`evaluated_at`) then reads `now`.

    Stepping through the exact due instants makes the result independent of when the wall-clock
    tick or the next event happens to arrive: a replay gives the same outputs with the same ids.
    An instant is stepped once: the clock only moves forward, and a `now` it already reached does
    nothing (so a `due:<ms>` cause names one step). Work that a late event made due at or before
    the clock (e.g. the return window of an order older than the clock) is done at the next step.
    When nothing falls due up to `now` (no due instant at or before it, late work included), no step
    runs: every part's work is due only at the instants `_due_times` names, so it would change nothing.
    """
    start = member.evaluated_at
    if start is not None and now <= start:
        return
    if start is None:  # a new member: nothing can be due before its first instant
        _step(member, program, now, out)
    else:
        times = _due_times(member, program, start)
        if min(times, default=now + 1) <= now:  # something falls due up to `now`: step through it
            _step_through(member, program, start, now, times, out)
    member.evaluated_at = now
    order_history.fold(member, program, now)  # housekeeping: no rule can tell when it runs


def _step_through(member: Member, program: Program, start: int, now: int, times: list[int], out: Outputs) -> None:
    """Step at each due instant after `start` up to `now` (`times`: the due instants seen from `start`),
    then at `now` unless the last step was there."""
    cursor, due = start, _first_after(times, start)
    for _ in range(MAX_DUE_STEPS):
        if due is None or due > now:
            break
        _step(member, program, due, out)
        cursor = due
        due = _due_after(member, program, cursor)
    if cursor < now:
        _step(member, program, now, out)


def _step(member: Member, program: Program, at: int, out: Outputs) -> None:
    first = len(out.notifications)
    _advance(member, program, at, out)
    evaluate_tier(member, program, at, f"due:{at}", out)
    evaluate_segment(member, program, at, f"due:{at}", out)
    settle(member, program, at, out, first)


def next_due(member: Member, program: Program, now: int) -> int | None:
    """The earliest instant after `now` at which time alone changes this member. Work a late event
    left due at or before `now` is done by the next step after it: its instant is `now + 1`."""
    return min((max(t, now + 1) for t in _due_times(member, program, now)), default=None)


def _due_after(member: Member, program: Program, cursor: int) -> int | None:
    """The earliest due instant strictly after `cursor` (work due before it waits for that step)."""
    return _first_after(_due_times(member, program, cursor), cursor)


def _first_after(times: list[int], cursor: int) -> int | None:
    return min((t for t in times if t > cursor), default=None)


def _due_times(member: Member, program: Program, now: int) -> list[int]:
    ledger = member.ledger
    times = [lot.available_at for lot in ledger.pending_lots]
    if ledger.buckets:
        times.append(ledger.buckets[0][EXPIRES])
        warn_at = ledger.next_warning(program.expiry_warn_before_ms, now)
        if warn_at is not None:
            times.append(warn_at)
    times.extend(referral_due_times(member))
    tier_at = tier_due_at(member, program, now)
    if tier_at is not None:
        times.append(tier_at)
    for due_at in (_next_birthday_ms(member, program, now), segment_due_at(member, program, now),
                   held_due_at(member, program, now)):
        if due_at is not None:
            times.append(due_at)
    return times


def _advance(member: Member, program: Program, now: int, out: Outputs) -> None:
    ledger = member.ledger
    due = [x for x in ledger.pending_lots if x.available_at <= now]
    for lot in sorted(due, key=lambda x: (x.available_at, x.lot_id)):
        released = lot.remaining  # what is left of the lot after clawbacks while it was pending
        ledger.release(lot)
        if not released:
            continue
        out.reward(member, "points_earned", released, lot.source_event_id, lot.rule, lot.available_at,
                   {"released_from_pending": True})
        out.notify(member, "points_earned", f"{lot.lot_id}:release", lot.available_at,
                   {"points": released, "rule": lot.rule})
    decide_due(member, program, now, out)
    _pay_birthday(member, program, now, out)  # before expiry: a gift paid late may be due to expire already
    if not ledger.buckets:
        return
    if ledger.buckets[0][EXPIRES] <= now:
        expired_before = ledger.expired
        for expires_at, points in ledger.expire_due(now):
            # named by its instant and the member's expired total before it: a late lot can make a bucket
            # at an instant already expired once, and its expiry is another event with another id
            out.reward(member, "points_expired", -points, f"expiry:{expires_at}:{expired_before}", "expiry",
                       expires_at)
            expired_before += points
    _warn_expiring(member, program, now, out)


def _warn_expiring(member: Member, program: Program, now: int, out: Outputs) -> None:
    ledger = member.ledger
    soon = ledger.unwarned_expiring(now, now + program.expiry_warn_before_ms)
    if not soon:
        return
    points = sum(bucket[REMAINING] for bucket in soon)
    if points >= program.expiry_warn_min_points:
        first = soon[0][EXPIRES]
        cause = "expiring:" + ",".join(str(bucket[EXPIRES]) for bucket in soon)
        ledger.mark_warned(soon)
        out.notify(member, "points_expiring", cause, now, {"points": points, "first_expires_at": rfc3339(first)})


def _next_birthday_ms(member: Member, program: Program, now: int) -> int | None:
    if not member.birthday or not program.birthday_points:
        return None
    year = local_date(now, program.timezone).year
    starts = _birthday_ms(member, program, year)
    if member.birthday_paid_year != year and starts <= now and _payable(member, program, starts):
        return starts  # fell due while it could not be paid (the member was frozen): due at the next step
    if member.birthday_paid_year == year or starts <= now:
        year += 1
    return _birthday_ms(member, program, year)


def _payable(member: Member, program: Program, starts: int) -> bool:
    """Whether a birthday starting at `starts` may be paid now: not frozen, and set long enough before."""
    return not member.frozen and member.birthday_set_at is not None and (
        member.birthday_set_at <= starts - program.birthday_min_age_ms)


def _birthday_ms(member: Member, program: Program, year: int) -> int:
    return local_midnight_ms(birthday_in_year(member.birthday, year), program.timezone)


def _pay_birthday(member: Member, program: Program, now: int, out: Outputs) -> None:
    if not member.birthday or not program.birthday_points or member.frozen:
        return
    year = local_date(now, program.timezone).year
    starts = _birthday_ms(member, program, year)
    if member.birthday_paid_year == year or starts > now or not _payable(member, program, starts):
        return
    member.birthday_paid_year = year
    source = f"birthday:{year}"
    earn_available(member, program, source, "birthday", program.birthday_points, starts, out)
    out.notify(member, "birthday_gift", source, starts, {"points": program.birthday_points})
