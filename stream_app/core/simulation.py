"""What a program would have done to a history: the totals an operator compares before a launch.

Pure: decoded, scrubbed input events in, a `Tally` out, no I/O. Each member's events are applied
in event-time order as `engine.apply_event` applies them (doing the member's due work up to each
event, as in the worker), then the member is advanced to the end of the history as by `engine.advance`;
each under the program version in effect at its instant (stream_app/core/versioned.py).

A referral passes messages between two members (the friend's claim, the referrer's decision), and the
device index flags a friend that shares a device with its referrer: in the worker both reach the other
member's partition and are applied there with its events. So members connected by a `referrer_id`
(`connected`) are run together, as a `Group`, which delivers those messages and flags at their
instants, before the members' later events. Groups are independent, so a history can be split by
group, each part simulated on its own (e.g. in another process) and the tallies merged: the merge is
exact and order-independent.

Liability is what the program owes: available + pending points over all members. Every point
that moves is a reward event (`FLOWS`), so the liability at the end of a day is the sum of the
flows dated up to that day: issued - clawed back - redeemed - expired + adjusted - erased.
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from stream_app.core.calendar import local_date, rfc3339
from stream_app.core.device_index import apply_link, flag_event
from stream_app.core.engine import Result, event_time_ms
from stream_app.core.member import Member
from stream_app.core.outcomes import ERASED
from stream_app.core.program import Program
from stream_app.core.program_versions import ProgramVersions
from stream_app.core.referral_messages import message_time_ms
from stream_app.core.referrals import due_times as referral_due_times
from stream_app.core.versioned import advance_member_at, apply_message_at, apply_to_member_at

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


def referral_links(events: Iterable[dict]) -> Iterator[tuple[str, str]]:
    """(friend, referrer) of each `member_joined` naming a referrer: the pairs referral messages (and the
    device index's flags) can pass between, so the members that must be simulated together."""
    for event in events:
        if event["type"] == "member_joined" and event.get("referrer_id"):
            yield event["member_id"], event["referrer_id"]


def connected(member_ids: Iterable[str], links: Iterable[tuple[str, str]]) -> list[list[str]]:
    """`member_ids` in groups connected by `links` (union-find), groups and members in first-seen order.

    An id only a link names (a referrer without events) joins its group but is not listed: it has no
    events to simulate, and a message to it is answered as the worker answers it (`referrer_unknown`)."""
    parent: dict[str, str] = {}

    def root(member_id: str) -> str:
        parent.setdefault(member_id, member_id)
        while parent[member_id] != member_id:
            parent[member_id] = parent[parent[member_id]]  # path halving: chains of referrals stay short
            member_id = parent[member_id]
        return member_id

    for friend, referrer in links:
        parent[root(friend)] = root(referrer)
    groups: dict[str, list[str]] = {}
    for member_id in member_ids:
        groups.setdefault(root(member_id), []).append(member_id)
    return list(groups.values())


def simulate(members: Iterable[tuple[str, Sequence[dict]]], current: Program | ProgramVersions,
             candidate: Program | ProgramVersions, end_ms: int, top: int = 10) -> Tally:
    """Run the members' events (validated and scrubbed, in input order) under both programs.

    Members connected by referrals (`connected`) are run together, one group at a time (`run_group`);
    the result does not depend on the order of `members`. Every member is advanced to `end_ms` (the end
    of the history) after its last event. Rewards are dated in the time zone of the version in effect at
    `end_ms`.
    """
    tally = Tally(top)
    current, candidate = _versions(current), _versions(candidate)
    day_current, day_candidate = _day_of(current.at(end_ms)), _day_of(candidate.at(end_ms))
    by_id = dict(members)
    for group in connected(by_id, (link for events in by_id.values() for link in referral_links(events))):
        events = {member_id: by_id[member_id] for member_id in group}
        before = run_group(events, current, end_ms, tally.current, day_current)
        after = run_group(events, candidate, end_ms, tally.candidate, day_candidate)
        for member_id in group:
            tally.members += 1
            tally.events += len(events[member_id])
            if before[member_id] != after[member_id]:
                tally.differing.append(MemberDiff(member_id, before[member_id], after[member_id]))
        if len(tally.differing) > 4 * top + 64:
            tally.differing = heapq.nsmallest(top, tally.differing, key=MemberDiff.rank)
    tally.differing = heapq.nsmallest(top, tally.differing, key=MemberDiff.rank)
    return tally


def _versions(program: Program | ProgramVersions) -> ProgramVersions:
    return program if isinstance(program, ProgramVersions) else ProgramVersions.single(program)


def run_group(members: dict[str, Sequence[dict]], versions: ProgramVersions, end_ms: int, totals: Totals,
              day_of: Callable[[str], str]) -> dict[str, int]:
    """Run a group of connected members (their events in input order) under one program, then advance each
    to `end_ms`: each member's final available + pending. `day_of` dates a reward in the program's time zone.

    The group's events are applied in event-time order (ties: by member id, then in input order, so the
    order the members came in does not matter); the referral messages and the device index's flags they
    make are delivered at their instants (`Group`)."""
    group = Group(versions, end_ms, totals, day_of)
    for at, member_id, _, event in sorted((event_time_ms(event), member_id, position, event)
                                          for member_id, events in members.items()
                                          for position, event in enumerate(events)):
        group.deliver(at)
        if event["type"] != "member_flagged" or group.copies.read(event["event_id"]):
            group.take(member_id, (EVENT, event), at)
    group.deliver(math.inf)
    for member_id in sorted(group.members):
        group.take(member_id, (ADVANCE, end_ms), end_ms)
        group.deliver(math.inf)
    return {member_id: group.close(member_id) for member_id in members}


EVENT, MESSAGE, ADVANCE = "event", "message", "advance"
Step = tuple[str, Any]  # (EVENT, an input event or a flag), (MESSAGE, a referral message), (ADVANCE, instant)


class FlagCopies:
    """Pairs each flag the simulated device index makes with its copy read from the history (from Kafka, the
    `admin` topic holds the flags the worker's device index sent, with the same ids), so that a flag is
    applied and counted once, whichever copy comes first."""

    __slots__ = ("made", "seen")

    def __init__(self) -> None:
        self.made: Counter = Counter()  # flag ids made here whose copy in the history has not come yet
        self.seen: Counter = Counter()  # member_flagged ids read from the history, not yet made here

    def read(self, event_id: str) -> bool:
        """A history's member_flagged: whether to apply it (False: it is a flag made here already)."""
        return self._first(event_id, self.made, self.seen)

    def make(self, event_id: str) -> bool:
        """A flag of the simulated device index: whether to apply it (False: read from the history already)."""
        return self._first(event_id, self.seen, self.made)

    @staticmethod
    def _first(event_id: str, other: Counter, mine: Counter) -> bool:
        if other[event_id] > 0:
            other[event_id] -= 1
            return False
        mine[event_id] += 1
        return True


@dataclass(slots=True)
class Group:
    """One program's run of a group of connected members, as the worker's partitions would run them.

    The worker sends a Result's `messages` (referral claims and decisions) over the referrals topic to the
    other member's partition, which applies them at their `occurred_at` merged with its events; and sends
    its `device_links` to the device index, whose flags reach the flagged member as `member_flagged` admin
    events (agents/devices.py). Here both are queued at their instants and delivered before the members'
    later events. A friend whose referral waits for its order's return window is advanced at the window's
    end, as the worker's due schedule does, so its claim leaves then and not at its next event (the
    member's own outcome is the same either way: due work is stepped at its exact instants).
    Members stay `Member` objects; a referral message goes through the stored form, as the worker applies
    it (`versioned.apply_message_at`; messages are few)."""

    versions: ProgramVersions
    end_ms: int
    totals: Totals
    day_of: Callable[[str], str]
    members: dict[str, Member | None] = field(default_factory=dict)
    applied: dict[str, list[Step]] = field(default_factory=dict)  # per member: the steps it is made of
    queue: list[tuple[int, int, str, Step]] = field(default_factory=list)  # (instant, order, member id, step)
    order: Iterator[int] = field(default_factory=itertools.count)
    devices: dict[str, dict[str, str | None]] = field(default_factory=dict)  # the device index, by device
    copies: FlagCopies = field(default_factory=FlagCopies)
    woken: set[tuple[str, int]] = field(default_factory=set)  # (member id, instant) advances queued

    def deliver(self, before: float) -> None:
        """Apply every queued message, flag and advance whose instant is before `before`, in instant order
        (of one instant, in the order they were made): the history's events of an instant come first."""
        while self.queue and self.queue[0][0] < before:
            at, _, member_id, step = heapq.heappop(self.queue)
            self.take(member_id, step, at)

    def take(self, member_id: str, step: Step, at: int) -> None:
        """Apply one step to a member, count its outputs and queue what it sends to other members."""
        before = self.members.get(member_id)
        kind = step[0]
        if kind == ADVANCE and before is None:
            return  # erased (or never seen): nothing is due
        try:
            member, result = _applied(before, step, self.versions)
        except Exception:  # the worker dead-letters what the core raises on and goes on; so does the simulation
            self._failed(member_id, kind)
            return
        self.members[member_id] = member
        steps = self.applied.setdefault(member_id, [])
        steps.append(step)
        if kind == EVENT:
            self._counted(result.outcome, before, at)
            if result.outcome == ERASED:
                steps.clear()
        _count(result, self.totals, self.day_of)
        self._link(result.device_links, at)
        for message in result.messages:
            self._queue(message_time_ms(message), message["member_id"], (MESSAGE, message))
        if member is not None:
            self._wake(member_id, member)

    def close(self, member_id: str) -> int:
        """Count a member's state at the end of the history; its available + pending."""
        member = self.members.get(member_id)
        if member is None:
            return 0
        ledger, totals = member.ledger, self.totals
        totals.available += ledger.available
        totals.pending += ledger.pending
        totals.tiers[member.tier] += 1
        totals.segments[member.segment or "none"] += 1
        totals.notifications_held += len(member.held)
        return ledger.available + ledger.pending

    def _counted(self, outcome: str, before: Member | None, at: int) -> None:
        """An input event's (or flag's) outcome; an erasure forfeits the member's balance."""
        self.totals.events[outcome] += 1
        if outcome == ERASED and before is not None:  # the erasure leaves the object as it was
            forfeited = before.ledger.available + before.ledger.pending
            self.totals.erased += forfeited
            self.totals.daily_change[local_date(at, self.versions.at(at).timezone).isoformat()] -= forfeited

    def _failed(self, member_id: str, kind: str) -> None:
        """A step the core raised on: dead-lettered (an event counts as one), the member as it was before."""
        if kind == EVENT:
            self.totals.events["dead_lettered"] += 1
        self.totals.dead_letters[PROCESSING_ERROR] += 1
        self.members[member_id] = _replayed(self.applied.get(member_id, ()), self.versions)

    def _link(self, links: list[dict], at: int) -> None:
        """Feed the device index; a flag goes to the flagged member at `at` (the worker's follows at once)."""
        for link in links:
            entry, flags = apply_link(self.devices.get(link["device"], {}), link)
            if entry:
                self.devices[link["device"]] = entry
            else:
                self.devices.pop(link["device"], None)
            for member_id, evidence in flags:
                flag = flag_event(member_id, evidence, rfc3339(at))
                if self.copies.make(flag["event_id"]):
                    self._queue(at, member_id, (EVENT, flag))

    def _wake(self, member_id: str, member: Member) -> None:
        """Queue an advance at the end of a pending referral's return window (within the history)."""
        for at in referral_due_times(member):
            if at <= self.end_ms and (member_id, at) not in self.woken:
                self.woken.add((member_id, at))
                self._queue(at, member_id, (ADVANCE, at))

    def _queue(self, at: int, member_id: str, step: Step) -> None:
        heapq.heappush(self.queue, (at, next(self.order), member_id, step))


def _applied(member: Member | None, step: Step, versions: ProgramVersions) -> tuple[Member | None, Result]:
    """One step through the core, under the program version in effect at its instant."""
    kind, payload = step
    if kind == ADVANCE:
        return advance_member_at(member, versions, payload)
    if kind == MESSAGE:
        result = apply_message_at(None if member is None else member.to_dict(), payload, versions)
        return (None if result.state is None else Member.from_dict(result.state)), result
    return apply_to_member_at(member, payload, versions)


def _replayed(steps: Sequence[Step], versions: ProgramVersions) -> Member | None:
    """The member the steps (none of which raised) make: the core is deterministic, so this is the
    member as it was before a step that raised part way through changing it."""
    member = None
    for step in steps:
        member, _ = _applied(member, step, versions)
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
