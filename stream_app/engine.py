"""The loyalty core: apply one input event, or the passing of time, to a member's state.

Pure and deterministic: state in, state and output events out; the clock is an argument.
Rules about an event use its `occurred_at`; before an event is applied, the member's due work
up to that instant is done, so a replay of the same events gives the same results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from math import floor

from stream_app.abuse import check_velocity
from stream_app.calendar import birthday_in_year, campaign_multiplier, local_date, local_midnight_ms, rfc3339
from stream_app.ledger import Lot
from stream_app.member import Member, Order
from stream_app.notify_policy import apply_policy, held_due_at, release_held
from stream_app.outputs import Outputs
from stream_app.program import Program
from stream_app.segments import evaluate_segment, segment_due_at
from stream_app.tiers import evaluate_tier, tier_due_at

APPLIED, DUPLICATE, IGNORED, FROZEN, ERASED = "applied", "duplicate", "ignored", "frozen", "erased"
ADMIN_TYPES = frozenset({"member_frozen", "member_unfrozen", "points_adjusted", "member_flagged"})
MAX_DEVICES = 20  # device hashes remembered per member, for the shared-device referral check
MAX_DUE_STEPS = 10_000  # bound on due instants replayed at once (a member idle for years)


@dataclass(slots=True)
class Result:
    """The member's new state (None when erased), what to emit, and how the event was counted."""

    state: dict | None
    rewards: list[dict] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)
    outcome: str = APPLIED
    next_due: int | None = None
    notifications_dropped: int = 0
    device_links: list[dict] = field(default_factory=list)


def event_time_ms(event: dict) -> int:
    return int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)


def new_member(member_id: str, now: int, program: Program) -> Member:
    return Member(member_id=member_id, created_at=now, tier=program.tiers[0].name)


def apply_event(state: dict | None, event: dict, program: Program) -> Result:
    """Apply one validated input event to a member's state (None for a member not seen yet)."""
    now = event_time_ms(event)
    member = Member.from_dict(state) if state else new_member(event["member_id"], now, program)
    if event["event_id"] in member.event_ids:
        return Result(state, outcome=DUPLICATE, next_due=next_due(member, program, now))
    out = Outputs(program)
    if event["type"] == "member_erased":
        out.reward(member, "member_erased", 0, event["event_id"], "erasure", now)
        for device in member.devices:
            out.link_device("forget", device, member)
        return Result(None, out.rewards, out.notifications, ERASED, device_links=out.device_links)
    _catch_up(member, program, now, out)
    if event["type"] not in ADMIN_TYPES:
        member.last_activity_at = max(member.last_activity_at or now, now)
        _flag_abuse(member, event, program, now, out)
    outcome = _HANDLERS[event["type"]](member, event, program, now, out)
    evaluate_tier(member, program, now, event["event_id"], out)
    evaluate_segment(member, program, now, event["event_id"], out)
    member.event_ids.append(event["event_id"])
    del member.event_ids[:-program.max_event_ids]
    member.ledger.prune()
    dropped = _apply_notification_policy(member, program, now, out)
    return Result(member.to_dict(), out.rewards, out.notifications, outcome,
                  next_due(member, program, now), dropped, out.device_links)


def advance(state: dict, program: Program, now: int) -> Result:
    """Do the member's work that has fallen due by `now` (release, expiry, warnings, birthday, tier)."""
    member = Member.from_dict(state)
    out = Outputs(program)
    _catch_up(member, program, now, out)
    member.ledger.prune()
    dropped = _apply_notification_policy(member, program, now, out)
    new_state = member.to_dict()
    # Only the evaluation cursor moved: nothing to write (stepping again from the old one is a no-op).
    # Keys the core does not own (e.g. an `_outbox` left by older versions) are not compared.
    changed = any(new_state[k] != state.get(k) for k in new_state if k != "evaluated_at")
    return Result(new_state if changed else state, out.rewards, out.notifications,
                  APPLIED if changed else IGNORED, next_due(member, program, now), dropped)


