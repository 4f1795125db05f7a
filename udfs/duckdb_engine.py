"""The DuckDB side of the planner: schemas, scalar rows, scoring functions, and streams, on one connection.

A UDF plan's function is a DuckDB Arrow scalar UDF returning a STRUCT, registered on the
caller's connection for one statement: DuckDB calls it once per vector inside the query, so it
sees the open transaction, TEMP tables and registered objects, and filters on DATA columns
reach it as only the matching rows. Where a condition outside the PREDICT may read its outputs, it
is registered as having side effects, so DuckDB scores each row once: it copies a deterministic call
into such a filter, once per conjunct. Elsewhere it stays deterministic, so DuckDB may score after
a Top-N (ORDER BY … LIMIT k scores k rows). A STREAM plan reads DATA on its own cursor, which sees
none of these: `stream_blocker` says when that would change the result. Errors a function or a
stream raises are kept as objects, so the statement's failure is raised again as itself.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, MutableSequence, Sequence
from types import FrameType
from typing import Any

import duckdb
import pyarrow as pa
from duckdb import func
from sqlglot import exp

from predictsql.engine import sessions
from predictsql.engine.binding import ScoringPlan, argument_schema, bind, output_requests
from predictsql.engine.errors import PredictSQLError
from predictsql.engine.scoring import ScoredStream, Scorer
from predictsql.engine.sessions import SessionOptions
from predictsql.engine.sources import ModelSource
from predictsql.engine.types import sql_name
from predictsql.sql.pushdown import calls_volatile
from predictsql.sql.statements import string_literal, tables
from predictsql.udfs.planner import STREAM, UDF, Bound, Planned, Settings

DIALECT = "duckdb"


class DuckDBEngine:
    """The planner's view of one DuckDB connection, for one statement; `close` removes what it registered."""

    dialect = DIALECT

    def __init__(self, con: duckdb.DuckDBPyConnection, settings: Settings, held: dict[str, FunctionBody]) -> None:
        self.con = con
        self.settings = settings
        self.held = held  # the connection's functions that kept plans hold registered, by name
        self.errors: list[BaseException] = []  # raised inside DuckDB by a scoring function or a stream
        self._functions: dict[str, FunctionBody] = {}  # registered for this statement alone
        self._running: list[FunctionBody] = []
        self._streams: list[ScoredStream] = []
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._registered: list[str] = []
        self._in_transaction: bool | None = None
        self._private: set[str] | None = None

    def schema(self, sql: str) -> pa.Schema:
        return _bound(self.con, sql).to_arrow_table().schema

    def rows(self, sql: str) -> list[tuple]:
        return self.con.sql(sql).limit(2).fetchall()

    def columns(self, sql: str) -> tuple[tuple[str, str], ...]:
        # bound afresh: a kept relation binds again only after a statement, and a file or a Python function can change without one
        relation = _bound(self.con, sql)
        return tuple(zip(relation.columns, map(str, relation.types), strict=True))

    def function(self, bound: Bound) -> None:
        assert bound.function_plan is not None
        scorer = Scorer(bound.function_plan)
        relation = _bound(self.con, bound.data_sql)  # DuckDB's own types for the function's parameters
        types = dict(zip(relation.columns, relation.types, strict=True))
        parameters: list[Any] = [types[name] for name in bound.function_plan.data_schema.names]  # list[DuckDBPyType], which the stub's invariant list refuses
        body = self._functions[bound.name] = FunctionBody(scorer, self.errors, len(parameters))
        _create(self.con, bound.name, body, parameters, _struct(bound.function_plan), side_effects=bound.filtered)

    def small_rows(self, bound: Bound, data: exp.Query, limit: int) -> int | None:
        """None inside a transaction (a function created there is gone after ROLLBACK), and where counting could change
        what DATA gives (a volatile function, a registered reader read once, a TEMP table: none of them is counted)."""
        if self._transaction_open() or calls_volatile(data) or self._private_names() & tables(data):
            return None
        ((rows,),) = self.con.sql(f"SELECT count(*) FROM (SELECT 1 FROM ({bound.data_sql}) AS __predictsql_rows LIMIT {limit + 1}) AS __predictsql_count").fetchall()
        return rows if rows <= limit else None

    def keep(self, names: Sequence[str]) -> Callable[[], None]:
        for name in names:
            self.held[name] = self._functions.pop(name)

        def release() -> None:
            for name in names:
                del self.held[name]
                with contextlib.suppress(duckdb.Error):  # the connection may be closed, and its functions gone with it
                    self.con.remove_function(name)

        return release

    def stream_blocker(self, bound: Bound, data: exp.Query) -> str:
        if self._transaction_open():
            return "a transaction is open, and a stream reads on a cursor of its own, which sees only committed rows"
        private = self._private_names() & tables(data)
        if private:
            return f"DATA reads {', '.join(sorted(private))}, a TEMP table or registered object that a stream's own cursor cannot see"
        try:
            cursor = self.con.cursor()
            try:
                relation = _bound(cursor, bound.data_sql)
                columns, empty = list(zip(relation.columns, map(str, relation.types), strict=True)), relation.to_arrow_table()
            finally:
                cursor.close()
        except duckdb.Error as e:
            return f"DATA reads something only this connection sees ({str(e).splitlines()[0]})"
        return _arrow_changes(columns, [str(t) for t in self.con.from_arrow(empty).types])

    def start(self, planned: Planned, scores: bool = True) -> None:
        """Start the statement's streams (DATA on its own cursor, scored in order, registered under the relation's name) and
        ready its scoring functions, the kept ones too, to count rows and keep errors for this statement. A statement that
        `scores` nothing (EXPLAIN without ANALYZE, DESCRIBE) gets each stream's relation empty: DuckDB plans it, and DATA is not read."""
        for b in planned.bound:
            if b.kind == UDF:
                body = self._functions[b.name] if b.name in self._functions else self.held[b.name]
                body.begin(self.errors)
                self._running.append(body)
            if b.kind != STREAM:
                continue
            if scores:
                cursor = self.con.cursor()
                self._cursors.append(cursor)
                stream = ScoredStream(cursor.sql(b.data_sql).to_arrow_reader(b.batch_size), Scorer(b.plan), self.settings.workers)
                self._streams.append(stream)
                reader = stream.reader
            else:
                reader = pa.RecordBatchReader.from_batches(b.plan.schema, iter(()))
            self.con.register(b.name, reader)
            self._registered.append(b.name)

    def scored_rows(self) -> int:
        """The most rows any of the statement's scoring functions scored."""
        return max((body.rows for body in self._running), default=0)

    def error(self) -> BaseException | None:
        """The first error a function or stream raised inside DuckDB (a PredictSQLError first), if any."""
        raised = self.errors + [s.error for s in self._streams if s.error is not None]
        return next((e for e in raised if isinstance(e, PredictSQLError)), raised[0] if raised else None)

    def close(self) -> None:
        for name in self._registered:
            self.con.unregister(name)
        for stream in self._streams:
            stream.close()
        for cursor in self._cursors:
            cursor.close()
        for name in self._functions:  # a kept plan's functions were handed to `held`
            self.con.remove_function(name)

    def _transaction_open(self) -> bool:
        if self._in_transaction is None:
            self._in_transaction = in_transaction(self.con)
        return self._in_transaction

    def _private_names(self) -> set[str]:
        """TEMP tables and views, and objects registered on the connection (DuckDB lists them as TEMP views); read once
        per statement, which planning does not change (its streams are registered when it starts)."""
        if self._private is None:
            rows = self.con.sql(
                "SELECT lower(table_name) FROM duckdb_tables() WHERE temporary UNION ALL SELECT lower(view_name) FROM duckdb_views() WHERE temporary AND NOT internal"
            ).fetchall()
            self._private = {name for (name,) in rows}
        return self._private


