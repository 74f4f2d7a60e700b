"""The `loyalty` command line."""
from __future__ import annotations

import argparse
import sys


def _worker(args: argparse.Namespace) -> int:
    from stream_app.app import app

    sys.argv = ["loyalty", "worker", "-l", args.loglevel]
    app.main()
    return 0


def _check_program(args: argparse.Namespace) -> int:
    from stream_app.program import ProgramError, load_program

    try:
        load_program(args.file)
    except (ProgramError, OSError) as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loyalty", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run the Faust worker with the LOYALTY_* settings")
    worker.add_argument("-l", "--loglevel", default="info")
    worker.set_defaults(run=_worker)
    check = commands.add_parser("check-program", help="validate a program TOML file")
    check.add_argument("file")
    check.set_defaults(run=_check_program)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
