"""What a program would have done to a history: the totals an operator compares before a launch.

Pure: decoded, scrubbed input events in, a `Tally` out, no I/O. Each member's events are applied
in event-time order as `engine.apply_event` applies them (doing the member's due work up to each
event, as in the worker), then the member is advanced to the end of the history as by `engine.advance`;
each under the program version in effect at its instant (stream_app/core/versioned.py).
Members are independent, so a history can be split by member, each part simulated on its own
(e.g. in another process) and the tallies merged: the merge is exact and order-independent.

Liability is what the program owes: available + pending points over all members. Every point
that moves is a reward event (`FLOWS`), so the liability at the end of a day is the sum of the
flows dated up to that day: issued - clawed back - redeemed - expired + adjusted - erased.
"""
from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from stream_app.core.calendar import local_date
from stream_app.core.engine import Result, event_time_ms
from stream_app.core.member import Member
from stream_app.core.outcomes import ERASED
from stream_app.core.program import Program
from stream_app.core.program_versions import ProgramVersions
from stream_app.core.versioned import advance_member_at, apply_to_member_at

#: Reward types that move points, and the flow each one counts in.
FLOWS = {"points_pending": "issued", "points_earned": "issued", "points_clawed_back": "clawed_back",
         "points_redeemed": "redeemed", "points_expired": "expired", "points_adjusted": "adjusted"}
#: What an event the core raised on is counted as: the worker dead-letters it with this code.
PROCESSING_ERROR = "processing_error"


@dataclass(slots=True)
class Totals:
    """One program's outcome over a set of members. Points are positive amounts per flow."""

    issued: Counter = field(default_factory=Counter)  # rule -> points issued (pending or available)
    clawed_back: int = 0
    redeemed: int = 0
    expired: int = 0
    adjusted: int = 0  # operators' corrections, signed
    erased: int = 0  # balance forfeited by erased members
    available: int = 0  # at the end, over the members left
    pending: int = 0
    tiers: Counter = field(default_factory=Counter)  # members per tier at the end
    segments: Counter = field(default_factory=Counter)
    notifications: Counter = field(default_factory=Counter)  # template -> sent (after the policy)
    notifications_dropped: int = 0
    notifications_held: int = 0  # still held for quiet hours at the end
    rewards: Counter = field(default_factory=Counter)  # reward type -> events
    events: Counter = field(default_factory=Counter)  # outcome -> input events
    dead_letters: Counter = field(default_factory=Counter)  # code -> events the core raised on
    daily_issued: Counter = field(default_factory=Counter)  # local date (ISO) -> points issued
    daily_change: Counter = field(default_factory=Counter)  # local date -> net change of liability

    @property
    def liability(self) -> int:
        return self.available + self.pending

    def merge(self, other: Totals) -> None:
        """Add `other`'s members to these totals."""
        for name in self.__slots__:
            mine = getattr(self, name)
            if isinstance(mine, Counter):
                mine.update(getattr(other, name))
            else:
                setattr(self, name, mine + getattr(other, name))


@dataclass(frozen=True, slots=True)
class MemberDiff:
    """A member's available + pending at the end under each program."""

    member_id: str
    current: int
    candidate: int

    @property
    def difference(self) -> int:
        return self.candidate - self.current

    def rank(self) -> tuple[int, str]:
        return -abs(self.difference), self.member_id


@dataclass(slots=True)
class Tally:
    """Both programs' totals over the same members, and the members whose outcome differs most."""

    top: int
    current: Totals = field(default_factory=Totals)
    candidate: Totals = field(default_factory=Totals)
    members: int = 0
    events: int = 0
    differing: list[MemberDiff] = field(default_factory=list)  # the `top` largest differences, ranked

    def merge(self, other: Tally) -> None:
        self.current.merge(other.current)
        self.candidate.merge(other.candidate)
        self.members += other.members
        self.events += other.events
        self.differing = heapq.nsmallest(self.top, self.differing + other.differing, key=MemberDiff.rank)


def in_event_time_order(events: Sequence[dict]) -> list[dict]:
    """A member's events by `occurred_at`; events of the same instant keep their input order."""
    return sorted(events, key=event_time_ms)


def simulate(members: Iterable[tuple[str, Sequence[dict]]], current: Program | ProgramVersions,
             candidate: Program | ProgramVersions, end_ms: int, top: int = 10) -> Tally:
    """Run each member's events (validated and scrubbed, in input order) under both programs.

    Every member is advanced to `end_ms` (the end of the history) after its last event. Rewards are
    dated in the time zone of the version in effect at `end_ms`.
    """
    tally = Tally(top)
    current, candidate = _versions(current), _versions(candidate)
    day_current, day_candidate = _day_of(current.at(end_ms)), _day_of(candidate.at(end_ms))
    for member_id, events in members:
        ordered = in_event_time_order(events)
        before = run_member(ordered, current, end_ms, tally.current, day_current)
        after = run_member(ordered, candidate, end_ms, tally.candidate, day_candidate)
        tally.members += 1
        tally.events += len(ordered)
        if before != after:
            tally.differing.append(MemberDiff(member_id, before, after))
            if len(tally.differing) > 4 * top + 64:
                tally.differing = heapq.nsmallest(top, tally.differing, key=MemberDiff.rank)
    tally.differing = heapq.nsmallest(top, tally.differing, key=MemberDiff.rank)
    return tally


