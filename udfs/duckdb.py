"""predictsql on DuckDB: a connection that runs T-SQL-style PREDICT scripts next to plain DuckDB SQL.

A script is split into statements; DECLARE'd variables live on the connection like a T-SQL
session. Statements without PREDICT run as DuckDB SQL. CREATE VIEW over PREDICT is stored in the
database file (table predictsql.views) and expanded when a later query reads the view.
A failing statement returns no rows, its writes roll back, and the connection stays usable.
MODEL may name an MLflow model (models:/, runs:/) or one in the file's own catalog (catalog:/,
managed through `con.models`); DESCRIBE MODEL shows what a model takes and gives.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

import duckdb
import pyarrow as pa
from sqlglot import exp

from predictsql.engine import sessions
from predictsql.engine.errors import BindError, from_text
from predictsql.engine.mlflow_registry import MlflowRegistry
from predictsql.engine.scoring import DEFAULT_BATCH_SIZE
from predictsql.engine.sources import ModelSource, Resolver
from predictsql.engine.validate import DEFAULT_MAX_MODEL_BYTES
from predictsql.sql.dialect import DescribeModel, PredictTable, parse, to_sql
from predictsql.sql.rewrite import expand_views, map_default_schema
from predictsql.udfs import script
from predictsql.udfs.duckdb_catalog import ModelCatalog
from predictsql.udfs.duckdb_plan import BoundPredict, Planner, Run, Settings

VIEWS_TABLE = "predictsql.views"
DEFAULT_WORKERS = os.cpu_count() or 1
_NEEDS_PARSER = re.compile(r"predict|declare|@|describe\s+model", re.IGNORECASE)


class Result:
    """The rows of a statement, fully computed (so a failure can never leave partial rows)."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    @property
    def columns(self) -> list[str]:
        return self._table.column_names

    def arrow(self) -> pa.Table:
        return self._table

    def df(self) -> Any:
        return self._table.to_pandas()

    def fetchall(self) -> list[tuple]:
        return list(zip(*(c.to_pylist() for c in self._table.columns)))

    def fetchone(self) -> tuple | None:
        rows = self._table.slice(0, 1)
        return next(iter(zip(*(c.to_pylist() for c in rows.columns))), None)

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        return f"Result({self._table.num_rows} rows: {', '.join(self.columns)})"


@dataclass(frozen=True)
class Explanation:
    """What a script will run: per statement the DuckDB SQL, and the plan of each PREDICT."""

    statements: tuple[tuple[str, tuple[BoundPredict, ...]], ...]

    @property
    def sql(self) -> list[str]:
        return [sql for sql, _ in self.statements]

    def __str__(self) -> str:
        lines = []
        for sql, bound in self.statements:
            lines.append(sql)
            for b in bound:
                lines += [f"  {line}" for line in b.describe()]
        return "\n".join(lines)


