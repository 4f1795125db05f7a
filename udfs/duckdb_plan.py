"""Plan and run one PREDICT statement on DuckDB.

Planning binds every PREDICT before a row is read: models are resolved, each DATA query's Arrow
schema is probed with LIMIT 0 (inner PREDICTs stand in as empty tables of their output schema),
and each PREDICT gets a plan. INLINE (linear models, udfs/inline.py) becomes a subquery that
DuckDB computes itself; STREAM becomes a registered relation the rewritten statement reads.

Running gives each STREAM PREDICT its own cursor (a reader scans once and a connection with an open
result refuses a second query): DATA streams from the cursor in Arrow batches, is scored, and
the scored stream is registered on the parent connection under the relation's name. A cursor
cannot see the caller's TEMP tables or registered objects, so DATA that reads them must run INLINE.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Mapping

import duckdb
import pyarrow as pa
from sqlglot import exp

from predictsql.engine import sessions
from predictsql.engine.binding import ScoringPlan
from predictsql.engine.errors import BindError, PredictSQLError
from predictsql.engine.scoring import ScoredStream, Scorer
from predictsql.engine.sources import Lookup, Resolver
from predictsql.sql.bind import find_predicts
from predictsql.sql.dialect import to_sql
from predictsql.sql.plan import PredictCall, Relation
from predictsql.sql.rewrite import inline_variables, rewrite
from predictsql.udfs import inline, script

DIALECT = "duckdb"


@dataclass
class BoundPredict:
    """A PREDICT ready to run: its relation name, DATA query, scoring plan, SQL form if INLINE, inner PREDICTs."""

    name: str
    label: str
    data_sql: str  # in DuckDB's terms: inner PREDICTs replaced, variables inlined
    plan: ScoringPlan
    batch_size: int
    inner: list["BoundPredict"]
    inline_query: exp.Query | None  # the INLINE plan's relation; None: STREAM
    why_stream: str

    @property
    def relation(self) -> Relation:
        """What the rewrite reads: the registered stream by name, or the INLINE subquery."""
        return script.relation(self.name, self.plan, self.inline_query)

    def describe(self, depth: int = 0) -> list[str]:
        pad = "  " * depth
        how = f"{inline.INLINE} {self.plan.model.display}" if self.inline_query else f"{inline.STREAM} {self.plan.model.display}, batch {self.batch_size} (not INLINE: {self.why_stream})"
        lines = [f"{pad}{self.name}: {how}", f"{pad}  DATA: {self.data_sql}"]
        lines += [f"{pad}  {line}" for line in self.plan.describe()]
        for inner in self.inner:
            lines += inner.describe(depth + 1)
        return lines


@dataclass
class Settings:
    batch_size: int
    workers: int
    session_options: sessions.SessionOptions
    lookups: Mapping[str, Lookup]  # URI scheme → registry (MLflow, the catalog)


class Planner:
    """Binds the PREDICTs of a statement against a DuckDB connection; reads no DATA rows."""

    def __init__(self, con: duckdb.DuckDBPyConnection, variables: Mapping[str, object], settings: Settings) -> None:
        self.con = con
        self.variables = variables
        self.settings = settings
        self.resolve = Resolver(settings.lookups)  # one per statement: a URI names one version throughout
        self._probe: duckdb.DuckDBPyConnection | None = None
        self._prefix = f"__predictsql_{uuid.uuid4().hex[:8]}"
        self._count = 0

    def plan(self, tree: exp.Expression) -> tuple[str, list[BoundPredict]]:
        """The statement's target SQL and its bound PREDICTs (recursively, inner ones first)."""
        target, bound = self._rewrite(tree)
        return target.sql(dialect=DIALECT), bound

    def _rewrite(self, tree: exp.Expression) -> tuple[exp.Expression, list[BoundPredict]]:
        calls = find_predicts(tree)
        bound = [self._bind_call(call) for call in calls]
        relations = {call.index: b.relation for call, b in zip(calls, bound)}
        return rewrite(tree, relations, self.variables, materialize_ctes=True), bound

    def __enter__(self) -> "Planner":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._probe is not None:
            self._probe.close()

    def _bind_call(self, call: PredictCall) -> BoundPredict:
        model = sessions.load(script.model_source(call, self.variables, self.run_query, self.resolve), self.settings.session_options)
        data, inner = self._rewrite(call.data)
        data_sql = data.sql(dialect=DIALECT)
        schema, private = self._schema(data_sql, inner, call)
        plan = script.scoring_plan(call, schema, model)
        query, why_stream = inline.inline_query(call, data, plan, DIALECT)
        if private and query is None:
            raise BindError(
                f"PREDICT DATA {to_sql(call.data)} ({call.label}) reads a TEMP table or registered object, which the STREAM plan's "
                f"reader (its own connection) cannot see, and the model cannot run INLINE ({why_stream}): store it in a regular table or view"
            )
        self._count += 1
        return BoundPredict(f"{self._prefix}_{self._count}", call.label, data_sql, plan, script.batch_size(call, self.settings.batch_size), inner, query, why_stream)

    def run_query(self, query: exp.Query) -> list[tuple]:
        """Run a scalar subquery (MODEL = (SELECT ...)) on the caller's connection: at most two rows."""
        rows = self.con.execute(inline_variables(query.copy(), self.variables).sql(dialect=DIALECT)).fetchmany(2)
        self.con.abort()  # a third row need not be read; the result must not stay open
        return rows

    def _schema(self, data_sql: str, inner: list[BoundPredict], call: PredictCall) -> tuple[pa.Schema, bool]:
        """DATA's Arrow schema from LIMIT 0, inner PREDICTs registered as empty tables on a probe cursor; and
        whether only the caller's connection sees DATA (a TEMP table or registered object: INLINE only, and only
        when no inner PREDICT streams)."""
        if self._probe is None:
            self._probe = self.con.cursor()
        for b in inner:
            self._probe.register(b.name, b.plan.schema.empty_table())
        try:
            return self._probe.sql(data_sql).limit(0).to_arrow_table().schema, False
        except duckdb.Error as e:
            error = BindError(f"PREDICT DATA {to_sql(call.data)} ({call.label}) fails: {e}")
            if _streams(inner):  # their relations are registered on the probe only
                raise error from e
        try:
            return self.con.sql(data_sql).limit(0).to_arrow_table().schema, True
        except duckdb.Error:
            raise error from None


