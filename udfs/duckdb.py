"""predictsql on DuckDB: a connection that runs PREDICT scripts, in DuckDB SQL or T-SQL, next to plain DuckDB SQL.

A script is split into statements (sql/reading.py decides how each is read); DECLARE'd variables
live on the connection like a T-SQL session. Statements without predictsql's syntax run exactly as
written. CREATE VIEW over PREDICT is stored in the database file (table predictsql.views) and
expanded when a later query reads the view.
A failing statement returns no rows, its writes roll back, and the connection stays usable.
MODEL may name an MLflow model (models:/, runs:/) or one in the file's own catalog (catalog:/,
managed through `con.models`); DESCRIBE MODEL shows what a model takes and gives.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from sqlglot import exp

from predictsql.engine import sessions
from predictsql.engine.errors import BindError, PredictSQLError, named
from predictsql.engine.mlflow_registry import MlflowRegistry
from predictsql.engine.scoring import DEFAULT_BATCH_SIZE
from predictsql.engine.sources import ModelSource, Resolver
from predictsql.engine.validate import DEFAULT_MAX_MODEL_BYTES
from predictsql.sql.dialect import parse, pretty, scores, to_sql
from predictsql.sql.reading import read
from predictsql.sql.rewrite import Context, apply, expand_views, map_default_schema
from predictsql.sql.statements import CREATE_VIEW, DESCRIBE_MODEL, DROP_VIEW, VARIABLES, Variables, identifier, kind, reads_predict, view
from predictsql.udfs import script
from predictsql.udfs.duckdb_catalog import ModelCatalog
from predictsql.udfs.duckdb_engine import DIALECT, DuckDBEngine, FunctionBody, abort_transaction, interrupts, own_schema
from predictsql.udfs.duckdb_relations import Relations
from predictsql.udfs.plan_cache import PlanCache
from predictsql.udfs.planner import Bound, Planner, Settings
from predictsql.udfs.result import Result
from predictsql.udfs.statements import run_script, values_query

VIEWS_TABLE = "predictsql.views"
DEFAULT_WORKERS = os.cpu_count() or 1
SMALL_DATA_ROWS = 16_384  # AUTO scores DATA of at most this many rows with a kept scoring function (benchmarks/README.md, run O)
AS_WRITTEN = "duckdb, as written"
S = TypeVar("S", bound=exp.Expr)
_UDF_ERROR = re.compile(r"Python exception occurred while executing the UDF: (\w+): (.+)", re.DOTALL)  # a registered function's
_ACTIONS = {  # statements that only act: DuckDB answers them with one Count or Success row
    getattr(duckdb.StatementType, name)
    for name in ("INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRANSACTION", "COPY", "SET", "VARIABLE_SET", "LOAD", "ATTACH", "DETACH")
    + ("EXPORT", "VACUUM", "ANALYZE", "CREATE_FUNC", "COPY_DATABASE", "MERGE_INTO")
}


@dataclass(frozen=True)
class Explanation:
    """What a script will run: per statement how it was read, the DuckDB SQL, and the plan of each PREDICT."""

    statements: tuple[tuple[str, str, tuple[Bound, ...]], ...]  # (reading, sql, bound PREDICTs)

    @property
    def sql(self) -> list[str]:
        return [sql for _, sql, _ in self.statements]

    def __str__(self) -> str:
        """Each statement's SQL pretty-printed (one clause or select item a line; SQL run as written is kept as written), then its plans."""
        lines = []
        for reading, sql, bound in self.statements:
            lines += [f"-- read as {reading}", sql if reading == AS_WRITTEN else pretty(sql, DIALECT)]
            for b in bound:
                lines += [f"  {line}" for line in b.describe()]
        return "\n".join(lines)


