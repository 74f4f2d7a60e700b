"""A member's orders over time, in bounded space: refundable orders in full, then only what rules need.

An order is kept whole while it may be refunded (`orders.refund_horizon`); then, if it was not reviewed
and is still in the review window, only its paid instant stays (`Member.reviewable`); its tier and
segment weight lives from the start in a row of `Member.windows`, `[window_key, qualifying, orders]`,
shared by the orders of a local day or month (`orders.window_granularity`). A row counts in a trailing
window while `window_key + window > now`. Every rule here is judged by instants (the member's clock),
never by whether housekeeping already ran, so when `fold` happens does not change any result.
"""
from __future__ import annotations

from stream_app.core.calendar import period_end
from stream_app.core.member import REVIEWED, Member, Order
from stream_app.core.program import Program

KEY, QUALIFYING, COUNT = 0, 1, 2  # a window row
PAID_AT, FLAGS = 2, 8  # in an order row (Order.to_row)


def record(member: Member, program: Program, order: Order) -> None:
    """Keep a newly paid order and count it in its window row."""
    order.window_key = period_end(order.paid_at, program.order_window_granularity, program.timezone)
    member.keep_order(order)
    row = _row(member, order.window_key)
    row[QUALIFYING] += order.qualifying
    row[COUNT] += 1


def claw_back(member: Member, order: Order, points: int) -> None:
    """`points` of an order's own points were clawed back: it qualifies for that much less (the caller
    keeps the changed order: `Member.keep_order`)."""
    order.clawed_back += points
    for row in member.windows:
        if row[KEY] == order.window_key:
            row[QUALIFYING] -= points


def refundable(member: Member, program: Program, order_id: str) -> Order | None:
    """The order, if a refund of it still counts at the member's clock."""
    order = member.order(order_id)
    if order is None or order.paid_at + program.refund_horizon_ms < _clock(member, order.paid_at):
        return None
    return order


def known(member: Member, program: Program, order_id: str) -> bool:
    """Whether a rule still refers to this order at the member's clock (a second order_paid is ignored)."""
    row, clock = member.orders.get(order_id), _clock(member, 0)
    if row is not None:
        paid_at, reviewed = row[PAID_AT], row[FLAGS] & REVIEWED
        return paid_at + program.refund_horizon_ms >= clock or (
            not reviewed and paid_at + program.review_order_window_ms >= clock)
    paid_at = member.reviewable.get(order_id)
    return paid_at is not None and paid_at + program.review_order_window_ms >= clock


def take_for_review(member: Member, program: Program, order_id: str, now: int) -> bool:
    """Mark the order reviewed if a review at `now` may count for it: paid in the review window before
    `now`, not reviewed yet, and the window still open at the member's clock."""
    window, clock = program.review_order_window_ms, _clock(member, now)
    order = member.order(order_id)
    paid_at = order.paid_at if order is not None and not order.reviewed else member.reviewable.get(order_id)
    if paid_at is None or not now - window <= paid_at <= now or paid_at + window < clock:
        return False
    if order is not None:
        order.reviewed = True
        member.keep_order(order)
    else:
        del member.reviewable[order_id]
    return True


def fold(member: Member, program: Program, at: int) -> None:
    """Forget what no rule can refer to at `at` any more. Orders and reviewable ones are looked at in the
    order they were kept (nearly that of their paid instants) up to the first one still needed: a late
    order kept after newer ones is forgotten a little later, which no rule can tell (they go by instants)."""
    review = program.review_order_window_ms
    if not member.stored_orders.may_forget(program.refund_horizon_ms, review, at):
        return _fold_windows(member, program, at)
    while member.orders:
        order_id, row = next(iter(member.orders.items()))
        if row[PAID_AT] + program.refund_horizon_ms >= at:
            break
        del member.orders[order_id]
        if not row[FLAGS] & REVIEWED and row[PAID_AT] + review >= at:
            member.reviewable[order_id] = row[PAID_AT]
    while member.reviewable:
        order_id, paid_at = next(iter(member.reviewable.items()))
        if paid_at + review >= at:
            break
        del member.reviewable[order_id]
    _fold_windows(member, program, at)


def _fold_windows(member: Member, program: Program, at: int) -> None:
    longest = max(program.tier_window_ms, program.segment_loyal_window_ms)
    if member.windows and member.windows[0][KEY] + longest <= at:
        member.windows = [row for row in member.windows if row[KEY] + longest > at]


def qualifying_points(member: Member, window_ms: int, now: int) -> int:
    """Order points (pending included, less clawbacks) counting in the trailing window at `now`."""
    return sum(row[QUALIFYING] for row in member.windows if row[KEY] + window_ms > now)


def orders_in_window(member: Member, window_ms: int, now: int) -> int:
    return sum(row[COUNT] for row in member.windows if row[KEY] + window_ms > now)


def next_exit(member: Member, window_ms: int, now: int, qualifying_only: bool) -> int | None:
    """The next instant after `now` at which a row (with qualifying points, if asked) leaves the window."""
    for row in member.windows:
        if row[KEY] + window_ms > now and (row[QUALIFYING] > 0 or not qualifying_only):
            return row[KEY] + window_ms
    return None


def _clock(member: Member, otherwise: int) -> int:
    return otherwise if member.evaluated_at is None else member.evaluated_at


def _row(member: Member, key: int) -> list[int]:
    rows = member.windows
    for at in range(len(rows) - 1, -1, -1):  # nearly always the newest row
        if rows[at][KEY] == key:
            return rows[at]
        if rows[at][KEY] < key:
            rows.insert(at + 1, [key, 0, 0])
            return rows[at + 1]
    rows.insert(0, [key, 0, 0])
    return rows[0]