class Run:
    """Starts the scored streams of a planned statement and tears them down afterwards."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.streams: list[ScoredStream] = []
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._registered: list[tuple[duckdb.DuckDBPyConnection, str]] = []

    def start(self, bound: list[BoundPredict], con: duckdb.DuckDBPyConnection) -> None:
        for b in bound:
            if b.inline_query:  # INLINE: DuckDB computes it within the statement, reading inner streams from `con`
                self.start(b.inner, con)
                continue
            cursor = con.cursor()
            self._cursors.append(cursor)
            self.start(b.inner, cursor)
            reader = cursor.sql(b.data_sql).to_arrow_reader(b.batch_size)
            stream = ScoredStream(reader, Scorer(b.plan), self.settings.workers)
            self.streams.append(stream)
            con.register(b.name, stream.reader)
            self._registered.append((con, b.name))

    def error(self) -> PredictSQLError | None:
        """The first predictsql error a stream raised inside the engine, if any."""
        return next((s.error for s in self.streams if isinstance(s.error, PredictSQLError)), None)

    def close(self) -> None:
        for con, name in self._registered:
            con.unregister(name)
        for stream in self.streams:
            stream.close()
        for cursor in reversed(self._cursors):
            cursor.close()


def _streams(bound: list[BoundPredict]) -> bool:
    """Whether any of these PREDICTs, or one in their DATA, runs STREAM."""
    return any(b.inline_query is None or _streams(b.inner) for b in bound)
