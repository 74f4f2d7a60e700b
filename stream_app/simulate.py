"""`loyalty simulate`: a history run through the current and a candidate program, side by side.

The shell around the pure stream_app.core.simulation: it reads both programs (a bad one stops
everything with exit 2 and the line at fault, as `loyalty check-program` prints it), reads the
history (stream_app/history.py), validates each record as the worker does and counts the rejected
ones by dead-letter code, groups the valid events by member, simulates the members in `--jobs`
processes and writes the comparison (stream_app/simulate_report.py). Members connected by referrals
exchange messages, so each group of them goes to one process whole; groups are independent, and their
tallies merge exactly. Nothing is written to Kafka and no state is touched.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from stream_app.core.program import Program, ProgramError, default_program_text
from stream_app.core.program_versions import ProgramVersions, parse_versions
from stream_app.loadgen import Progress
from stream_app.settings import Settings

if TYPE_CHECKING:  # the machinery is imported when the command runs: every `loyalty` command builds this parser
    from stream_app.core.simulation import Tally
    from stream_app.history import History, Record

USAGE = 2  # the exit status of bad arguments or a program that cannot be used (as argparse's)
Chunk = list[tuple[str, list[bytes]]]  # members and their valid events (raw JSON, input order)


def add_arguments(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("history", nargs="?", metavar="FILE",
                        help="JSON-lines file of input events, as `loyalty replay` reads it")
    parser.add_argument("--candidate", required=True, metavar="FILE", help="the program to try")
    parser.add_argument("--current", default=settings.rules_path, metavar="FILE",
                        help="the program in force (default: LOYALTY_RULES, else the packaged default)")
    parser.add_argument("--from-kafka", action="store_true", help="read the input topics instead of a file")
    parser.add_argument("--since", type=instant_ms, metavar="ISO",
                        help="with --from-kafka: first record time (ISO 8601)")
    parser.add_argument("--until", type=instant_ms, metavar="ISO",
                        help="with --from-kafka: end of the range and of the simulation (ISO 8601)")
    parser.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes (default: %(default)s, the CPU count)")
    parser.add_argument("--top", type=_count, default=10, metavar="N",
                        help="members whose outcome differs most (default: 10)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    parser.add_argument("--html", type=Path, metavar="FILE", help="write a chart page (self-contained HTML)")
    parser.set_defaults(run=run, pii_key=settings.pii_key)


def instant_ms(text: str) -> int:
    """An ISO 8601 date or date-time as epoch ms; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


# -- programs ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NamedProgram:
    source: str
    versions: ProgramVersions

    @property
    def program(self) -> Program:
        """The newest version: what the report names (tiers, time zone)."""
        return self.versions.versions[-1].program


def read_program(path: str | None) -> NamedProgram:
    """The program at `path` (packaged default when empty); ProgramError says `FILE:LINE: what`."""
    if not path:
        return NamedProgram("packaged default", parse_versions(default_program_text()))
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProgramError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return NamedProgram(path, parse_versions(text, path))


# -- history ----------------------------------------------------------------------------------------

def read_history(args: argparse.Namespace) -> History:
    """Every record of the file or of the Kafka range, drawing a progress line as they are read."""
    from stream_app.history import History, count_lines, file_records, read_kafka

    if args.from_kafka:
        history = History(f"Kafka {args.bootstrap} ({args.prefix}*)", int(time.time() * 1000))
        progress: list[Progress] = []

        def fetched(done: int, total: int) -> None:
            if not progress:
                progress.append(Progress(total))
            progress[0](done)

        records = read_kafka(args.bootstrap, args.prefix, args.since, args.until, fetched)
        if progress:
            progress[0].finish(len(records))
    else:
        path = Path(args.history)
        history = History(str(path), int(time.time() * 1000))
        records = _drawn(file_records(path), Progress(count_lines(path)))
    for record in records:
        history.add(record)
    return history


def _drawn(records: Iterable[Record], progress: Progress) -> Iterator[Record]:
    """`records`, drawing `progress` (of lines) every 1000 of them and in full at the end of the file."""
    for count, record in enumerate(records, 1):
        if count % 1000 == 0:
            progress(count)
        yield record
    progress.finish(progress.total)  # blank lines yield no record: every line has been read


