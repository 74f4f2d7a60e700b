"""Fixtures for the unit tests of the pure loyalty core.

- `make_program(edits, campaigns=True, extra="")` builds a Program from the packaged default TOML
  with some keys replaced: `edits` maps a dotted key to a TOML literal, e.g.
  {"orders.return_window": '"PT5S"', "orders.category_multipliers.books": "2.0"}.
- `run()` / `run(member_id, program)` gives a `MemberRun`: it builds events (incrementing event ids),
  applies them with `engine.apply_event`, advances time with `engine.advance`, and keeps the state
  and every output.
- `ms(...)`, `iso(...)`, `DAY` and friends convert between RFC 3339 text and epoch milliseconds.
"""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from stream_app.core import engine
from stream_app.core.member import Member
from stream_app.core.program import Program, default_program_text, parse_program

SHANGHAI = ZoneInfo("Asia/Shanghai")
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(moment: str | int) -> int:
    """Epoch milliseconds of an RFC 3339 text (ints pass through)."""
    if isinstance(moment, int):
        return moment
    return (datetime.fromisoformat(moment) - _EPOCH) // timedelta(milliseconds=1)


def iso(moment: str | int) -> str:
    """RFC 3339 text in Shanghai local time with milliseconds (texts pass through)."""
    if isinstance(moment, str):
        return moment
    return (_EPOCH + timedelta(milliseconds=moment)).astimezone(SHANGHAI).isoformat(timespec="milliseconds")


def utc(moment: str | int) -> str:
    """The RFC 3339 UTC text the core writes (`...Z` with milliseconds)."""
    text = (_EPOCH + timedelta(milliseconds=ms(moment))).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


# -- programs -----------------------------------------------------------------------------------