def _catch_up(member: Member, program: Program, now: int, out: Outputs) -> None:
    """Do the member's due work at each instant it fell due up to `now`, in order, then at `now`.

    Stepping through the exact due instants makes the result independent of when the wall-clock
    tick or the next event happens to arrive: a replay gives the same outputs with the same ids.
    """
    cursor = member.evaluated_at if member.evaluated_at is not None else now
    for _ in range(MAX_DUE_STEPS):
        due = next_due(member, program, cursor)
        if due is None or due > now or due <= cursor:
            break
        _step(member, program, due, out)
        cursor = due
    cursor = max(cursor, now)
    _step(member, program, cursor, out)
    member.evaluated_at = cursor


def _step(member: Member, program: Program, at: int, out: Outputs) -> None:
    _advance(member, program, at, out)
    evaluate_tier(member, program, at, f"due:{at}", out)
    evaluate_segment(member, program, at, f"due:{at}", out)


def _apply_notification_policy(member: Member, program: Program, now: int, out: Outputs) -> int:
    """Send held notifications that may go now, then this change's own; returns how many were dropped."""
    released, stale = release_held(member, program, now)
    send, dropped = apply_policy(member, program, now, out.notifications)
    out.notifications = released + send
    return stale + dropped


def _flag_abuse(member: Member, event: dict, program: Program, now: int, out: Outputs) -> None:
    """Freeze a member whose activity breaks a velocity limit; the event is still recorded."""
    flagged = check_velocity(member, event, program, now)
    if flagged is not None and not member.frozen:
        _freeze_flagged(member, event, *flagged, now, out)


def _freeze_flagged(member: Member, event: dict, rule: str, evidence: dict, now: int, out: Outputs) -> None:
    member.frozen = True
    member.flags.append({"rule": rule, "at": now, "evidence": evidence})
    out.reward(member, "member_flagged", 0, event["event_id"], rule, now, evidence)
    out.notify(member, "member_flagged", event["event_id"], now, {"rule": rule, **evidence})


def next_due(member: Member, program: Program, now: int) -> int | None:
    """The earliest instant after `now` at which time alone changes this member."""
    times = []
    for lot in member.ledger.lots:
        if not lot.released:
            times.append(lot.available_at)
        elif lot.remaining:
            times.append(lot.expires_at)
            warn_at = lot.expires_at - program.expiry_warn_before_ms
            if not lot.warned and warn_at > now:
                times.append(warn_at)
    tier_at = tier_due_at(member, program, now)
    if tier_at is not None:
        times.append(tier_at)
    for due_at in (_next_birthday_ms(member, program, now), segment_due_at(member, program, now),
                   held_due_at(member, program, now)):
        if due_at is not None:
            times.append(due_at)
    return min(times, default=None)


# -- due work ------------------------------------------------------------------------------------

def _advance(member: Member, program: Program, now: int, out: Outputs) -> None:
    ledger = member.ledger
    for lot in sorted((x for x in ledger.lots if not x.released and x.available_at <= now),
                      key=lambda x: (x.available_at, x.lot_id)):
        released = lot.remaining  # what is left of the lot after clawbacks while it was pending
        ledger.release(lot)
        if not released:
            continue
        out.reward(member, "points_earned", released, lot.source_event_id, lot.rule, lot.available_at,
                   {"released_from_pending": True})
        out.notify(member, "points_earned", f"{lot.lot_id}:release", lot.available_at,
                   {"points": released, "rule": lot.rule})
    _pay_birthday(member, program, now, out)  # before expiry: a gift paid late may be due to expire already
    for lot in sorted((x for x in ledger.lots if x.released and x.remaining and x.expires_at <= now),
                      key=lambda x: (x.expires_at, x.lot_id)):
        points = ledger.expire(lot)
        out.reward(member, "points_expired", -points, lot.source_event_id, f"{lot.rule}:expiry",
                   lot.expires_at)
    _warn_expiring(member, program, now, out)
    _forget_old_orders(member, program, now)