def _versions(program: Program | ProgramVersions) -> ProgramVersions:
    return program if isinstance(program, ProgramVersions) else ProgramVersions.single(program)


def run_member(events: Sequence[dict], versions: ProgramVersions, end_ms: int, totals: Totals,
               day_of: Callable[[str], str]) -> int:
    """Apply one member's ordered events, then advance it to `end_ms`; its final available + pending.

    An event the core raises on is counted as `processing_error` and changes nothing, as in the worker.
    `day_of` dates a reward in the program's time zone. The member stays one `Member` object from event
    to event (what `apply_event_at` gives, without the stored form between them).
    """
    member: Member | None = None
    applied: list[dict] = []  # the events that did not raise: what the member is made of
    for event in events:
        before = member  # an erasure leaves it as it was
        try:
            member, result = apply_to_member_at(member, event, versions)
        except Exception:  # the worker dead-letters such an event and goes on; so does the simulation
            totals.events["dead_lettered"] += 1
            totals.dead_letters[PROCESSING_ERROR] += 1
            member = _replayed(applied, versions)  # the object may be half changed: as it was before
            continue
        applied.append(event)
        totals.events[result.outcome] += 1
        if result.outcome == ERASED and before is not None:
            forfeited = before.ledger.available + before.ledger.pending
            totals.erased += forfeited
            at = event_time_ms(event)
            totals.daily_change[local_date(at, versions.at(at).timezone).isoformat()] -= forfeited
            applied.clear()
        _count(result, totals, day_of)
    if member is None:
        return 0
    try:
        member, result = advance_member_at(member, versions, end_ms)
    except Exception:  # a due message the core raises on is dead-lettered by the worker too
        totals.dead_letters[PROCESSING_ERROR] += 1
        member = _replayed(applied, versions)
    else:
        _count(result, totals, day_of)
    ledger = member.ledger
    totals.available += ledger.available
    totals.pending += ledger.pending
    totals.tiers[member.tier] += 1
    totals.segments[member.segment or "none"] += 1
    totals.notifications_held += len(member.held)
    return ledger.available + ledger.pending


def _replayed(events: Sequence[dict], versions: ProgramVersions) -> Member | None:
    """The member the events (none of which raised) make: the core is deterministic, so this is the
    member as it was before an event that raised part way through changing it."""
    member = None
    for event in events:
        member, _ = apply_to_member_at(member, event, versions)
    return member


def _count(result: Result, totals: Totals, day_of: Callable[[str], str]) -> None:
    for reward in result.rewards:
        kind, points = reward["type"], reward["points"]
        totals.rewards[kind] += 1
        flow = FLOWS.get(kind)
        if flow is None or not points:
            continue
        if kind == "points_earned" and reward.get("details", {}).get("released_from_pending"):
            continue  # pending became available: issued when it became pending
        day = day_of(reward["occurred_at"])
        totals.daily_change[day] += points
        if flow == "issued":
            totals.issued[reward["rule"]] += points
            totals.daily_issued[day] += points
        elif flow == "adjusted":
            totals.adjusted += points
        else:
            setattr(totals, flow, getattr(totals, flow) - points)  # these rewards carry negative points
    for note in result.notifications:
        totals.notifications[note["template"]] += 1
    totals.notifications_dropped += result.notifications_dropped


def _day_of(program: Program) -> Callable[[str], str]:
    """The program-local date (ISO) of a reward's `occurred_at`, cached per minute."""
    cache: dict[str, str] = {}

    def day_of(at: str) -> str:
        minute = at[:16]  # rewards are dated in UTC (calendar.rfc3339); zone offsets are whole minutes
        found = cache.get(minute)
        if found is None:
            moment = datetime.fromisoformat(at)
            found = cache[minute] = moment.astimezone(program.timezone).date().isoformat()
        return found

    return day_of


@dataclass(frozen=True, slots=True)
class Day:
    """One local day of both programs: points issued that day, liability at its end."""

    date: str
    issued_current: int
    issued_candidate: int
    liability_current: int
    liability_candidate: int


def daily(current: Totals, candidate: Totals) -> list[Day]:
    """Every day from the first to the last with a flow under either program, gaps filled."""
    days = set(current.daily_change) | set(candidate.daily_change) | set(current.daily_issued) \
        | set(candidate.daily_issued)
    if not days:
        return []
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    rows, owed_current, owed_candidate = [], 0, 0
    for offset in range((last - first).days + 1):
        day = (first + timedelta(days=offset)).isoformat()
        owed_current += current.daily_change.get(day, 0)
        owed_candidate += candidate.daily_change.get(day, 0)
        rows.append(Day(day, current.daily_issued.get(day, 0), candidate.daily_issued.get(day, 0),
                        owed_current, owed_candidate))
    return rows
