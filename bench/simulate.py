"""How fast `loyalty simulate` runs a history through two programs, on one core and on all of them.

    .venv/bin/python -m bench.simulate [--events 200000] [--members 20000] [--days 90] [--profile]

Generates a history of the load generator's default mix (`--events` over `--members`, spread over
`--days`, seed 42) into a temporary JSON-lines file, then times the command's phases as
`loyalty simulate FILE --candidate C` runs them, C being the packaged program with shares.points
doubled (so both programs do all their work):

- read: reading the file and validating every line (topics/validation.py), in this process;
- simulate, 1 process: decode + scrub + both programs through the core, end-of-history advance, tallies;
- simulate, N processes: the same split over `--jobs` processes (default: the CPU count).

Events/s are history events (each one applied under both programs) per wall-clock second; for the
single-process phases also per CPU second of this process (`time.process_time`), and for the
N-process phase per CPU second of all its processes, which a machine shared with other work does
not distort as it does wall-clock time. `--profile` adds the functions the core spends its time in.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from stream_app.core.handlers import HANDLERS
from stream_app.core.program import default_program_text, parse_program
from stream_app.history import History, file_records
from stream_app.loadgen import DEFAULT_MIX, generate
from stream_app.simulate import Job, run_jobs

T = TypeVar("T")
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def timed(work: Callable[[], T]) -> tuple[T, float, float]:
    """What `work` returns, its wall-clock and its CPU seconds (this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def read(path: Path) -> History:
    history = History(str(path), int(time.time() * 1000))
    for record in file_records(path):
        history.add(record)
    return history


#: (module file, functions, label): where a simulation spends its time, callees included. Rows under
#: apply_to_member overlap (tier and segment evaluation also run inside the due work). The simulation
#: keeps each member a Member object: no state dict in or out per event, no next due instant.
PARTS = (("simulation.py", ("run_group",), "the whole simulation of the sample (both programs)"),
         ("engine.py", ("apply_to_member",), "engine.apply_to_member (the core, per event)"),
         ("due.py", ("catch_up",), "  due work up to the event (due.catch_up)"),
         ("due.py", ("_due_after",), "  next due instant within the due work (due._due_after)"),
         ("handlers.py", tuple(f.__name__ for f in HANDLERS.values()), "  the event's own rule (handlers.py)"),
         ("tiers.py", ("evaluate_tier",), "  tier evaluation (tiers.evaluate_tier)"),
         ("segments.py", ("evaluate_segment",), "  segment evaluation (segments.evaluate_segment)"),
         ("notify_policy.py", ("settle",), "  notification policy (notify_policy.settle)"),
         ("emitted.py", ("reward", "notify"), "  building reward and notification events (emitted.py)"),
         ("engine.py", ("advance_member",), "engine.advance_member (to the end of the history)"),
         ("simulation.py", ("_count",), "the simulation's own counting (simulation._count)"),
         ("simulate.py", ("<listcomp>",), "decode + scrub of the events (orjson, privacy.scrub)"))


def where_time_goes(stats: pstats.Stats) -> None:
    """Cumulative time of the functions in PARTS, as a share of the whole simulation."""
    def cumulative(module: str, names: tuple[str, ...]) -> float:
        return sum(row[3] for (path, _, function), row in stats.stats.items()
                   if path.endswith("/" + module) and function in names)

    total = cumulative(*PARTS[0][:2])
    print("| part | s | share |")
    print("|---|---:|---:|")
    for module, names, label in PARTS:
        seconds = cumulative(module, names)
        print(f"| {label} | {seconds:.2f} | {seconds / total:.0%} |")
    print("(times include cProfile's own overhead)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--days", type=float, default=90.0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", action="store_true", help="also profile a single-process run of 20,000 events")
    args = parser.parse_args(argv)

    text = default_program_text()
    current = parse_program(text)
    candidate = parse_program(text.replace("[shares]\npoints = 5\n", "[shares]\npoints = 10\n"))
    with tempfile.TemporaryDirectory(prefix="simbench-") as tmp:
        path = Path(tmp) / "history.jsonl"
        with path.open("wb") as out:
            for _, _, value in generate(args.members, args.events, 42, DEFAULT_MIX, START,
                                        args.days * 86_400_000 / args.events):
                out.write(value + b"\n")
        history, read_wall, read_cpu = timed(lambda: read(path))
    job = Job(current, candidate, b"bench-key", history.last_ms, 10)
    one, one_wall, one_cpu = timed(lambda: run_jobs(job, history, 1))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    many, many_wall, _ = timed(lambda: run_jobs(job, history, args.jobs))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    many_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    assert one == many, "the tallies of 1 and N processes differ"
    events = one.events
    load = os.getloadavg()

    def rate(seconds: float) -> str:
        return f"{events / seconds:,.0f}"

    print(f"history: {events:,} events of {one.members:,} members over {args.days:g} days (default mix, seed 42)")
    print("| phase | wall s | events/s (wall) | CPU s | events/s (CPU) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| read + validate (1 process) | {read_wall:.1f} | {rate(read_wall)} | {read_cpu:.1f} | {rate(read_cpu)} |")
    print(f"| simulate, 1 process | {one_wall:.1f} | {rate(one_wall)} | {one_cpu:.1f} | {rate(one_cpu)} |")
    print(f"| simulate, {args.jobs} processes | {many_wall:.1f} | {rate(many_wall)} | {many_cpu:.1f} (all) | "
          f"{rate(many_cpu)} |")
    print(f"| whole command, 1 process | {read_wall + one_wall:.1f} | {rate(read_wall + one_wall)} | "
          f"{read_cpu + one_cpu:.1f} | {rate(read_cpu + one_cpu)} |")
    print(f"| whole command, {args.jobs} processes | {read_wall + many_wall:.1f} | {rate(read_wall + many_wall)} | | |")
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
          f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.profile:
        sample = replace(history, members=dict(list(history.members.items())[
            : max(1, len(history.members) * 20_000 // max(events, 1))]))
        profiler = cProfile.Profile()
        profiler.runcall(run_jobs, job, sample, 1)
        where_time_goes(pstats.Stats(profiler))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