def _section_bounds(lines: list[str], section: str) -> tuple[int, int] | None:
    """(first line after the header, end) of `[section]`; the top level when `section` is empty."""
    if not section:
        start = 0
    else:
        header = re.compile(rf"^\s*\[{re.escape(section)}\]\s*(#.*)?$")
        found = [i for i, line in enumerate(lines) if header.match(line)]
        if not found:
            return None
        start = found[0] + 1
    end = next((i for i in range(start, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    return start, end


def toml_with(edits: dict[str, str] | None = None, *, campaigns: bool = True, extra: str = "",
              text: str | None = None) -> str:
    """The default program TOML with `edits` applied (dotted key -> TOML literal, or None to delete
    the key), the default campaign removed when `campaigns` is false, and `extra` appended."""
    text = default_program_text() if text is None else text
    if not campaigns:
        text = re.sub(r"^\[\[campaigns\]\].*?(?=^\[dedupe\])", "", text, flags=re.S | re.M)
    lines = text.splitlines()
    for dotted, literal in (edits or {}).items():
        section, _, key = dotted.rpartition(".")
        bounds = _section_bounds(lines, section)
        if bounds is None:
            if literal is not None:
                lines += ["", f"[{section}]", f"{key} = {literal}"]
            continue
        start, end = bounds
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        hit = next((i for i in range(start, end) if pattern.match(lines[i])), None)
        if hit is not None and literal is None:
            del lines[hit]
        elif hit is not None:
            lines[hit] = f"{key} = {literal}"
        elif literal is not None:
            lines.insert(start, f"{key} = {literal}")
    return "\n".join(lines) + "\n" + extra


# Lifecycle segments, the marketing-notification policy (daily cap, quiet hours) and abuse velocity limits
# are features of their own with their own tests. The rule tests here switch them off, so that their
# outputs (segment_changed rewards, held or dropped notifications, freezes) and due times (segment
# changes a month or more away) do not mix with the loyalty rules they pin down. Every loyalty rule keeps
# its packaged default (test_program.py checks that nothing else differs).
FEATURES_OFF = {
    "segments.new_for": '"P36500D"',
    "segments.loyal_orders": "1000000",
    "segments.loyal_window": '"P36500D"',
    "segments.at_risk_after": '"P36500D"',
    "segments.churned_after": '"P36500D"',
    "notification_policy.marketing_daily_cap": "1000000",
    "notification_policy.quiet_start": '"00:00"',
    "notification_policy.quiet_end": '"00:00"',
    "abuse.reviews_per_window": "1000000",
    "abuse.shares_per_window": "1000000",
    "abuse.devices_per_window": "1000000",
}
# The core's rules pinned at exact instants: the packaged program rounds expiry and the order windows to
# local months and forgets orders and event ids after its horizons (bounded state, issue 11); the unit
# tests of the rules use the exact form (the program without those keys), the bounded form is tested
# on its own (test_bounded_state.py, and a variant of test_properties.py).
EXACT_HISTORY = {
    "expiry.granularity": None,
    "orders.window_granularity": None,
    "orders.refund_horizon": None,
    "dedupe.window": None,
}
NEVER = ms("2100-01-01T00:00:00Z")  # due times this late come from the switched-off features only


def build_program(edits: dict[str, str] | None = None, *, campaigns: bool = True, extra: str = "",
                  features: bool = False) -> Program:
    """The default program with `edits`; the features above stay off unless `features` is true."""
    edits = {**EXACT_HISTORY, **(edits or {})} if features else {**FEATURES_OFF, **EXACT_HISTORY, **(edits or {})}
    return parse_program(toml_with(edits, campaigns=campaigns, extra=extra))


def due(result) -> int | None:
    """A result's next_due, None when nothing is due before 2100."""
    return result.next_due if result.next_due is not None and result.next_due < NEVER else None


@pytest.fixture(scope="session")
def program() -> Program:
    """The packaged default rules (features above off)."""
    return build_program()


@pytest.fixture(scope="session")
def make_program():
    return build_program


# -- events and a member's run ------------------------------------------------------------------

class EventFactory:
    """Input events with incrementing event ids (`e1`, `e2`, ... per factory)."""

    def __init__(self, member_id: str = "m1", prefix: str = "e") -> None:
        self.member_id, self.prefix, self.count = member_id, prefix, 0

    def next_id(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count}"

    def make(self, type_: str, at: str | int, *, member_id: str | None = None, event_id: str | None = None,
             **fields) -> dict:
        return {"event_id": event_id or self.next_id(), "member_id": member_id or self.member_id,
                "occurred_at": iso(at), "type": type_, **fields}

    def order(self, at, order_id: str, amount_cents: int, items: list[dict] | None = None, **kw) -> dict:
        fields = {"order_id": order_id, "amount_cents": amount_cents, "currency": "CNY"}
        if items is not None:
            fields["items"] = items
        return self.make("order_paid", at, **fields, **kw)

    def refund(self, at, order_id: str, refund_cents: int, **kw) -> dict:
        return self.make("order_refunded", at, order_id=order_id, refund_cents=refund_cents, **kw)

    def review(self, at, order_id: str, has_media: bool = False, rating: int = 5, **kw) -> dict:
        return self.make("review_posted", at, review_id=f"rv-{order_id}-{self.count + 1}", order_id=order_id,
                         rating=rating, has_media=has_media, **kw)

    def share(self, at, **kw) -> dict:
        return self.make("share", at, share_id=f"sh{self.count + 1}", channel="wechat", target="friend", **kw)

    def login(self, at, **kw) -> dict:
        return self.make("login", at, device_id="phone", **kw)

    def joined(self, at, **fields) -> dict:
        return self.make("member_joined", at, **fields)

    def updated(self, at, **fields) -> dict:
        return self.make("member_updated", at, **fields)

    def erased(self, at, **kw) -> dict:
        return self.make("member_erased", at, **kw)

    def redeem(self, at, points: int, redemption_id: str | None = None, reward_code: str = "COUPON", **kw) -> dict:
        return self.make("redemption_requested", at, redemption_id=redemption_id or f"rd{self.count + 1}",
                         points=points, reward_code=reward_code, **kw)


class MemberRun:
    """One member's state threaded through the core, with every output kept in order.

    Builder methods (`order`, `refund`, `review`, `share`, `login`, `joined`, `updated`, `erased`,
    `redeem`) build the event, apply it and return the `Result`; `advance(at)` runs due work."""

    def __init__(self, program: Program, member_id: str = "m1", prefix: str = "e") -> None:
        self.program, self.member_id = program, member_id
        self.events = EventFactory(member_id, prefix)
        self.state: dict | None = None
        self.rewards: list[dict] = []
        self.notifications: list[dict] = []
        self.applied: list[dict] = []
        self.last: engine.Result | None = None

    def apply(self, event: dict) -> engine.Result:
        result = engine.apply_event(self.state, event, self.program)
        self._keep(result)
        self.applied.append(event)
        return result

    def advance(self, at: str | int) -> engine.Result:
        result = engine.advance(self.state, self.program, ms(at))
        self._keep(result)
        return result

    def _keep(self, result: engine.Result) -> None:
        self.state = result.state
        self.rewards += result.rewards
        self.notifications += result.notifications
        self.last = result

    def __getattr__(self, name: str):
        build = getattr(EventFactory, name, None)
        if build is None or name.startswith("_") or name in ("make", "next_id"):
            raise AttributeError(name)
        return lambda *args, **kw: self.apply(build(self.events, *args, **kw))

    @property
    def member(self) -> Member:
        return Member.from_dict(self.state)

    @property
    def ledger(self):
        return self.member.ledger

    def balance(self) -> tuple[int, int]:
        """(available, pending)."""
        ledger = self.ledger
        return ledger.available, ledger.pending


@pytest.fixture
def run():
    """`run()` -> MemberRun on the default rules; `run(program=..., member_id=...)` otherwise."""
    default = build_program()

    def make(program: Program | None = None, member_id: str = "m1", prefix: str = "e") -> MemberRun:
        return MemberRun(program or default, member_id, prefix)

    return make


def rewards_of(result_or_list, kind: str | None = None) -> list[dict]:
    rewards = result_or_list if isinstance(result_or_list, list) else result_or_list.rewards
    return [r for r in rewards if kind is None or r["type"] == kind]


def summary(rewards: list[dict]) -> list[tuple]:
    """(type, points, rule) of each reward, in order: compact enough for exact assertions."""
    return [(r["type"], r["points"], r["rule"]) for r in rewards]


def templates(notifications: list[dict]) -> list[str]:
    return [n["template"] for n in notifications]