class Connection:
    """A DuckDB connection that understands PREDICT; `con.duckdb` is the plain DuckDB connection.

    `registry_uri` names the MLflow registry for models:/ URIs (default: MLFLOW_TRACKING_URI);
    `dialect` is how scripts are read: None (DuckDB SQL, T-SQL where only T-SQL reads a statement),
    "duckdb" or "tsql"; PLAN = AUTO scores DATA of at most `small_data_rows` rows with a scoring function kept
    registered with the statement's plan (0: plan small DATA as any other); `compiled_trees` = False scores tree
    ensembles in onnxruntime rather than by compiled code (engine/forest.py).
    """

    def __init__(
        self,
        database: str = ":memory:",
        *,
        read_only: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = DEFAULT_WORKERS,
        intra_op_threads: int = 1,
        max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
        compiled_trees: bool = True,
        registry_uri: str | None = None,
        dialect: str | None = None,
        small_data_rows: int = SMALL_DATA_ROWS,
        **config: Any,
    ) -> None:
        self.registry = MlflowRegistry(registry_uri)
        self.dialect = dialect
        settings = Settings(batch_size, workers, sessions.SessionOptions(intra_op_threads, max_model_bytes, compiled_trees), {}, small_data_rows=small_data_rows)
        self._open(duckdb.connect(str(database), read_only=read_only, config=config), settings, Variables())

    def _open(self, con: duckdb.DuckDBPyConnection, settings: Settings, variables: Variables) -> None:
        """Attach to a DuckDB connection: its catalog, the settings that read it, the variables, a lock for its threads."""
        self.duckdb = con
        self.variables = variables
        self.models = ModelCatalog(con, self.resolve, settings.session_options)
        self._plans = PlanCache()  # its own: one per thread
        self.settings = replace(settings, lookups={**self.registry.lookups, "catalog": self.models.lookup}, plans=self._plans)
        self._held: dict[str, FunctionBody] = {}  # scoring functions kept registered for kept plans (DuckDBEngine.keep)
        self._relations = Relations(con)  # kept plans' statements, bound once
        self._views: dict[str, exp.Expr] = {}
        self._lock = threading.RLock()

    def cursor(self) -> Connection:
        """Another predictsql connection on the same database (DuckDB's cursor), with this one's settings and a copy of
        its variables: one per thread, as with DuckDB. A connection used from several threads at once serialises them."""
        other = copy.copy(self)
        other._open(self.duckdb.cursor(), self.settings, self.variables.merged({}))
        return other

    def sql(self, text: str, params: Mapping[str, object] | None = None) -> Result | None:
        """Run a script; return the rows of the last statement that yields rows, else None."""
        with self._lock:
            try:
                self._views = self._stored_views()
                statements = read(text, DIALECT, self.dialect, self._views.keys())
                return run_script(self, statements, self.variables.merged(script.params(params)), self.variables)
            except PredictSQLError as e:  # raised before DuckDB ran the statement, or raised again after it failed
                _raise_refused_transaction(e)
                abort_transaction(self.duckdb, e)
                raise

    def explain(self, text: str, params: Mapping[str, object] | None = None) -> Explanation:
        """How each statement is read, the DuckDB SQL it runs and the plan of each PREDICT; scores no row of those (it may
        count DATA's rows, up to small_data_rows + 1, to pick the plan), but DECLARE, SET and SELECT @v run, as their values
        are what the statements after them read."""
        with self._lock:
            try:
                return self._explain(text, params)
            except PredictSQLError as e:
                _raise_refused_transaction(e)
                raise

    def _explain(self, text: str, params: Mapping[str, object] | None) -> Explanation:
        variables = self.variables.merged(script.params(params))
        self._views = self._stored_views()
        statements: list[tuple[str, str, tuple[Bound, ...]]] = []
        for statement in read(text, DIALECT, self.dialect, self._views.keys()):
            if statement.tree is None:
                statements.append((AS_WRITTEN, statement.text, ()))
                continue
            tree = self.prepare(statement.tree) if statement.names_default_schema else statement.tree
            if kind(tree) in VARIABLES:
                script.declare(tree, variables, values_query(self, variables))
                continue
            if kind(tree) == DESCRIBE_MODEL:  # predictsql's own statement: no DuckDB SQL, no PREDICT to plan
                statements.append((statement.reading, to_sql(tree, DIALECT), ()))
                continue
            engine = self.engine()
            planner = Planner(engine, variables, self.settings)
            try:
                planned = planner.plan(self._expand(tree))
            finally:
                engine.close()
            statements.append((statement.reading, planned.sql, tuple(planned.bound)))
        return Explanation(tuple(statements))

    def resolve(self, model: object, label: str) -> ModelSource:
        """The model a MODEL value names (bytes, a path or a URI), for one use."""
        return Resolver(self.settings.lookups)(model, label)

    def close(self) -> None:
        """Remove the functions kept plans hold (DuckDB keeps them registered on the database, which other connections
        to it share), then close."""
        self._plans.clear()
        self._relations.clear()
        self.duckdb.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the statement loop's Runner (udfs/statements.py) ---

    def engine(self) -> DuckDBEngine:
        return DuckDBEngine(self.duckdb, self.settings, self._held)

    def execute(self, sql: str) -> Result | None:
        """Run the host's own SQL; a registered function's failure, which DuckDB reports as its own error with the
        predictsql error's class and message in its text, is raised as that error."""
        try:
            return self._execute(sql)
        except duckdb.Error as e:
            error = _registered_error(e)
            if error is None:
                raise
            raise error from e

    def _execute(self, sql: str) -> Result | None:
        """Run one statement; its rows, fully computed, when it yields rows (queries, PIVOT, DESCRIBE, SHOW, EXPLAIN,
        CALL, RETURNING, ...), None when it only acts (DuckDB's one-row Count or Success)."""
        return self._rows(self.duckdb.sql(sql), sql)

    def _rows(self, relation: duckdb.DuckDBPyRelation, sql: str) -> Result | None:
        """A statement's relation read: its rows, or None when the statement only acts."""
        if relation.columns in (["Count"], ["Success"]) and duckdb.extract_statements(sql)[-1].type in _ACTIONS:
            return None
        return Result(relation.to_arrow_table(), [str(t) for t in relation.types])

    def rows(self, table: pa.Table) -> Result:
        return Result(table)

    def prepare(self, tree: exp.Expr) -> exp.Expr:
        return apply((map_default_schema,), tree, Context(schema_exists=self._schema_exists))

    def _expand(self, tree: S) -> S:
        """A copy with the stored PREDICT views it reads expanded; the tree itself where no view is stored (the planner copies
        before it rewrites)."""
        return apply((expand_views,), tree, Context(views=self._views)) if self._views else tree

    def run(self, tree: exp.Expr, planner: Planner) -> Result | None:
        """Plan a statement, start its streams (unless it only plans: EXPLAIN, DESCRIBE), run it; a failure inside DuckDB
        is raised again as the error that caused it. CREATE VIEW over PREDICT and DROP VIEW of one keep the view in the file."""
        if kind(tree) == CREATE_VIEW:
            return self._create_view(tree, planner)
        if kind(tree) == DROP_VIEW:
            rest = self._drop_views(tree)
            if rest is None:
                return None
            tree = rest
        engine = _engine(planner)
        with interrupts() as interrupted:
            try:
                planned = planner.plan(self._expand(tree))
                engine.start(planned, scores=scores(tree))
                result = self._rows(self._relations.get(planned.sql), planned.sql) if planner.kept else self._execute(planned.sql)
                planner.scored(engine.scored_rows())
                return result
            except Exception as e:  # DuckDB reports a Ctrl-C as RuntimeError or, inside a function, as its own error
                if interrupted():
                    raise KeyboardInterrupt from e
                error = engine.error() or planner.error(str(e)) or _registered_error(e) if isinstance(e, duckdb.Error) else None
                if error is not None:
                    raise error from e
                raise
            finally:
                engine.close()

    def query(self, query: exp.Query, planner: Planner) -> list[tuple]:
        result = self.run(query, planner)
        return result.fetchall() if result is not None else []

    def _drop_views(self, statement: exp.Expr) -> exp.Expr | None:
        """A DROP VIEW's PREDICT views removed from the file; the statement for DuckDB's own views left, if any."""
        dropped = [name for name in view(statement).dropped if name in self._views]
        if not dropped:
            return statement
        self.duckdb.execute(f"DELETE FROM {own_schema(self.duckdb)}.views WHERE list_contains(?, name)", [dropped]).fetchall()
        self._refresh_views()
        rest = statement.copy()
        for table in [t for t in rest.args.get("tables") or [] if t.name.lower() in dropped]:
            table.pop()
        return rest if rest.args.get("tables") else None

    def _schema_exists(self, name: str) -> bool:
        return bool(self.duckdb.execute("SELECT 1 FROM duckdb_schemas() WHERE lower(schema_name) = lower(?) AND database_name = current_database()", [name]).fetchall())

    def _create_view(self, statement: exp.Expr, planner: Planner) -> Result | None:
        """A view whose query reads PREDICT (itself or through another PREDICT view) is checked to bind, as T-SQL
        does at CREATE VIEW, and its definition stored in the file; any other view is DuckDB's own."""
        created = view(statement)
        name, query = created.name, created.query
        if name in self._views and created.exists:
            return None
        if name in self._views and not created.replace:
            raise BindError(f"view {name} already exists; use CREATE OR REPLACE VIEW")
        if query is None or not reads_predict(expanded := self._expand(query)):
            if name in self._views:
                self.duckdb.execute(f"DELETE FROM {own_schema(self.duckdb)}.views WHERE name = ?", [name]).fetchall()
                self._refresh_views()
            return self.execute(to_sql(statement, DIALECT))
        if created.reads_variables:
            raise BindError(f"view {name} references @variables, which a view cannot keep: write MODEL = (SELECT model FROM ... WHERE ...) instead")
        if created.placed:
            raise BindError(f"view {name} over PREDICT is stored in the database file, in its default schema: write CREATE VIEW {name} (not TEMP, no schema)")
        existing = self.duckdb.execute(
            "SELECT table_type FROM information_schema.tables WHERE lower(table_name) = ? AND table_schema = current_schema() AND table_catalog = current_database()", [name]
        ).fetchall()
        if existing and (existing[0][0] != "VIEW" or not created.replace):  # as DuckDB refuses a view over a table, or a second view
            raise BindError(f"{'a table' if existing[0][0] != 'VIEW' else 'a view'} named {name} already exists" + ("; use CREATE OR REPLACE VIEW" if existing[0][0] == "VIEW" else ""))
        try:
            planner.plan(expanded)
        finally:
            _engine(planner).close()
        if created.replace:
            self.duckdb.sql(f"DROP VIEW IF EXISTS {identifier(name, DIALECT)}")
        schema = own_schema(self.duckdb)
        self.duckdb.sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self.duckdb.sql(f"CREATE TABLE IF NOT EXISTS {schema}.views (name VARCHAR PRIMARY KEY, definition VARCHAR NOT NULL, dialect VARCHAR DEFAULT 'tsql')")
        self.duckdb.sql(f"ALTER TABLE {schema}.views ADD COLUMN IF NOT EXISTS dialect VARCHAR DEFAULT 'tsql'")
        self.duckdb.execute(f"INSERT OR REPLACE INTO {schema}.views (name, definition, dialect) VALUES (?, ?, ?)", [name, to_sql(query, DIALECT), DIALECT]).fetchall()
        self._refresh_views()
        return None

    def _refresh_views(self) -> None:
        """Re-read the stored views after a statement changed them: the next statement may read one."""
        self._views = self._stored_views()

    def _stored_views(self) -> dict[str, exp.Expr]:
        """The stored PREDICT views by name (files written before views kept their dialect hold T-SQL). Asked of DuckDB's
        binder first: a file without the table says so there (0.1 ms, where a catalog query took 0.34), and a bind error
        leaves the user's transaction open, where a failed run would abort it. An aborted transaction answers nothing but
        ROLLBACK: the views read last are kept, and DuckDB refuses the statement itself. The bare name saves asking for the
        current database (0.1 ms) on every statement; statements that write views qualify it."""
        try:
            try:
                rows = self._view_rows(VIEWS_TABLE)
            except duckdb.BinderException:  # also a database named predictsql: the bare name is ambiguous
                rows = self._view_rows(f"{own_schema(self.duckdb)}.views")
        except duckdb.CatalogException:
            return {}
        except duckdb.TransactionException:
            return self._views
        return {name: _view(definition, reading) for name, definition, reading in rows}

    def _view_rows(self, table: str) -> list[tuple[str, str, str]]:
        """Name, definition and dialect of each view stored in `table`."""
        try:
            return self.duckdb.sql(f"SELECT name, definition, coalesce(dialect, 'tsql') FROM {table}").fetchall()
        except duckdb.BinderException:  # a file written before views kept their dialect
            return self.duckdb.sql(f"SELECT name, definition, 'tsql' FROM {table}").fetchall()


