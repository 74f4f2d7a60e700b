"""The comparison `loyalty simulate` writes: one JSON document, rendered as a terminal table and a chart page.

Every compared figure is a triple {"current", "candidate", "difference"} (difference = candidate -
current). docs/simulation.md documents the document's shape; the HTML page is self-contained
(inline SVG and CSS, nothing fetched).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

from stream_app.core.simulation import Tally, daily

if TYPE_CHECKING:  # only for annotations: simulate imports this module
    from stream_app.history import History
    from stream_app.simulate import NamedProgram

SEGMENT_ORDER = ("new", "active", "loyal", "at_risk", "churned")


def side(current: int, candidate: int) -> dict[str, int]:
    return {"current": current, "candidate": candidate, "difference": candidate - current}


def sides(current: Mapping[str, int], candidate: Mapping[str, int], order: Iterable[str] = ()) -> dict:
    """A triple per key of either mapping: keys of `order` first, in that order, then the rest sorted."""
    keys = set(current) | set(candidate)
    first = [k for k in dict.fromkeys(order) if k in keys]
    ordered = first + sorted(keys - set(first))
    return {key: side(current.get(key, 0), candidate.get(key, 0)) for key in ordered}


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def document(tally: Tally, history: History, current: NamedProgram, candidate: NamedProgram,
             end_ms: int | None) -> dict:
    """The report as plain JSON data."""
    cur, cand = tally.current, tally.candidate
    tiers = [t.name for t in current.program.tiers] + [t.name for t in candidate.program.tiers]
    rejected = history.rejected  # refused by validation: the same under both programs
    codes = sorted(set(rejected) | set(cur.dead_letters) | set(cand.dead_letters))
    return {
        "history": {"source": history.source, "records": history.records, "events": tally.events,
                    "members": tally.members, "first_event_at": _iso(history.first_ms),
                    "last_event_at": _iso(history.last_ms), "end": _iso(end_ms)},
        "programs": {name: {"source": p.source, "timezone": p.program.timezone.key}
                     for name, p in (("current", current), ("candidate", candidate))},
        "points": {
            "issued": sides(cur.issued, cand.issued),
            "issued_total": side(sum(cur.issued.values()), sum(cand.issued.values())),
            **{flow: side(getattr(cur, flow), getattr(cand, flow))
               for flow in ("clawed_back", "redeemed", "expired", "adjusted", "erased")},
        },
        "liability": {"available": side(cur.available, cand.available), "pending": side(cur.pending, cand.pending),
                      "total": side(cur.liability, cand.liability)},
        "members_by_tier": sides(cur.tiers, cand.tiers, tiers),
        "members_by_segment": sides(cur.segments, cand.segments, SEGMENT_ORDER),
        "notifications": {"by_template": sides(cur.notifications, cand.notifications),
                          "dropped": side(cur.notifications_dropped, cand.notifications_dropped),
                          "held_at_end": side(cur.notifications_held, cand.notifications_held)},
        "rewards_by_type": sides(cur.rewards, cand.rewards),
        "events_by_outcome": sides(cur.events, cand.events),
        "dead_letters": {
            "by_code": {code: side(rejected[code] + cur.dead_letters[code], rejected[code] + cand.dead_letters[code])
                        for code in codes},
            "examples": {code: {"where": where, "detail": detail}
                         for code, (where, detail) in sorted(history.examples.items())},
        },
        "differing_members": [{"member_id": d.member_id, "current": d.current, "candidate": d.candidate,
                               "difference": d.difference} for d in tally.differing],
        "daily": [{"date": day.date, "issued": side(day.issued_current, day.issued_candidate),
                   "liability": side(day.liability_current, day.liability_candidate)}
                  for day in daily(cur, cand)],
    }


# -- terminal table ---------------------------------------------------------------------------------

def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


def table(doc: dict) -> str:
    """The comparison as aligned text columns."""
    rows: list[tuple[str, dict | None]] = []

    def section(title: str, entries: Mapping[str, dict], total: dict | None = None) -> None:
        rows.append((title, total))
        rows.extend((f"  {key}", value) for key, value in entries.items())

    points = doc["points"]
    section("points issued, by rule", points["issued"], points["issued_total"])
    for flow in ("clawed_back", "redeemed", "expired", "adjusted", "erased"):
        rows.append((f"points {flow.replace('_', ' ')}", points[flow]))
    liability = doc["liability"]
    section("liability at the end (available + pending)", {k: liability[k] for k in ("available", "pending")},
            liability["total"])
    section("members by tier", doc["members_by_tier"])
    section("members by segment", doc["members_by_segment"])
    notes = doc["notifications"]
    section("notifications sent, by template", notes["by_template"])
    rows += [("notifications dropped by the policy", notes["dropped"]),
             ("notifications held at the end", notes["held_at_end"])]
    section("reward events, by type", doc["rewards_by_type"])
    section("input events, by outcome", doc["events_by_outcome"])
    section("dead letters, by code", doc["dead_letters"]["by_code"])

    history, programs = doc["history"], doc["programs"]
    span = (f"{history['first_event_at']} to {history['last_event_at']}, simulated to {history['end']}"
            if history["first_event_at"] else "no valid event")
    head = [f"history    {history['source']}: {history['records']:,} records, {history['events']:,} events of "
            f"{history['members']:,} members, {span}"]
    head += [f"{name:<11}{p['source']} ({p['timezone']})" for name, p in programs.items()]
    for code, example in doc["dead_letters"]["examples"].items():
        head.append(f"rejected   {code}: first at {example['where']}: {example['detail']}")
    width = max(len(label) for label, _ in rows)
    lines = [*head, "", f"{'':<{width}}  {'current':>14}  {'candidate':>14}  {'difference':>14}"]
    for label, value in rows:
        if value is None:
            lines.append(label)
        else:
            lines.append(f"{label:<{width}}  {value['current']:>14,}  {value['candidate']:>14,}  "
                         f"{_signed(value['difference']):>14}")
    members = doc["differing_members"]
    lines += ["", f"members whose outcome differs most (available + pending at the end): {len(members) or 'none'}"]
    if members:
        idw = max(len("member"), *(len(m["member_id"]) for m in members))
        lines.append(f"  {'member':<{idw}}  {'current':>14}  {'candidate':>14}  {'difference':>14}")
        lines += [f"  {m['member_id']:<{idw}}  {m['current']:>14,}  {m['candidate']:>14,}  "
                  f"{_signed(m['difference']):>14}" for m in members]
    return "\n".join(lines)


# -- chart page -------------------------------------------------------------------------------------

_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 900, 280, 90, 20, 20, 40
_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
svg { background: #fafafa; border: 1px solid #ddd; }
.axis { stroke: #999; stroke-width: 1; } .grid { stroke: #e4e4e4; stroke-width: 1; }
.current { stroke: #1f77b4; fill: none; stroke-width: 2; }
.candidate { stroke: #d62728; fill: none; stroke-width: 2; stroke-dasharray: 6 3; }
circle.current { fill: #1f77b4; } circle.candidate { fill: #d62728; }
.legend-current { color: #1f77b4; font-weight: bold; } .legend-candidate { color: #d62728; font-weight: bold; }
text { font-size: 12px; fill: #555; } table { border-collapse: collapse; margin-top: 1em; }
td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #eee; } td:first-child { text-align: left; }
"""


