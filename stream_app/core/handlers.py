"""The rules per input event kind: one handler per event type, each returning the outcome."""
from __future__ import annotations

from datetime import datetime
from fractions import Fraction

from stream_app.core import order_history
from stream_app.core.calendar import campaign_multiplier, local_date, rfc3339
from stream_app.core.earning import earn_available, earn_pending, expiry_of, local_day, simple_earn
from stream_app.core.emitted import Outputs
from stream_app.core.ledger import Lot
from stream_app.core.member import Member, Order
from stream_app.core.outcomes import APPLIED, FROZEN, IGNORED
from stream_app.core.program import Program
from stream_app.core.redemption import redemption_cancelled, redemption_requested

MAX_DEVICES = 20  # device hashes remembered per member, for the shared-device referral check


def freeze_flagged(member: Member, event: dict, rule: str, evidence: dict, now: int, out: Outputs) -> None:
    member.frozen = True
    member.flags.append({"rule": rule, "at": now, "evidence": evidence})
    out.reward(member, "member_flagged", 0, event["event_id"], rule, now, evidence)
    out.notify(member, "member_flagged", event["event_id"], now, {"rule": rule, **evidence})


def _order_points(event: dict, program: Program, tier_multiplier: Fraction, campaign: Fraction) -> int:
    """floor(amount * points per unit * category weight * tier and campaign multipliers), in exact rationals:
    the integer floor of one numerator over one denominator (no Fraction reduced at each product)."""
    weight: Fraction | int = 1
    items = event.get("items") or []
    total = sum(i["price_cents"] * i["quantity"] for i in items)
    if total:
        weighted = sum(i["price_cents"] * i["quantity"] * program.category_multipliers.get(i["category"], 1)
                       for i in items)
        weight = Fraction(weighted) / total
    numerator, denominator = event["amount_cents"], 100
    for factor in (program.points_per_unit, weight, tier_multiplier, campaign):
        top, bottom = factor.as_integer_ratio()
        numerator, denominator = numerator * top, denominator * bottom
    return numerator // denominator


def _order_paid(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    if member.frozen:
        return FROZEN
    if order_history.known(member, program, event["order_id"]):
        return IGNORED
    points = _order_points(event, program, program.tier(member.tier).multiplier,
                           campaign_multiplier(program, "orders", now))
    bonus = program.first_order_bonus if not member.has_ordered and event["amount_cents"] > 0 else 0
    member.has_ordered = member.has_ordered or event["amount_cents"] > 0
    order_history.record(member, program, Order(event["order_id"], event["event_id"], now,
                                                event["amount_cents"], points, bonus))
    member.first_order_at = min(member.first_order_at or now, now)
    member.last_order_at = max(member.last_order_at or now, now)
    if points:
        earn_pending(member, program, event["event_id"], "order", points, now, out)
    if bonus:
        earn_pending(member, program, event["event_id"], "first_order_bonus", bonus, now, out)
    if points or bonus:
        out.notify(member, "points_pending", event["event_id"], now,
                   {"points": points + bonus, "order_id": event["order_id"],
                    "available_at": rfc3339(now + program.return_window_ms)})
    return APPLIED


def _order_refunded(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    order = order_history.refundable(member, program, event["order_id"])
    if order is None:
        return IGNORED
    order.refunded_cents = min(order.paid_cents, order.refunded_cents + event["refund_cents"])
    owed = order.points * order.refunded_cents // order.paid_cents if order.paid_cents else 0
    ledger, policy, total = member.ledger, program.refund_policy, 0
    if owed > order.clawed_back:
        taken = ledger.claw_back(owed - order.clawed_back, now, policy, (f"{order.event_id}:order",))
        order_history.claw_back(member, order, taken)
        total += taken
        out.reward(member, "points_clawed_back", -taken, event["event_id"], "refund", now,
                   {"order_id": order.order_id, "refunded_cents": order.refunded_cents})
    if order.bonus and not order.bonus_reversed and order.refunded_cents == order.paid_cents:
        taken = ledger.claw_back(order.bonus, now, policy, (f"{order.event_id}:first_order_bonus",))
        order.bonus_reversed = True
        total += taken
        out.reward(member, "points_clawed_back", -taken, event["event_id"], "first_order_bonus_reversal",
                   now, {"order_id": order.order_id})
    member.keep_order(order)
    if total:
        out.notify(member, "points_clawed_back", event["event_id"], now,
                   {"points": total, "order_id": order.order_id})
    return APPLIED


def _review_posted(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    if member.frozen:
        return FROZEN
    day = local_day(program, now)
    if (member.count_today(day, "reviews") >= program.review_daily_cap
            or not order_history.take_for_review(member, program, event["order_id"], now)):
        return IGNORED
    member.bump_today(day, "reviews")
    points = program.review_points + (program.review_media_bonus if event["has_media"] else 0)
    simple_earn(member, event, program, now, out, "reviews", points)
    return APPLIED


def _share(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    if member.frozen:
        return FROZEN
    day = local_day(program, now)
    if member.count_today(day, "shares") >= program.share_daily_cap:
        return IGNORED
    member.bump_today(day, "shares")
    simple_earn(member, event, program, now, out, "shares", program.share_points)
    return APPLIED


def _login(member: Member, event: dict, program: Program, now: int, out: Outputs) -> str:
    device = event["device_id"]  # a keyed hash by now (stream_app.core.privacy)
    if device not in member.devices:
        devices = [*member.devices, device]
        member.devices = devices[-MAX_DEVICES:]
        out.link_device("seen", device, member)
        for old in devices[:-MAX_DEVICES]:  # no longer remembered, so no longer indexed: erasure reaches all
            out.link_device("forget", old, member)
    if member.frozen:
        return FROZEN
    day = local_date(now, program.timezone)
    last = member.last_login_day
    if last is not None and day.isoformat() <= last:
        return IGNORED
    consecutive = last is not None and (day.toordinal() - datetime.fromisoformat(last).toordinal()) == 1
    member.login_streak = member.login_streak + 1 if consecutive else 1
    member.last_login_day = day.isoformat()
    simple_earn(member, event, program, now, out, "logins", program.login_points)
    if member.login_streak % program.login_streak_days == 0 and program.login_streak_bonus:
        earn_available(member, program, event["event_id"], "login_streak", program.login_streak_bonus,
                        now, out)
        out.notify(member, "points_earned", f"{event['event_id']}:streak", now,
                   {"points": program.login_streak_bonus, "rule": "login_streak",
                    "streak_days": member.login_streak})
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
    freeze_flagged(member, event, event["rule"], {**event["evidence"], "operator_id": event["operator_id"]},
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
                  expiry_of(program, now), released=True)
    member.ledger.adjust(points, lot)
    out.reward(member, "points_adjusted", points, event["event_id"], "admin", now,
               {"operator_id": event["operator_id"], "reason": event["reason"]})
    return APPLIED


HANDLERS = {
    "order_paid": _order_paid,
    "order_refunded": _order_refunded,
    "review_posted": _review_posted,
    "share": _share,
    "login": _login,
    "redemption_requested": redemption_requested,
    "redemption_cancelled": redemption_cancelled,
    "member_joined": _member_joined,
    "member_updated": _member_updated,
    "member_frozen": _member_frozen,
    "member_unfrozen": _member_unfrozen,
    "points_adjusted": _points_adjusted,
    "member_flagged": _member_flagged,
}
