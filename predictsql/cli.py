"""The `predictsql` command: run PREDICT scripts against a DuckDB file, explain them, run the demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from predictsql.engine.errors import PredictSQLError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (PredictSQLError, OSError) as e:
        print(f"predictsql: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # duckdb's own errors: one line, no traceback
        print(f"predictsql: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predictsql", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, run, help_ in (("query", _query, "run a SQL script and print its last result"), ("explain", _explain, "show the SQL and PREDICT plans a script runs")):
        command = commands.add_parser(name, help=help_)
        command.add_argument("--db", required=True, help="DuckDB database file")
        source = command.add_mutually_exclusive_group(required=True)
        source.add_argument("sql", nargs="?", help="SQL text")
        source.add_argument("-f", "--file", type=Path, help="read the SQL script from this file")
        command.set_defaults(run=run)
    demo = commands.add_parser("demo", help="build a demo database and run a PREDICT on it")
    demo.add_argument("--db", default="demo/clinic.duckdb")
    demo.set_defaults(run=_demo)
    return parser


def _connect(args: argparse.Namespace):
    import predictsql

    if not Path(args.db).is_file():
        raise PredictSQLError(f"database file '{args.db}' does not exist")
    return predictsql.connect(args.db)


def _text(args: argparse.Namespace) -> str:
    return args.file.read_text() if args.file else args.sql


def _query(args: argparse.Namespace) -> int:
    with _connect(args) as con:
        result = con.sql(_text(args))
        if result is not None:
            print(result.df().to_string(index=False))
    return 0


def _explain(args: argparse.Namespace) -> int:
    with _connect(args) as con:
        print(con.explain(_text(args)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from predictsql.demo import main as demo

    demo(args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