def _registered_error(error: duckdb.Error) -> PredictSQLError | None:
    """The predictsql error a registered function raised, which DuckDB reports as its own with the class and message."""
    found = _UDF_ERROR.search(str(error))
    return named(found[1], found[2]) if found else None


@functools.lru_cache(maxsize=256)
def _view(definition: str, dialect: str) -> exp.Expr:
    """A stored view's query, parsed once: every statement reads the stored views, and expanding one copies its tree."""
    return parse(definition, dialect)[0]


def _raise_refused_transaction(error: PredictSQLError) -> None:
    """DuckDB's own TransactionException where the transaction refused the query of MODEL or DATA (after a failed
    statement it refuses all but ROLLBACK): that is no error of PREDICT's, so the user sees what any statement gets."""
    if isinstance(error.__cause__, duckdb.TransactionException):
        raise error.__cause__ from None


def _engine(planner: Planner) -> DuckDBEngine:
    """The DuckDB engine a planner of this connection plans against (its functions and streams are removed after the statement)."""
    engine = planner.engine
    if not isinstance(engine, DuckDBEngine):
        raise TypeError(f"a DuckDB statement was planned against {type(engine).__name__}")
    return engine


def connect(database: str = ":memory:", **kwargs: Any) -> Connection:
    """Open (or create) a DuckDB database with PREDICT support; extra kwargs go to DuckDB's config."""
    return Connection(database, **kwargs)