def _warn_expiring(member: Member, program: Program, now: int, out: Outputs) -> None:
    horizon = now + program.expiry_warn_before_ms
    soon = [lot for lot in member.ledger.lots
            if lot.released and lot.remaining and not lot.warned and now < lot.expires_at <= horizon]
    points = sum(lot.remaining for lot in soon)
    if soon and points >= program.expiry_warn_min_points:
        first = min(lot.expires_at for lot in soon)
        for lot in soon:
            lot.warned = True
        out.notify(member, "points_expiring", "expiring:" + ",".join(sorted(x.lot_id for x in soon)), now,
                   {"points": points, "first_expires_at": rfc3339(first)})


def _next_birthday_ms(member: Member, program: Program, now: int) -> int | None:
    if not member.birthday or not program.birthday_points:
        return None
    year = local_date(now, program.timezone).year
    if member.birthday_paid_year == year or _birthday_ms(member, program, year) <= now:
        year += 1
    return _birthday_ms(member, program, year)


def _birthday_ms(member: Member, program: Program, year: int) -> int:
    return local_midnight_ms(birthday_in_year(member.birthday, year), program.timezone)


def _pay_birthday(member: Member, program: Program, now: int, out: Outputs) -> None:
    if not member.birthday or not program.birthday_points or member.frozen:
        return
    year = local_date(now, program.timezone).year
    starts = _birthday_ms(member, program, year)
    if member.birthday_paid_year == year or starts > now:
        return
    if member.birthday_set_at is None or member.birthday_set_at > starts - program.birthday_min_age_ms:
        return
    member.birthday_paid_year = year
    source = f"birthday:{year}"
    _earn_available(member, program, source, "birthday", program.birthday_points, starts, out)
    out.notify(member, "birthday_gift", source, starts, {"points": program.birthday_points})


def _forget_old_orders(member: Member, program: Program, now: int) -> None:
    keep = max(program.tier_window_ms, program.review_order_window_ms, program.return_window_ms)
    for order_id in [o.order_id for o in member.orders.values() if o.paid_at + keep < now]:
        del member.orders[order_id]


# -- earning helpers ---------------------------------------------------------------------------

def _earn_available(member: Member, program: Program, source_event_id: str, rule: str, points: int,
                    now: int, out: Outputs) -> None:
    """Add an immediately available lot and emit `points_earned`."""
    lot = Lot(f"{source_event_id}:{rule}", rule, source_event_id, points, points, now, now,
              now + program.expiry_after_ms, released=True)
    member.ledger.add(lot)
    out.reward(member, "points_earned", points, source_event_id, rule, now)


def _earn_pending(member: Member, program: Program, source_event_id: str, rule: str, points: int,
                  now: int, out: Outputs) -> None:
    available_at = now + program.return_window_ms
    lot = Lot(f"{source_event_id}:{rule}", rule, source_event_id, points, points, now, available_at,
              available_at + program.expiry_after_ms, released=False)
    member.ledger.add(lot)
    out.reward(member, "points_pending", points, source_event_id, rule, now,
               {"available_at": rfc3339(available_at)})


def _simple_earn(member: Member, event: dict, program: Program, now: int, out: Outputs, kind: str,
                 points: int) -> None:
    points = floor(points * campaign_multiplier(program, kind, now))
    if points:
        _earn_available(member, program, event["event_id"], kind, points, now, out)


def _local_day(program: Program, now: int) -> str:
    return local_date(now, program.timezone).isoformat()


# -- handlers: one per input event type; each returns the outcome --------------------------------

def _order_points(event: dict, program: Program, tier_multiplier: Fraction, campaign: Fraction) -> int:
    weight = Fraction(1)
    items = event.get("items") or []
    total = sum(i["price_cents"] * i["quantity"] for i in items)
    if total:
        weighted = sum(i["price_cents"] * i["quantity"] * program.category_multipliers.get(i["category"], 1)
                       for i in items)
        weight = Fraction(weighted) / total
    units = Fraction(event["amount_cents"], 100)
    return floor(units * program.points_per_unit * weight * tier_multiplier * campaign)


