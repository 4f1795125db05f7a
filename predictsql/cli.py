"""The `predictsql` command: run PREDICT scripts on a DuckDB file, explain them, manage models, run the demo.

    predictsql query --db shop.duckdb "SELECT ... FROM PREDICT(...) ..." [--format csv] [--out scores.csv]
    predictsql explain --db shop.duckdb -f score.sql
    predictsql models register churn churn.onnx --db shop.duckdb --alias prod     (or --registry URI: MLflow)
    predictsql models list|describe|remove ...
    predictsql demo

Errors are one line on stderr (no traceback) and exit 1; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from predictsql.engine.errors import PredictSQLError
from predictsql.progress import progress

if TYPE_CHECKING:  # imported where a command needs them, so that --help starts at once
    import duckdb
    import pyarrow as pa

FORMATS = ("table", "csv", "json", "parquet")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are not our output
    try:
        _check_output(args)
        return args.run(args)
    except BrokenPipeError:  # the reader (head, less) closed: stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush of stdout fails no more
        return 128 + signal.SIGPIPE
    except (PredictSQLError, OSError) as e:
        print(f"predictsql: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("predictsql: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # duckdb's own errors: one line, no traceback
        print(f"predictsql: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predictsql", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    query = commands.add_parser("query", help="run a SQL script and print the rows of its last query")
    _script_arguments(query)
    _output_arguments(query)
    query.add_argument("--progress-after", type=float, default=1.0, metavar="SECONDS", help="show progress on stderr once a query runs this long (default: 1)")
    query.set_defaults(run=_query)

    explain = commands.add_parser("explain", help="show the DuckDB SQL and the PREDICT plans a script runs, reading no rows")
    _script_arguments(explain)
    explain.set_defaults(run=_explain)

    models = commands.add_parser("models", help="manage models in a database's catalog (--db) or an MLflow registry (--registry)")
    actions = models.add_subparsers(required=True, metavar="ACTION")
    register = actions.add_parser("register", help="store a model file (or URI) as the next version of NAME")
    register.add_argument("name")
    register.add_argument("model", help="an ONNX file, or a models:/, runs:/ or catalog:/ URI")
    register.add_argument("--alias", help="point NAME@ALIAS at the new version")
    register.add_argument("--columns", help="comma-separated DATA column names of the model's one [N,k] input, recorded in the model (for ONNX made elsewhere)")
    _store_arguments(register)
    register.set_defaults(run=_register)
    listing = actions.add_parser("list", help="every version of every model that has not been removed")
    _store_arguments(listing)
    _output_arguments(listing)
    listing.set_defaults(run=_list)
    describe = actions.add_parser("describe", help="inputs, outputs and a WITH clause to paste")
    describe.add_argument("ref", help="a catalog name (churn, churn/2, churn@prod), a file, or a models:/, runs:/ or catalog:/ URI")
    describe.add_argument("--db", help="the DuckDB file whose catalog holds the model")
    describe.add_argument("--registry", help="MLflow registry URI (default: MLFLOW_TRACKING_URI)")
    _output_arguments(describe)
    describe.set_defaults(run=_describe)
    remove = actions.add_parser("remove", help="remove one version (--version) or every version of NAME")
    remove.add_argument("name")
    remove.add_argument("--version", type=int)
    _store_arguments(remove)
    remove.set_defaults(run=_remove)

    demo = commands.add_parser("demo", help="build a demo database and run a PREDICT on it")
    demo.add_argument("--db", default="demo/clinic.duckdb")
    demo.set_defaults(run=_demo)
    return parser


def _script_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--db", help="DuckDB database file (default: an in-memory database)")
    command.add_argument("--registry", help="MLflow registry URI for models:/ (default: MLFLOW_TRACKING_URI)")
    command.add_argument("--dialect", choices=("duckdb", "tsql"), help="read every statement in this dialect (default: DuckDB SQL, T-SQL where only T-SQL reads a statement)")
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("sql", nargs="?", help="SQL text")
    source.add_argument("-f", "--file", type=Path, help="read the SQL script from this file")


def _output_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--format", choices=FORMATS, default="table", help="output format (default: an aligned table)")
    command.add_argument("--out", type=Path, help="write to this file instead of stdout (required for parquet)")


def _store_arguments(command: argparse.ArgumentParser) -> None:
    store = command.add_mutually_exclusive_group(required=True)
    store.add_argument("--db", help="the DuckDB file whose model catalog to use")
    store.add_argument("--registry", help="the MLflow registry URI to use")


def _connect(args: argparse.Namespace, create: bool = False):
    """The database --db names (`query` and `models register` create it, as `duckdb FILE` does; other commands read an existing one)."""
    import predictsql

    if args.db is not None and not create and not Path(args.db).is_file():
        raise PredictSQLError(f"database file '{args.db}' does not exist")
    return predictsql.connect(args.db or ":memory:", registry_uri=getattr(args, "registry", None), dialect=getattr(args, "dialect", None))


def _check_output(args: argparse.Namespace) -> None:
    """--format and --out that cannot go together, refused before anything runs (a script may write)."""
    fmt, out = getattr(args, "format", None), getattr(args, "out", None)
    if fmt == "parquet" and out is None:
        raise PredictSQLError("--format parquet writes a file: add --out FILE")
    if fmt == "table" and out is not None:
        raise PredictSQLError("--format table prints to the terminal; use --format csv, json or parquet with --out")


def _query(args: argparse.Namespace) -> int:
    text = args.file.read_text() if args.file else args.sql
    with _connect(args, create=True) as con, _progress(con.duckdb, args.progress_after):
        result = con.sql(text)
    if result is not None:
        _write(result.arrow(), args.format, args.out)
    return 0


def _explain(args: argparse.Namespace) -> int:
    with _connect(args) as con:
        print(con.explain(args.file.read_text() if args.file else args.sql))
    return 0


def _register(args: argparse.Namespace) -> int:
    import predictsql

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    if columns is not None and not all(columns):
        raise PredictSQLError(f"--columns {args.columns!r} has an empty name: give the DATA column names, comma-separated")
    if args.db:
        created = not Path(args.db).exists()
        try:
            with _connect(args, create=True) as con:
                model = predictsql.export(args.model, columns=columns) if columns else args.model
                uri = f"catalog:/{args.name}/{con.models.register(args.name, model, alias=args.alias)}"
        except BaseException:
            if created:  # a failed register leaves no empty database behind
                Path(args.db).unlink(missing_ok=True)
                Path(f"{args.db}.wal").unlink(missing_ok=True)
            raise
    else:
        uri = predictsql.log_model(args.model, args.name, alias=args.alias, registry_uri=args.registry, columns=columns)
    print(f"registered {uri}" + (f" (alias {args.alias})" if args.alias else ""))
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.db:
        with _connect(args) as con:
            table = con.models.list().arrow()
        summary = (
            "name, version, aliases, size, created, left(sha256, 12) AS sha256, "
            "list_transform(inputs, lambda t: t.name || t.shape) AS inputs, list_transform(outputs, lambda t: t.name || t.shape) AS outputs"
        )
        import duckdb

        _write(duckdb.connect().from_arrow(table).select(summary).to_arrow_table(), args.format, args.out)
        return 0
    from predictsql.engine.mlflow_registry import MlflowRegistry

    _write(MlflowRegistry(args.registry).list(), args.format, args.out)
    return 0


def _describe(args: argparse.Namespace) -> int:
    from predictsql.engine.sources import uri_scheme
    from predictsql.sql.statements import string_literal

    path_like = args.ref.endswith(".onnx") or args.ref.startswith(".") or Path(args.ref).is_absolute()  # not name or name/version
    if path_like and not uri_scheme(args.ref) and not Path(args.ref).exists():  # a directory: a saved Spark pipeline, which resolve() explains
        raise PredictSQLError(f"model file '{args.ref}' not found: give the path of an .onnx file, a models:/ URI or a catalog name")
    ref = args.ref if uri_scheme(args.ref) or Path(args.ref).is_file() else f"catalog:/{args.ref}"
    if uri_scheme(ref) == "catalog" and args.db is None:
        raise PredictSQLError(f"'{args.ref}' is a catalog model: add --db with the database file that holds it")
    with _connect(args) as con:
        result = con.sql(f"DESCRIBE MODEL {string_literal(ref)}")
    _write(result.arrow(), args.format, args.out)
    return 0


def _remove(args: argparse.Namespace) -> int:
    if args.db:
        with _connect(args) as con:
            removed, where = con.models.remove(args.name, args.version), f"the catalog of {args.db}"
    else:
        from predictsql.engine.mlflow_registry import MlflowRegistry

        registry = MlflowRegistry(args.registry)
        removed, where = registry.remove(args.name, args.version), f"MLflow registry {registry.where}"
    print(f"removed {args.name} version{'s' if len(removed) != 1 else ''} {', '.join(map(str, removed))} from {where}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from predictsql.demo import main as demo

    demo(args.db)
    return 0


def _write(table: pa.Table, fmt: str, out: Path | None) -> None:
    """Print or save rows: an aligned table (DuckDB's box renderer), CSV, a JSON array, or Parquet."""
    import duckdb
    import pyarrow as pa

    from predictsql.sql.statements import string_literal

    relation = duckdb.connect().from_arrow(table)
    if fmt == "table":
        relation.show(max_rows=max(table.num_rows, 1), max_width=100_000, max_col_width=100_000)
        return
    if out is None:  # DuckDB writes files; stdout gets a copy of one
        with tempfile.TemporaryDirectory() as folder:
            _write(table, fmt, Path(folder) / f"rows.{fmt}")
            with open(Path(folder) / f"rows.{fmt}", "rb") as rows:
                shutil.copyfileobj(rows, sys.stdout.buffer)
        return
    if fmt == "csv":
        relation.write_csv(str(out), header=True)
    elif fmt == "parquet":
        relation.write_parquet(str(out))
    else:  # JSON has no NaN or Infinity: a non-finite number is null there
        columns = [pa.chunked_array([_finite(chunk) for chunk in c.chunks], c.type) for c in table.columns]
        finite = duckdb.connect().from_arrow(pa.Table.from_arrays(columns, names=table.column_names))
        finite.query("rows", f"COPY rows TO {string_literal(str(out))} (FORMAT json, ARRAY true)")


def _finite(array: pa.Array) -> pa.Array:
    """`array` with each NaN and ±Infinity, at any depth of lists and structs, made null (JSON's only spelling of them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_floating(kind):
        return pc.if_else(pc.is_finite(array), array, None)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        start, end = array.offsets[0].as_py(), array.offsets[-1].as_py()  # a slice's offsets start past its values' 0
        offsets = pc.subtract(array.offsets, start)
        if pa.types.is_map(kind):
            return pa.MapArray.from_arrays(offsets, array.keys.slice(start, end - start), _finite(array.items.slice(start, end - start)), type=kind, mask=array.is_null())
        return type(array).from_arrays(offsets, _finite(array.values.slice(start, end - start)), type=kind, mask=array.is_null())
    if pa.types.is_fixed_size_list(kind):
        values = array.values.slice(array.offset * kind.list_size, len(array) * kind.list_size)
        return pa.FixedSizeListArray.from_arrays(_finite(values), type=kind, mask=array.is_null())
    if pa.types.is_struct(kind):
        return pa.StructArray.from_arrays([_finite(array.field(i)) for i in range(kind.num_fields)], fields=list(kind), mask=array.is_null())
    return array


def _progress(con: duckdb.DuckDBPyConnection, after_s: float) -> AbstractContextManager[None]:
    """Once a query runs `after_s` seconds, show its elapsed time (and DuckDB's percentage when known) on stderr."""
    con.execute("SET enable_progress_bar = true").fetchall()
    con.execute("SET enable_progress_bar_print = false").fetchall()

    def status(elapsed: float) -> str:
        percent = con.query_progress()
        return f"predictsql: running {elapsed:.0f} s" + (f", {percent:.0f}%" if percent >= 0 else "")

    return progress(status, after_s)


if __name__ == "__main__":
    sys.exit(main())