class FunctionBody:
    """A scoring function's body: STRUCT of outputs for one vector of input columns, errors kept for the adapter."""

    def __init__(self, scorer: Scorer, errors: MutableSequence[BaseException], arity: int) -> None:
        self.scorer = scorer
        # DuckDB counts a function's parameters from its signature; *columns would count as one
        self.__signature__ = inspect.Signature([inspect.Parameter(f"c{i}", inspect.Parameter.POSITIONAL_ONLY) for i in range(arity)])
        self._lock = threading.Lock()
        self.begin(errors)

    def begin(self, errors: MutableSequence[BaseException]) -> None:
        """Start a statement: batches and rows count from 0, errors go to its list (a kept function serves many)."""
        self.errors = errors
        self._batches = itertools.count()
        self.rows = 0

    def __call__(self, *columns: Any) -> pa.StructArray:
        try:  # the whole body: a Ctrl-C may land on any line, and DuckDB reports it only as text
            with self._lock:
                index, offset = next(self._batches), self.rows
                self.rows += len(columns[0])
            return self.scorer.score_columns(columns, index, offset)
        except BaseException as e:
            self.errors.append(e)
            raise



@contextlib.contextmanager
def interrupts() -> Iterator[Callable[[], bool]]:
    """Note a Ctrl-C while DuckDB runs a statement: wherever Python gets it (inside a scoring function DuckDB
    reports it as its own InvalidInputException), the statement's failure is then raised as KeyboardInterrupt."""
    seen: list[bool] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: FrameType | None) -> None:
        seen.append(True)
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield lambda: bool(seen)
    finally:
        signal.signal(signal.SIGINT, previous)