# -- simulation -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Job:
    """What every process simulates a chunk of members with (picklable: sent to each process)."""

    current: ProgramVersions
    candidate: ProgramVersions
    pii_key: bytes
    end_ms: int
    top: int

    def __call__(self, chunk: Chunk) -> Tally:
        import orjson

        from stream_app.core.privacy import scrub
        from stream_app.core.simulation import simulate

        members = ((member_id, [scrub(orjson.loads(value), self.pii_key) for value in values])
                   for member_id, values in chunk)
        return simulate(members, self.current, self.candidate, self.end_ms, self.top)


def chunks(members: dict[str, list[bytes]], referrals: Iterable[tuple[str, str]], size: int) -> Iterator[Chunk]:
    """Members in chunks of about `size` events, cut only between groups connected by `referrals` (a
    group's members exchange messages: they are simulated together); groups in first-seen order."""
    from stream_app.core.simulation import connected

    chunk, events = [], 0
    for group in connected(members, referrals):
        for member_id in group:
            chunk.append((member_id, members[member_id]))
            events += len(members[member_id])
        if events >= size:
            yield chunk
            chunk, events = [], 0
    if chunk:
        yield chunk


def run_jobs(job: Job, history: History, jobs: int, progress: Progress | None = None) -> Tally:
    """The merged tally of every member of `history`, simulated in `jobs` processes (1: in this process)."""
    from stream_app.core.simulation import Tally

    members = history.members
    total = sum(len(values) for values in members.values())
    parts = list(chunks(members, history.referrals, max(500, min(20_000, total // (jobs * 16)))))
    tally = Tally(job.top)

    def merge(results: Iterable[Tally]) -> None:
        for part in results:  # in the order they finish: the merge does not depend on it
            tally.merge(part)
            if progress:
                progress(tally.events)

    if jobs == 1 or len(parts) < 2:
        merge(map(job, parts))
        return tally
    with multiprocessing.Pool(min(jobs, len(parts))) as pool:
        merge(pool.imap_unordered(job, parts))
        pool.close()  # let the processes end on their own (leaving the block would kill them)
        pool.join()
    return tally


# -- the command ------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    if not args.from_kafka and (args.since is not None or args.until is not None):
        print("loyalty: --since and --until select a range of the input topics: use them with --from-kafka",
              file=sys.stderr)
        return USAGE
    if args.from_kafka == bool(args.history):
        print("loyalty: give either a history FILE or --from-kafka", file=sys.stderr)
        return USAGE
    unwritable = [str(path) for path in (args.json, args.html) if path and not path.resolve().parent.is_dir()]
    if unwritable:  # found before a long run, not after it
        print(f"loyalty: no directory for {', '.join(unwritable)}", file=sys.stderr)
        return USAGE
    try:
        current, candidate = read_program(args.current), read_program(args.candidate)
    except ProgramError as exc:
        print(exc, file=sys.stderr)
        print("loyalty: nothing simulated", file=sys.stderr)
        return USAGE
    try:
        return _simulate(args, current, candidate)
    except KeyboardInterrupt:
        print("\nloyalty: interrupted", file=sys.stderr)
        return 1


def _simulate(args: argparse.Namespace, current: NamedProgram, candidate: NamedProgram) -> int:
    import orjson
    from aiokafka.errors import KafkaError

    from stream_app import simulate_report
    from stream_app.history import KafkaHistoryError

    try:
        history = read_history(args)
    except OSError as exc:
        print(f"loyalty: {args.history or args.bootstrap}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except (KafkaError, KafkaHistoryError) as exc:
        print(f"loyalty: cannot read the history from Kafka: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    end_ms = max((x for x in (args.until, history.last_ms) if x is not None), default=None)
    job = Job(current.versions, candidate.versions, args.pii_key, end_ms or 0, args.top)
    started = time.monotonic()
    progress = Progress(history.events)
    tally = run_jobs(job, history, args.jobs, progress)
    progress.finish(tally.events)
    seconds = time.monotonic() - started
    rate = tally.events / seconds if seconds else 0.0
    print(f"simulated {tally.events:,} events of {tally.members:,} members in {seconds:.1f}s "
          f"({rate:,.0f} events/s, {args.jobs} process{'es' if args.jobs > 1 else ''})", file=sys.stderr)
    document = simulate_report.document(tally, history, current, candidate, end_ms)
    print(simulate_report.table(document))
    if args.json:
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    if args.html:
        args.html.write_text(simulate_report.html(document), "utf-8")
    return 0