def _chart(name: str, title: str, dates: list[str], series: dict[str, list[int]]) -> str:
    """An SVG line chart of `series` (name -> one value per date) over `dates`."""
    values = [v for points in series.values() for v in points] or [0]
    low, high = min(0, *values), max(0, *values)
    span = (high - low) or 1
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (plot_w * i / (len(dates) - 1) if len(dates) > 1 else plot_w / 2)

    def y(v: int) -> float:
        return _TOP + plot_h * (high - v) / span

    parts = [f'<svg id="{name}" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" height="{_HEIGHT}" '
             f'role="img" aria-label="{escape(title)}">']
    for step in range(5):
        v = low + span * step / 4
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text x="{_LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}"/>')
    for i in sorted({0, len(dates) // 2, len(dates) - 1}) if dates else ():
        anchor = "start" if i == 0 and len(dates) > 1 else "end" if i == len(dates) - 1 > 0 else "middle"
        parts.append(f'<text x="{x(i):.1f}" y="{_HEIGHT - 12}" text-anchor="{anchor}">{escape(dates[i])}</text>')
    for label, points in series.items():
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(points))
        parts.append(f'<polyline class="{label}" data-series="{name}-{label}" points="{coords}">'
                     f'<title>{label}</title></polyline>')
        if len(points) <= 62:  # a dot per day while they can be told apart
            parts += [f'<circle class="{label}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5">'
                      f'<title>{escape(dates[i])} {label}: {v:,}</title></circle>' for i, v in enumerate(points)]
    parts.append("</svg>")
    return "\n".join(parts)


def html(doc: dict) -> str:
    """A self-contained page: daily points issued and liability under both programs, and key totals."""
    days = doc["daily"]
    dates = [d["date"] for d in days]
    charts = []
    for name, title in (("issued", "Points issued per day"), ("liability", "Liability (available + pending) "
                                                                            "at the end of each day")):
        series = {label: [d[name][label] for d in days] for label in ("current", "candidate")}
        charts.append(f"<h2>{title}</h2>\n{_chart(name, title, dates, series)}")
    programs, history = doc["programs"], doc["history"]
    totals = [("points issued", doc["points"]["issued_total"]), ("points clawed back", doc["points"]["clawed_back"]),
              ("points redeemed", doc["points"]["redeemed"]), ("points expired", doc["points"]["expired"]),
              ("liability at the end", doc["liability"]["total"])]
    rows = "\n".join(f"<tr><td>{escape(label)}</td><td>{v['current']:,}</td><td>{v['candidate']:,}</td>"
                     f"<td>{_signed(v['difference'])}</td></tr>" for label, v in totals)
    zones = {p["timezone"] for p in programs.values()}
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>loyalty simulate: {escape(programs['current']['source'])} vs {escape(programs['candidate']['source'])}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Simulation: current vs candidate program</h1>
<p><span class="legend-current">current</span>: {escape(programs['current']['source'])} &nbsp;
<span class="legend-candidate">candidate</span>: {escape(programs['candidate']['source'])}</p>
<p>History {escape(history['source'])}: {history['events']:,} events of {history['members']:,} members,
{escape(str(history['first_event_at']))} to {escape(str(history['end']))}.
Days are calendar days in {escape(', '.join(sorted(zones)))} (each program's own time zone).</p>
{chr(10).join(charts)}
<table>
<tr><th></th><th>current</th><th>candidate</th><th>difference</th></tr>
{rows}
</table>
</body>
</html>
"""
