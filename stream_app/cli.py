"""The `loyalty` command line: run the worker, generate load, replay events, inspect members and programs."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stream_app import simulate
from stream_app.kafka_security import LoginFailed, client_options
from stream_app.loadgen import DEFAULT_MIX, Delivery, MissingTopics, Progress, generate, parse_mix, produce
from stream_app.settings import Settings, load_settings


def _client_options(settings: Settings) -> dict[str, Any] | None:
    """The LOYALTY_KAFKA_* security as aiokafka client options; None, with the reason on stderr, if they are wrong."""
    try:
        return client_options(settings.kafka_security)
    except ValueError as exc:
        print(f"loyalty: {exc}", file=sys.stderr)
        return None


# -- worker ---------------------------------------------------------------------------------------

def _worker(args: argparse.Namespace) -> int:
    from stream_app.compose import build_app  # Faust and the agents: only for this command
    from stream_app.core.program import ProgramError
    from stream_app.core.program_versions import load_versions

    settings = load_settings()
    try:
        versions = load_versions(settings.rules_path)
    except ProgramError as exc:  # LOYALTY_RULES names a bad file: the worker does not start
        print(f"loyalty: {exc}", file=sys.stderr)
        return 1
    from stream_app import runtime

    runtime.prepare_process()
    app = build_app(settings, versions.at(int(time.time() * 1000)), versions).app
    sys.argv = ["loyalty", "worker", "-l", settings.log_level]
    app.main()
    return 0


# -- produce ----------------------------------------------------------------------------------------

def _produce(args: argparse.Namespace, clock: Callable[[], float] = time.time, producer: Any = None) -> int:
    """Generate and send the load; events occur from `clock()` on, spaced at the target rate."""
    options = _client_options(args.settings)
    if options is None:
        return 2
    start_ms = int(clock() * 1000)
    step_ms = 1000 / args.rate if args.rate else 0.0
    messages = generate(args.members, args.events, args.seed, args.mix, start_ms, step_ms)
    progress = Progress(args.events)
    result = _run(produce(messages, args.bootstrap, args.prefix, args.rate, progress, producer, options))
    if result is None:
        return 1
    progress.finish(result.sent)
    return _report(result, f"{args.bootstrap} ({args.prefix}*)")


def _run(sending: Coroutine[Any, Any, Delivery]) -> Delivery | None:
    """Run a produce coroutine; None, with the reason on stderr, when Kafka, its login, its topics or Ctrl-C stop it."""
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(sending)
    except (MissingTopics, KafkaError, LoginFailed) as exc:
        print(f"loyalty: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nloyalty: interrupted", file=sys.stderr)
    return None


def _report(result: Delivery, target: str) -> int:
    rate = result.sent / result.seconds if result.seconds else 0.0
    print(f"sent {result.sent} events to {target} in {result.seconds:.1f}s ({rate:,.0f} events/s)",
          file=sys.stderr)
    if result.failed:
        print(f"loyalty: {result.failed} deliveries failed, first: {result.first_error}", file=sys.stderr)
        return 1
    return 0


# -- replay -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Skipped:
    """A replay line that is not a valid input event."""

    line: int
    reason: str


def read_events(lines: Iterable[bytes], now_ms: int) -> Iterator[tuple[str, bytes, bytes] | Skipped]:
    """(topic kind, key, value) for each JSON-lines event, or Skipped with its 1-based line number.

    An event's topic is the input kind whose schema lists its `type`; its key is its member id.
    Each line is judged as the worker would judge it at `now_ms` (epoch ms).
    """
    from stream_app.history import route
    from topics.validation import Rejection, decode_event

    for number, raw in enumerate(lines, 1):
        value = raw.strip()
        if not value:
            continue
        routed = route(value)
        if isinstance(routed, Rejection):
            yield Skipped(number, f"{routed.code}: {routed.detail}")
            continue
        kind, key = routed
        decoded = decode_event(kind, key, value, now_ms=now_ms)
        if isinstance(decoded, Rejection):
            yield Skipped(number, f"{decoded.code}: {decoded.detail}")
        else:
            yield kind, key, value


def _replay(args: argparse.Namespace, clock: Callable[[], float] = time.time) -> int:
    options = _client_options(args.settings)
    if options is None:
        return 2
    skipped = 0

    def valid(lines: Iterable[bytes]) -> Iterator[tuple[str, bytes, bytes]]:
        nonlocal skipped
        for item in read_events(lines, int(clock() * 1000)):
            if isinstance(item, Skipped):
                skipped += 1
                print(f"{args.file}:{item.line}: {item.reason}", file=sys.stderr)
            else:
                yield item

    try:
        with open(args.file, "rb") as lines:
            result = _run(produce(valid(lines), args.bootstrap, args.prefix, client_options=options))
    except OSError as exc:
        print(f"loyalty: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if result is None:
        return 1
    status = _report(result, f"{args.bootstrap} ({args.prefix}*)")
    if skipped:
        print(f"loyalty: skipped {skipped} invalid line(s) of {args.file}", file=sys.stderr)
        return 1
    return status


# -- member -----------------------------------------------------------------------------------------

def _when(text: str) -> str:
    try:
        return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return text


def format_member(view: dict) -> str:
    """A person-readable rendering of a `GET /members/{id}` body."""
    points, progress = view["points"], view["tier_progress"]
    qualifying, needed, upcoming = progress["qualifying_points"], progress["points_needed"], progress["next_tier"]
    frozen = "  (FROZEN)" if view.get("frozen") else ""
    lines = [f"Member     {view['member_id']}{frozen}", f"Tier       {view['tier']}"]
    if upcoming:
        share = qualifying / (qualifying + needed) if qualifying + needed else 1.0
        bar = "#" * int(share * 20)
        lines.append(f"Progress   [{bar:-<20}] {share:4.0%}  {qualifying:,} qualifying points, "
                     f"{needed:,} more for {upcoming}")
    else:
        lines.append(f"Progress   top tier, {qualifying:,} qualifying points")
    if progress.get("at_risk_since"):
        lines.append(f"At risk    since {_when(progress['at_risk_since'])}: below the {view['tier']} threshold")
    lines.append(f"Points     {points['available']:,} available, {points['pending']:,} pending, "
                 f"{points['lifetime_earned']:,} earned in total")
    expiring = [f"{lot['points']:,} points on {_when(lot['expires_at'])}" for lot in view["expiring_soon"]]
    campaigns = [f"{c['name']} (x{c['multiplier']:g} on {', '.join(c['applies_to'])})"
                 for c in view["active_campaigns"]]
    for label, entries, empty in (("Expiring", expiring, "nothing in the next 30 days"),
                                  ("Campaigns", campaigns, "none active")):
        for i, entry in enumerate(entries or [empty]):
            lines.append(f"{label if i == 0 else '':<11}{entry}")
    return "\n".join(lines)


def _member(args: argparse.Namespace) -> int:
    url = f"{args.url.rstrip('/')}/members/{urllib.parse.quote(args.member_id, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            view = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            print(f"loyalty: no member {args.member_id!r} at {args.url}", file=sys.stderr)
        else:
            print(f"loyalty: {url}: HTTP {exc.code} {exc.reason}", file=sys.stderr)
        return 1
    except OSError as exc:  # URLError (connection refused, unknown host) and time-outs
        print(f"loyalty: cannot reach {args.url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
    except ValueError:
        print(f"loyalty: {url}: the answer is not JSON", file=sys.stderr)
        return 1
    print(format_member(view))
    return 0


# -- rewards ----------------------------------------------------------------------------------------

CODES_PER_MESSAGE = 500  # coupon codes per loyalty.coupon-codes message (the schema allows 1,000)


def format_rewards(view: dict) -> str:
    """`GET /rewards` as a table: the catalogue with live stock."""
    rows = [("CODE", "KIND", "POINTS", "TIER", "STOCK LEFT", "CODES LEFT", "STATE")]
    for r in view["rewards"]:
        stock = "unlimited" if r["unlimited"] else str(r["stock_left"])
        codes = "-" if r["codes_left"] is None else str(r["codes_left"])
        state = "paused" if r["paused"] else "on sale"
        rows.append((r["code"], r["kind"], str(r["points"]), r["tier"] or "any", stock + ("" if r["live"] else "*"),
                     codes, state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    if not all(r["live"] for r in view["rewards"]):
        lines.append("* not held by this worker: the program's initial figure")
    return "\n".join(lines)


def _get_json(url: str) -> dict | None:
    """The JSON answer of a worker's GET `url`; None, with the reason on stderr, when there is none."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"loyalty: {url}: HTTP {exc.code} {exc.reason}", file=sys.stderr)
    except OSError as exc:  # URLError (connection refused, unknown host) and time-outs
        print(f"loyalty: cannot reach {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
    except ValueError:
        print(f"loyalty: {url}: the answer is not JSON", file=sys.stderr)
    return None


def _rewards(args: argparse.Namespace) -> int:
    view = _get_json(f"{args.url.rstrip('/')}/rewards")
    if view is None:
        return 1
    print(format_rewards(view))
    return 0


def read_codes(lines: Iterable[str]) -> list[str]:
    """Coupon codes of a file: one per line, blank lines and `#` comments skipped, first occurrence kept."""
    codes = (line.strip() for line in lines)
    return list(dict.fromkeys(code for code in codes if code and not code.startswith("#")))


def code_messages(reward: str, codes: list[str], import_tag: str,
                  now: Callable[[], str]) -> list[tuple[str, bytes, bytes]]:
    """loyalty.coupon-codes messages of `CODES_PER_MESSAGE` codes, with import ids derived from the file:
    importing the same file again sends the same ids, applied once."""
    messages = []
    for index, start in enumerate(range(0, len(codes), CODES_PER_MESSAGE)):
        import_id = f"{import_tag}-{index}"
        value = {"import_id": import_id, "reward_code": reward, "codes": codes[start:start + CODES_PER_MESSAGE],
                 "occurred_at": now()}
        messages.append(("coupon-codes", f"{reward}:{import_id}".encode(), json.dumps(value).encode()))
    return messages


def _import_codes(args: argparse.Namespace) -> int:
    import hashlib

    from stream_app.core.program import ProgramError, load_program

    try:
        program = load_program(args.settings.rules_path)
    except ProgramError as exc:
        print(f"loyalty: {exc}", file=sys.stderr)
        return 1
    reward = program.rewards.get(args.reward)
    if reward is None or reward.codes != "pool":
        pooled = [r.code for r in program.rewards.catalogue if r.codes == "pool"]
        print(f"loyalty: {args.reward!r} is not a coupon with codes = \"pool\" in the program (those are: "
              f"{', '.join(pooled) or 'none'})", file=sys.stderr)
        return 1
    try:
        with open(args.file, encoding="utf-8") as lines:
            codes = read_codes(lines)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"loyalty: {args.file}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    too_long = next((c for c in codes if len(c) > 64), None)
    if not codes or too_long is not None:
        print(f"loyalty: {args.file}: " + ("no codes" if not codes else "a code is longer than 64 characters"),
              file=sys.stderr)
        return 1
    options = _client_options(args.settings)
    if options is None:
        return 2
    tag = hashlib.sha256("\n".join(codes).encode()).hexdigest()[:16]
    messages = code_messages(args.reward, codes, tag, lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    progress = Progress(len(messages))
    result = _run(produce(messages, args.bootstrap, args.prefix, None, progress, None, options,
                          kinds=("coupon-codes",)))
    if result is None:
        return 1
    progress.finish(result.sent)
    print(f"{len(codes)} codes for {args.reward} in {len(messages)} messages (import {tag})", file=sys.stderr)
    return _report(result, f"{args.bootstrap} ({args.prefix}coupon-codes)")


# -- check-program ----------------------------------------------------------------------------------

def _check_program(args: argparse.Namespace) -> int:
    from stream_app.core.calendar import rfc3339
    from stream_app.core.program import ProgramError
    from stream_app.core.program_versions import load_versions

    try:
        versions = load_versions(args.file)
        program = versions.versions[-1].program
    except ProgramError as exc:
        print(exc, file=sys.stderr)
        return 1
    tiers = ", ".join(f"{t.name} {t.threshold}" for t in program.tiers)
    campaigns = ", ".join(c.name for c in program.campaigns) or "none"
    count = len(program.campaigns)
    print(f"{args.file}: ok ({len(program.tiers)} tiers: {tiers}; "
          f"{count} campaign{'' if count == 1 else 's'}: {campaigns})")
    for version in versions.versions[1:]:  # the summary above is of the newest; each version is checked
        print(f"  version {version.name}: from {rfc3339(version.effective_from)}, sha256 {version.hash[:12]}")
    return 0


# -- parser -----------------------------------------------------------------------------------------

def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _mix(text: str) -> dict[str, float]:
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kafka_options(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("--bootstrap", default=settings.bootstrap_servers,
                        help="Kafka bootstrap servers (default: LOYALTY_BROKER without kafka://)")
    parser.add_argument("--prefix", default=settings.topic_prefix,
                        help="topic name prefix (default: LOYALTY_TOPIC_PREFIX)")


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    """The command line; defaults come from `settings` (default: the LOYALTY_* environment)."""
    settings = load_settings() if settings is None else settings
    parser = argparse.ArgumentParser(prog="loyalty", description=__doc__)
    parser.set_defaults(settings=settings)
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run the Faust worker with the LOYALTY_* settings "
                                 "(log level: LOYALTY_LOG_LEVEL)")
    worker.set_defaults(run=_worker)

    load = commands.add_parser("produce", help="generate a realistic, reproducible mix of input events")
    load.add_argument("--members", type=_positive, required=True, help="distinct member ids")
    load.add_argument("--events", type=_positive, required=True, help="events to send")
    load.add_argument("--rate", type=_rate, help="events per second (default: as fast as possible)")
    load.add_argument("--seed", type=int, default=0, help="same seed, same events (default: 0)")
    load.add_argument("--mix", type=_mix, default=",".join(f"{k}={w:g}" for k, w in DEFAULT_MIX.items()),
                      help="relative weights of event kinds (default: %(default)s)")
    _kafka_options(load, settings)
    load.set_defaults(run=_produce)

    member = commands.add_parser("member", help="show a member's tier, points and expiring lots")
    member.add_argument("member_id", metavar="ID")
    member.add_argument("--url", default=f"http://127.0.0.1:{settings.web_port}",
                        help="worker HTTP address (default: %(default)s, port from LOYALTY_WEB_PORT)")
    member.set_defaults(run=_member)

    replay = commands.add_parser("replay", help="publish a JSON-lines file of input events")
    replay.add_argument("file")
    _kafka_options(replay, settings)
    replay.set_defaults(run=_replay)

    check = commands.add_parser("check-program", help="validate a program TOML file")
    check.add_argument("file")
    check.set_defaults(run=_check_program)

    rewards = commands.add_parser("rewards", help="show the reward catalogue with live stock")
    rewards.add_argument("--url", default=f"http://127.0.0.1:{settings.web_port}",
                         help="worker HTTP address (default: %(default)s, port from LOYALTY_WEB_PORT)")
    rewards.set_defaults(run=_rewards)

    codes = commands.add_parser("import-codes", help="import coupon codes (one per line) into a reward's pool")
    codes.add_argument("reward", metavar="REWARD", help="a [[rewards.catalog]] code with codes = \"pool\"")
    codes.add_argument("file", metavar="FILE")
    _kafka_options(codes, settings)
    codes.set_defaults(run=_import_codes)

    trial = commands.add_parser("simulate", help="run a history through the current and a candidate program "
                                "and compare them (docs/simulation.md)")
    simulate.add_arguments(trial, settings)
    _kafka_options(trial, settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ValueError as exc:  # a LOYALTY_* variable that does not parse
        print(f"loyalty: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