def _order_paid(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    if member.frozen:
        return FROZEN
    if event["order_id"] in member.orders:
        return IGNORED
    points = _order_points(event, program, program.tier(member.tier).multiplier,
                           campaign_multiplier(program, "orders", now))
    bonus = program.first_order_bonus if not member.has_ordered and event["amount_cents"] > 0 else 0
    member.has_ordered = member.has_ordered or event["amount_cents"] > 0
    member.orders[event["order_id"]] = Order(event["order_id"], event["event_id"], now,
                                             event["amount_cents"], points, bonus)
    member.first_order_at = min(member.first_order_at or now, now)
    member.last_order_at = max(member.last_order_at or now, now)
    if points:
        _earn_pending(member, program, event["event_id"], "order", points, now, out)
    if bonus:
        _earn_pending(member, program, event["event_id"], "first_order_bonus", bonus, now, out)
    if points or bonus:
        out.notify(member, "points_pending", event["event_id"], now,
                   {"points": points + bonus, "order_id": event["order_id"],
                    "available_at": rfc3339(now + program.return_window_ms)})
    return APPLIED


def _order_refunded(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    order = member.orders.get(event["order_id"])
    if order is None:
        return IGNORED
    order.refunded_cents = min(order.paid_cents, order.refunded_cents + event["refund_cents"])
    owed = order.points * order.refunded_cents // order.paid_cents if order.paid_cents else 0
    ledger, policy, total = member.ledger, program.refund_policy, 0
    if owed > order.clawed_back:
        taken = ledger.claw_back(owed - order.clawed_back, now, policy, (f"{order.event_id}:order",))
        order.clawed_back += taken
        total += taken
        out.reward(member, "points_clawed_back", -taken, event["event_id"], "refund", now,
                   {"order_id": order.order_id, "refunded_cents": order.refunded_cents})
    if order.bonus and not order.bonus_reversed and order.refunded_cents == order.paid_cents:
        taken = ledger.claw_back(order.bonus, now, policy, (f"{order.event_id}:first_order_bonus",))
        order.bonus_reversed = True
        total += taken
        out.reward(member, "points_clawed_back", -taken, event["event_id"], "first_order_bonus_reversal",
                   now, {"order_id": order.order_id})
    if total:
        out.notify(member, "points_clawed_back", event["event_id"], now,
                   {"points": total, "order_id": order.order_id})
    return APPLIED


def _review_posted(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    if member.frozen:
        return FROZEN
    order = member.orders.get(event["order_id"])
    day = _local_day(program, now)
    if (order is None or order.reviewed or not now - program.review_order_window_ms <= order.paid_at <= now
            or member.count_today(day, "reviews") >= program.review_daily_cap):
        return IGNORED
    order.reviewed = True
    member.bump_today(day, "reviews")
    points = program.review_points + (program.review_media_bonus if event["has_media"] else 0)
    _simple_earn(member, event, program, now, out, "reviews", points)
    return APPLIED


def _share(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    if member.frozen:
        return FROZEN
    day = _local_day(program, now)
    if member.count_today(day, "shares") >= program.share_daily_cap:
        return IGNORED
    member.bump_today(day, "shares")
    _simple_earn(member, event, program, now, out, "shares", program.share_points)
    return APPLIED


def _login(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    device = event["device_id"]  # a keyed hash by now (stream_app.privacy)
    if device not in member.devices:
        member.devices = [*member.devices, device][-MAX_DEVICES:]
        out.link_device("seen", device, member)
    if member.frozen:
        return FROZEN
    day = local_date(now, program.timezone)
    last = member.last_login_day
    if last is not None and day.isoformat() <= last:
        return IGNORED
    consecutive = last is not None and (day.toordinal() - datetime.fromisoformat(last).toordinal()) == 1
    member.login_streak = member.login_streak + 1 if consecutive else 1
    member.last_login_day = day.isoformat()
    _simple_earn(member, event, program, now, out, "logins", program.login_points)
    if member.login_streak % program.login_streak_days == 0 and program.login_streak_bonus:
        _earn_available(member, program, event["event_id"], "login_streak", program.login_streak_bonus,
                        now, out)
        out.notify(member, "points_earned", f"{event['event_id']}:streak", now,
                   {"points": program.login_streak_bonus, "rule": "login_streak",
                    "streak_days": member.login_streak})
    return APPLIED


def _redemption_requested(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    redemption_id, points = event["redemption_id"], event["points"]
    if redemption_id in member.redemption_ids:
        reason = "duplicate"
    elif member.frozen:
        reason = "member_frozen"
    elif member.ledger.spendable(now) < points:
        reason = "insufficient_points"
    else:
        reason = None
    params = {"redemption_id": redemption_id, "points": points, "reward_code": event["reward_code"]}
    if reason:
        out.reward(member, "redemption_rejected", 0, event["event_id"], "redemption", now,
                   {**params, "reason": reason})
        out.notify(member, "redemption_rejected", event["event_id"], now, {**params, "reason": reason})
        return APPLIED
    member.redemption_ids.append(redemption_id)
    del member.redemption_ids[:-program.max_event_ids]
    member.ledger.redeem(points, now)
    out.reward(member, "points_redeemed", -points, event["event_id"], "redemption", now, params)
    out.notify(member, "points_redeemed", event["event_id"], now, params)
    return APPLIED


def _member_joined(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    referrer = event.get("referrer_id")
    if referrer and referrer != member.referrer_id:
        member.referrer_id = referrer
        for device in member.devices:  # devices seen before the referral was known
            out.link_device("seen", device, member)
    _set_birthday(member, event, now)
    return APPLIED


def _member_flagged(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    """A flag from the abuse monitor's cross-member checks (or an operator): freezes the member."""
    if member.frozen:
        return IGNORED
    _freeze_flagged(member, event, event["rule"], {**event["evidence"], "operator_id": event["operator_id"]},
                    now, out)
    return APPLIED


def _member_updated(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    _set_birthday(member, event, now)
    return APPLIED


def _set_birthday(member: Member, event: dict, now: int) -> None:
    if "birthday" in event and event["birthday"] != member.birthday:
        member.birthday = event["birthday"]
        member.birthday_set_at = now


def _member_frozen(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    return _set_frozen(member, event, now, out, frozen=True)


def _member_unfrozen(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    return _set_frozen(member, event, now, out, frozen=False)


def _set_frozen(member: Member, event: dict, now: int, out: Outputs, frozen: bool) -> str:
    """An operator's freeze or unfreeze, audited as a reward event."""
    if member.frozen == frozen:
        return IGNORED
    member.frozen = frozen
    if not frozen:
        member.velocity = {}  # cleared by an operator: the burst that froze the member is forgiven
    kind = "member_frozen" if frozen else "member_unfrozen"
    out.reward(member, kind, 0, event["event_id"], "admin", now,
               {"operator_id": event["operator_id"], "reason": event["reason"]})
    return APPLIED


def _points_adjusted(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    """An operator's manual correction: positive points arrive available, negative ones are taken."""
    points = event["points"]
    lot = None
    if points > 0:
        lot = Lot(f"{event['event_id']}:adjustment", "adjustment", event["event_id"], points, points, now, now,
                  now + program.expiry_after_ms, released=True)
    member.ledger.adjust(points, lot)
    out.reward(member, "points_adjusted", points, event["event_id"], "admin", now,
               {"operator_id": event["operator_id"], "reason": event["reason"]})
    return APPLIED


_HANDLERS = {
    "order_paid": _order_paid,
    "order_refunded": _order_refunded,
    "review_posted": _review_posted,
    "share": _share,
    "login": _login,
    "redemption_requested": _redemption_requested,
    "member_joined": _member_joined,
    "member_updated": _member_updated,
    "member_frozen": _member_frozen,
    "member_unfrozen": _member_unfrozen,
    "points_adjusted": _points_adjusted,
    "member_flagged": _member_flagged,
}