class Connection:
    """A DuckDB connection that understands PREDICT; `con.duckdb` is the plain DuckDB connection.

    `registry_uri` names the MLflow registry for models:/ URIs (default: MLFLOW_TRACKING_URI).
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
        registry_uri: str | None = None,
        **config: Any,
    ) -> None:
        self.duckdb = duckdb.connect(str(database), read_only=read_only, config=config)
        self.variables: dict[str, object] = {}
        options = sessions.SessionOptions(intra_op_threads, max_model_bytes)
        self.models = ModelCatalog(self.duckdb, self.resolve, options)
        self.registry = MlflowRegistry(registry_uri)
        self.settings = Settings(batch_size, workers, options, {**self.registry.lookups, "catalog": self.models.lookup})

    def sql(self, text: str, params: Mapping[str, object] | None = None) -> Result | None:
        """Run a script; return the rows of the last statement that yields rows, else None."""
        views = self._views()
        if not _NEEDS_PARSER.search(text) and not any(v in text.lower() for v in views) and not params:
            return self._run_plain(text)
        variables = {**self.variables, **script.params(params)}
        result = None
        for statement in parse(text):
            rows = self._run(statement, variables, views)
            result = rows if rows is not None else result
            if _is_view(statement, exp.Create) or _is_view(statement, exp.Drop):
                views = self._views()
        return result

    def explain(self, text: str, params: Mapping[str, object] | None = None) -> Explanation:
        """The DuckDB SQL each statement runs and the plan of each PREDICT; reads no DATA rows."""
        variables = {**self.variables, **script.params(params)}
        views = self._views()
        statements = []
        for statement in parse(text):
            if isinstance(statement, exp.Declare):
                self._declare(statement, variables)
                continue
            sql, bound = self._plan(statement, variables, views)
            statements.append((sql, tuple(bound)))
        return Explanation(tuple(statements))

    def resolve(self, model: object, label: str) -> ModelSource:
        """The model a MODEL value names (bytes, a path or a URI), for one use."""
        return Resolver(self.settings.lookups)(model, label)

    def close(self) -> None:
        self.duckdb.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, statement: exp.Expression, variables: dict[str, object], views: Mapping[str, exp.Query]) -> Result | None:
        if isinstance(statement, exp.Declare):
            self._declare(statement, variables)
            self.variables.update({k: variables[k] for k in script.declared(statement)})
            return None
        if isinstance(statement, DescribeModel):
            return self._describe(statement, variables)
        if _is_view(statement, exp.Create) and statement.find(PredictTable):
            return self._create_view(statement, variables, views)
        dropped = [t.name.lower() for t in statement.args.get("tables") or []] if _is_view(statement, exp.Drop) else []
        if dropped and all(name in views for name in dropped):
            self.duckdb.execute(f"DELETE FROM {VIEWS_TABLE} WHERE list_contains(?, name)", [dropped]).fetchall()
            return None
        sql, bound = self._plan(statement, variables, views)
        run = Run(self.settings)
        try:
            run.start(bound, self.duckdb)
            return self._execute(sql, isinstance(statement, exp.Query))
        except duckdb.Error as e:
            error = run.error() or from_text(str(e))  # a stream's own error, or one an INLINE error() call raised
            if error is not None:
                raise error from e
            raise
        finally:
            run.close()

    def _plan(self, statement: exp.Expression, variables: Mapping[str, object], views: Mapping[str, exp.Query]) -> tuple[str, list[BoundPredict]]:
        """Bind every PREDICT of a statement (no DATA row is read) and rewrite it for DuckDB."""
        with Planner(self.duckdb, variables, self.settings) as planner:
            return planner.plan(self._prepare(statement, views))

    def _describe(self, statement: DescribeModel, variables: Mapping[str, object]) -> Result:
        with Planner(self.duckdb, variables, self.settings) as planner:
            return Result(script.describe_model(statement, variables, planner.run_query, planner.resolve, self.settings.session_options))

    def _declare(self, statement: exp.Declare, variables: dict[str, object]) -> None:
        with Planner(self.duckdb, variables, self.settings) as planner:
            script.declare(statement, variables, planner.run_query)

    def _execute(self, sql: str, is_query: bool) -> Result | None:
        if is_query:
            return Result(self.duckdb.sql(sql).to_arrow_table())
        self.duckdb.execute(sql).fetchall()
        return None

    def _run_plain(self, text: str) -> Result | None:
        relation = self.duckdb.sql(text)
        return Result(relation.to_arrow_table()) if relation is not None else None

    def _prepare(self, statement: exp.Expression, views: Mapping[str, exp.Query]) -> exp.Expression:
        statement = expand_views(statement, views)
        return map_default_schema(statement, self._schema_exists)

    def _schema_exists(self, name: str) -> bool:
        return bool(self.duckdb.execute("SELECT 1 FROM duckdb_schemas() WHERE lower(schema_name) = lower(?) AND database_name = current_database()", [name]).fetchall())

    def _create_view(self, statement: exp.Create, variables: Mapping[str, object], views: Mapping[str, exp.Query]) -> None:
        """Check the view binds (as T-SQL does at CREATE VIEW), then store its PREDICT text in the file."""
        name = statement.this.name.lower()
        query = statement.expression
        if query.find(exp.Parameter):
            raise BindError(f"view {name} references @variables, which a view cannot keep: write MODEL = (SELECT model FROM ... WHERE ...) instead")
        if name in views and not statement.args.get("replace"):
            raise BindError(f"view {name} already exists; use CREATE OR REPLACE VIEW")
        self._plan(query.copy(), variables, views)
        self.duckdb.sql("CREATE SCHEMA IF NOT EXISTS predictsql")
        self.duckdb.sql(f"CREATE TABLE IF NOT EXISTS {VIEWS_TABLE} (name VARCHAR PRIMARY KEY, definition VARCHAR NOT NULL)")
        self.duckdb.execute(f"INSERT OR REPLACE INTO {VIEWS_TABLE} VALUES (?, ?)", [name, to_sql(query)]).fetchall()
        return None

    def _views(self) -> dict[str, exp.Query]:
        exists = self.duckdb.execute(
            "SELECT 1 FROM duckdb_tables() WHERE schema_name = 'predictsql' AND table_name = 'views' AND database_name = current_database()"
        ).fetchall()
        if not exists:
            return {}
        return {name: parse(definition)[0] for name, definition in self.duckdb.execute(f"SELECT name, definition FROM {VIEWS_TABLE}").fetchall()}


def _is_view(statement: exp.Expression, kind: type) -> bool:
    return isinstance(statement, kind) and str(statement.args.get("kind", "")).upper() == "VIEW"


def connect(database: str = ":memory:", **kwargs: Any) -> Connection:
    """Open (or create) a DuckDB database with PREDICT support; extra kwargs go to DuckDB's config."""
    return Connection(database, **kwargs)