def _arrow_changes(columns: Sequence[tuple[str, str]], back: Sequence[str]) -> str:
    """Which DATA column a stream's Arrow batches would give back as another DuckDB type (UUID as VARCHAR, TIMETZ as TIME,
    HUGEINT as DECIMAL, ENUM as VARCHAR, …), as DuckDB reads back DATA's empty batch (`back`); else ''."""
    changed = [(name, was, now) for (name, was), now in zip(columns, back, strict=True) if was != now]
    if not changed:
        return ""
    name, was, now = changed[0]
    return f"DATA column {name} is {was}, which a stream's Arrow batches carry as {now}"


def _bound(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
    """A query bound, not run: DuckDB runs a query that calls nextval() as soon as it makes its relation (every row's
    sequence value taken, `.limit(0)` too), and under a LIMIT 0 written in its SQL it runs nothing."""
    return con.sql(f"SELECT * FROM ({sql}) AS __predictsql_q LIMIT 0")


def in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection is inside a transaction the user began: there two statements share one transaction id,
    in autocommit each has its own (an aborted transaction refuses the question, and counts as open)."""
    try:
        first, second = (con.execute("SELECT txid_current()").fetchall() for _ in range(2))
    except duckdb.TransactionException:
        return True
    return first == second


def own_schema(con: duckdb.DuckDBPyConnection) -> str:
    """predictsql's schema in the current database, qualified (see schema_in)."""
    (database,) = con.execute("SELECT current_database()").fetchall()[0]
    return schema_in(database)


def schema_in(database: str) -> str:
    """predictsql's schema in a database, qualified: where a database is also named predictsql (a file
    predictsql.duckdb, ATTACH … AS predictsql), DuckDB refuses the bare `predictsql.x` as ambiguous."""
    return f"{_quoted(database)}.predictsql"


def abort_transaction(con: duckdb.DuckDBPyConnection, error: BaseException) -> None:
    """Mark the user's open transaction aborted after a statement failed before DuckDB ran it, as DuckDB does after a
    statement of its own fails: later statements are refused until ROLLBACK."""
    if in_transaction(con):
        with contextlib.suppress(duckdb.Error):  # the failing error() is the point; an already-aborted one refuses it too
            con.execute(f"SELECT error({string_literal(f'predictsql: {type(error).__name__}: {error}')})").fetchall()


def register(con: duckdb.DuckDBPyConnection, name: str, source: ModelSource, outputs: Sequence[str] | None, options: SessionOptions) -> None:
    """Make `name(arg, ...)` callable from any DuckDB SQL on `con`: arguments bind by position to the model's inputs
    (argument_schema), one output returns a scalar, several a STRUCT; registering a name again replaces it."""
    model = sessions.load(source, options)
    # FLOAT inputs take DOUBLE arguments: DuckDB widens any number to DOUBLE implicitly, never to FLOAT
    arguments = pa.schema([pa.field(f.name, pa.float64() if f.type == pa.float32() else f.type) for f in argument_schema(model)])
    plan = bind(arguments, model, output_requests(outputs, "register()"))
    errors: deque[BaseException] = deque(maxlen=1)  # no statement of ours reads them: DuckDB reports the error, with its text
    body = FunctionBody(Scorer(plan, propagate=None, positions=False), errors, len(plan.data_schema))
    one = len(plan.outputs) == 1
    with contextlib.suppress(duckdb.InvalidInputException):  # not registered yet
        con.remove_function(name)
    parameters: list[Any] = [sql_name(f.type) for f in plan.data_schema]
    _create(con, name, _first_field(body) if one else body, parameters, sql_name(plan.outputs[0].arrow_type) if one else _struct(plan))


def _struct(plan: ScoringPlan) -> str:
    """The STRUCT type a scoring function returns: one field per output of the plan."""
    return f"STRUCT({', '.join(f'{_quoted(o.field)} {sql_name(o.arrow_type)}' for o in plan.outputs)})"


def _create(con: duckdb.DuckDBPyConnection, name: str, function: Callable[..., pa.Array], parameters: list[Any], returns: str, side_effects: bool = False) -> None:
    """An Arrow scalar UDF that sees NULLs (the scorer decides what they mean) and that DuckDB may push filters on its
    arguments below; with `side_effects`, DuckDB never copies a call into a filter over its results."""
    con.create_function(name, function, parameters, returns, type=func.ARROW, null_handling=func.SPECIAL, side_effects=side_effects)


def _first_field(body: FunctionBody) -> Callable[..., pa.Array]:
    """A scalar function over a one-output body: the STRUCT's only field."""

    def scalar(*columns: Any) -> pa.Array:
        return body(*columns).field(0)

    scalar.__signature__ = body.__signature__  # type: ignore[attr-defined]
    return scalar


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
