"""The one planner, for every engine: bind each PREDICT of a statement, pick its plan, rewrite the statement.

    tree ──find_predicts──► PredictCall ──model, DATA schema──► ScoringPlan ──choose──► INLINE | UDF | STREAM
         ◄──────────────── rewrite (sql/rewrite.py) ◄──────── Relation ◄─────────────┘

An engine adapter (udfs/duckdb_engine.py, udfs/spark.py) gives the planner seven things: its
dialect, a query's Arrow schema (and, cheaper, its column names and types), a scalar subquery's
rows, a scoring function registered under a name, whether a stream would see what the statement
sees, and whether it can keep a function registered for a kept plan. Binding reads no DATA row.

- INLINE: the model as SQL expressions (udfs/inline.py); the engine computes it.
- UDF: a registered scoring function inside the statement, over the model's input columns,
  returning a STRUCT of the outputs; it sees the statement's transaction, TEMP tables and
  registered objects, and the engine pushes filters on DATA columns below it. Where the engine
  keeps plans, AUTO picks it for small DATA (at most `small_data_rows` rows when planned): a
  function kept registered costs least to run again, where INLINE SQL is bound afresh each run.
- STREAM (DuckDB): DATA read on its own cursor and scored by several workers in order, the
  stream registered as a relation; only where a stream sees what the statement sees.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import pyarrow as pa
from sqlglot import exp

from predictsql.engine import sessions, trees
from predictsql.engine.binding import OutputRequest, ScoringPlan, bind
from predictsql.engine.errors import BindError, PredictSQLError, as_text
from predictsql.engine.sources import Lookup, ModelSource, Resolver
from predictsql.sql.bind import find_predicts
from predictsql.sql.dialect import engine_sql, stores_sql, to_sql
from predictsql.sql.plan import QUERY, PredictCall, Relation, in_place
from predictsql.sql.projection import project, referenced_columns
from predictsql.sql.pushdown import push_predicates
from predictsql.sql.rewrite import Context, apply, function_relation, inline_variables, rewrite
from predictsql.sql.statements import Variables
from predictsql.udfs import inline, plan_cache, script
from predictsql.udfs.plan_cache import PlanCache

INLINE, UDF, STREAM, AUTO = "INLINE", "UDF", "STREAM", "AUTO"
E = TypeVar("E", bound=exp.Expr)
PLANS = (AUTO, INLINE, UDF, STREAM)


@dataclass(frozen=True)
class Settings:
    """What every statement of a connection plans with."""

    batch_size: int
    workers: int
    session_options: sessions.SessionOptions
    lookups: Mapping[str, Lookup]  # URI scheme → registry (MLflow, the catalog)
    plans: PlanCache | None = None  # plans kept for statements run again (udfs/plan_cache.py); None: none kept
    small_data_rows: int = 0  # with plans kept, AUTO scores DATA of at most this many rows with a kept UDF (0: never)

    def __post_init__(self) -> None:
        sessions.whole_number("batch_size", self.batch_size, 1)
        sessions.whole_number("workers", self.workers, 1)
        sessions.whole_number("small_data_rows", self.small_data_rows, 0)


@dataclass
class Bound:
    """A PREDICT ready to run: its name, model, DATA query, scoring plan, the plan picked and why, and inner PREDICTs."""

    name: str
    source: ModelSource
    data_sql: str  # in the engine's SQL: inner PREDICTs replaced, variables inlined
    plan: ScoringPlan
    kind: str  # INLINE, UDF or STREAM
    why: str  # why this plan (and not INLINE)
    batch_size: int
    inner: list[Bound]
    requested: list[OutputRequest] | None = None  # the WITH columns (None: every output)
    query: exp.Query | None = None  # the relation's SQL (INLINE, UDF); None for STREAM
    function_plan: ScoringPlan | None = None  # UDF: the plan its function runs, bound to the input columns alone
    pushed: tuple[str, ...] = ()  # the outer conjuncts that filter DATA before it is scored
    filtered: bool = False  # a condition outside it may read its outputs (UDF: DuckDB must not copy the call into it)
    small_data: bool = False  # a UDF AUTO picked for small DATA: its plan is kept with its function registered
    pruned: str = ""  # how they pruned the model's trees (engine/trees.py), for EXPLAIN

    @property
    def relation(self) -> Relation:
        return script.relation(self.name, self.plan, self.query)

    def describe(self, depth: int = 0) -> list[str]:
        pad = "  " * depth
        extra = f", batch {self.batch_size}" if self.kind == STREAM else ""
        lines = [f"{pad}{self.name}: {self.kind} {self.plan.model.display}{extra} ({self.why})", f"{pad}  DATA: {self.data_sql}"]
        if self.pushed:
            lines.append(f"{pad}  pushed below PREDICT: {' AND '.join(self.pushed)}")
        if self.pruned:
            lines.append(f"{pad}  {self.pruned}")
        if self.kind != INLINE and self.plan.model.tree_nodes:
            lines.append(f"{pad}  scored by {self.plan.model.runtime}")
        lines += [f"{pad}  {line}" for line in self.plan.describe()]
        for b in self.inner:
            lines += b.describe(depth + 1)
        return lines


def input_schema(plan: ScoringPlan) -> pa.Schema:
    """The DATA columns the model reads, in DATA order: a scoring function's arguments."""
    return pa.schema([plan.data_schema.field(i) for i in sorted({i for feed in plan.inputs for i in feed.columns})])


class Engine(Protocol):
    """What an engine adapter does for the planner."""

    dialect: str

    def schema(self, sql: str) -> pa.Schema:
        """The Arrow schema of a query, reading no row."""

    def rows(self, sql: str) -> list[tuple]:
        """At most two rows of a query (a scalar subquery)."""

    def columns(self, sql: str) -> tuple[tuple[str, str], ...]:
        """A query's column names and engine types, binding it only: the cheap check that a kept plan still holds."""

    def function(self, bound: Bound) -> None:
        """Register `bound.name` as the scoring function of a UDF plan, for this statement."""

    def stream_blocker(self, bound: Bound, data: exp.Query) -> str:
        """Why a stream of DATA would not see what the statement sees (or the engine has no stream), else ''."""


@runtime_checkable
class KeepingEngine(Engine, Protocol):
    """An engine that can keep a scoring function registered between statements (DuckDB): AUTO's plan for small DATA."""

    def small_rows(self, bound: Bound, data: exp.Query, limit: int) -> int | None:
        """DATA's row count if it is at most `limit` and counting its rows changes nothing the statement sees, else None."""

    def keep(self, names: Sequence[str]) -> Callable[[], None]:
        """Leave these scoring functions registered after the statement, for a kept plan; the callable removes them."""


@dataclass(frozen=True)
class Planned:
    """A statement as the engine runs it, and its bound PREDICTs."""

    sql: str
    bound: list[Bound]


class Planner:
    """Binds and rewrites one statement against an engine; one per statement, so a URI names one version throughout."""

    def __init__(self, engine: Engine, variables: Variables, settings: Settings) -> None:
        self.engine = engine
        self.variables = variables
        self.settings = settings
        self.resolve = Resolver(settings.lookups)
        self._prefix = f"__predictsql_{uuid.uuid4().hex[:8]}"
        self._count = 0
        self._failures: dict[str, PredictSQLError] = {}
        self._referenced: set[str] | None = None  # the statement's column names (sql/projection.py); None: it may read all
        self._probes: list[str] = []  # each DATA query bound
        self._keepable = True  # every MODEL so far is bytes of the statement or a variable
        self._key: Hashable | None = None  # the statement's key in the plan cache, once looked up
        self.kept = False  # the plan is kept: the statement runs again with the same SQL
        self._stores_sql = False  # a CREATE whose SQL the engine keeps (a macro): no function of one statement may end up in it

    def plan(self, tree: exp.Expr) -> Planned:
        """The statement's engine SQL and its bound PREDICTs (inner ones inside); a kept plan if it still holds."""
        cache = self.settings.plans
        try:
            key = self._key = plan_cache.key((cache.text(tree, self._sql), self.settings.session_options), self.variables) if cache is not None else None
            kept = cache.get(key, self.engine.columns) if cache is not None else None
            if kept is not None:
                self._failures, self.kept = dict(kept.failures), True
                return kept.planned
            self._referenced = referenced_columns(tree)
            self._stores_sql = stores_sql(tree)
            target, bound = self._rewrite(tree, nested=False)
            planned = Planned(engine_sql(target, self.engine.dialect), bound)
        except RecursionError:
            raise BindError("the statement nests too deeply to plan: flatten its subqueries") from None
        if cache is not None and key is not None and self._keepable and all((b.kind == INLINE or b.small_data) and not b.inner for b in bound):
            functions = [b.name for b in bound if b.small_data]
            release = self.engine.keep(functions) if functions and isinstance(self.engine, KeepingEngine) else None
            probes = tuple((sql, self.engine.columns(sql)) for sql in dict.fromkeys(self._probes))
            cache.put(key, plan_cache.Kept(planned, dict(self._failures), probes, release))
            self.kept = True
        return planned

    def _sql(self, tree: exp.Expr) -> str:
        return to_sql(tree, self.engine.dialect)

    def scored(self, rows: int) -> None:
        """After the statement ran: a kept plan whose functions scored more rows than small DATA has is dropped, so the
        next run plans afresh (larger DATA may run INLINE or as a stream)."""
        cache = self.settings.plans
        if cache is not None and self._key is not None and rows > self.settings.small_data_rows:
            cache.drop(self._key)

    def run_query(self, query: exp.Query) -> list[tuple]:
        """A scalar subquery's rows (MODEL = (SELECT ...), DECLARE @m = (SELECT ...))."""
        return self.engine.rows(apply((inline_variables,), query, Context(variables=self.variables)).sql(dialect=self.engine.dialect))

    def fail(self, error: PredictSQLError) -> str:
        """The text an engine's error() call carries for `error`: a key this statement alone knows, then the message."""
        key = f"{self._prefix}_e{len(self._failures)}"
        self._failures[key] = error
        return f"{key} {as_text(error)}"

    def error(self, text: str) -> PredictSQLError | None:
        """The predictsql error an engine error's text carries from this statement's INLINE SQL (by its key), else None."""
        return next((e for key, e in self._failures.items() if f"{key} " in text), None)  # `_e1 ` is not `_e10 `

    def _rewrite(self, tree: E, nested: bool) -> tuple[E, list[Bound]]:
        tree = apply((push_predicates,), tree, Context())
        calls = find_predicts(tree)
        bound = [self._bind(call, nested) for call in calls]
        return rewrite(tree, [b.relation for b in bound], self.variables), bound

    def _bind(self, call: PredictCall, nested: bool) -> Bound:
        if call.options.get("RUNTIME") == "SPARKML":
            raise BindError(
                f"PREDICT RUNTIME = SPARKML ({call.label}) has Spark score a Spark MLlib model: run the statement with "
                "predictsql.udfs.spark.sql, as an outermost PREDICT; on DuckDB convert the model with predictsql.export(pipeline_model, sample=...)"
            )
        value = script.model_value(call.model, self.variables, self.run_query)
        self._keepable &= call.model.kind != QUERY and isinstance(value, bytes | bytearray | memoryview)
        source = self.resolve(value, call.label)
        model = sessions.load(source, self.settings.session_options)
        data, inner = self._rewrite(call.data, nested=True)
        data_sql = data.sql(dialect=self.engine.dialect)
        try:
            schema = self._schema(data_sql)
        except PredictSQLError:
            raise
        except Exception as e:  # the engine's own error type
            raise BindError(f"PREDICT DATA {to_sql(call.data, self.engine.dialect)} ({call.label}) fails: {_first_lines(str(e)) or type(e).__name__}") from e
        plan = script.scoring_plan(call, schema, model)
        keep = self._carried(plan)
        if keep is not None:
            data = project(data, keep)
            data_sql = data.sql(dialect=self.engine.dialect)
            plan = script.scoring_plan(call, pa.schema([f for f in schema if f.name in keep]), model)  # a projection keeps each column's type
        proved = _feature_ranges(call, plan) if model.tree_nodes and call.ranges else {}
        pruned = trees.prune(source, proved, self.settings.session_options.max_model_bytes) if proved else None
        if pruned is not None:
            source, model = pruned.source, sessions.load(pruned.source, self.settings.session_options)
            plan = script.scoring_plan(call, plan.data_schema, model)
        self._count += 1
        batch = script.batch_size(call, self.settings.batch_size)
        bound = Bound(f"{self._prefix}_{self._count}", source, data_sql, plan, UDF, "", batch, inner, script.requested(call), pushed=call.pushed, filtered=call.filtered)
        if pruned is not None:
            bound.pruned = f"trees pruned by what it proves: {pruned.before:,} → {pruned.after:,} nodes"
        self._choose(call, bound, data, nested)
        if bound.kind == UDF:
            bound.function_plan = function_plan = bind(input_schema(plan), model, bound.requested, plan.nulls)
            self.engine.function(bound)
            fields = [(f.field, o.field) for f, o in zip(function_plan.outputs, plan.outputs, strict=True)]
            bound.query = function_relation(in_place(data, call), bound.name, function_plan.data_schema.names, plan.data_schema.names, fields)
        return bound

    def _schema(self, data_sql: str) -> pa.Schema:
        self._probes.append(data_sql)
        return self.engine.schema(data_sql)

    def _carried(self, plan: ScoringPlan) -> list[str] | None:
        """The DATA columns to carry when the statement reads fewer than all (sql/projection.py), else None."""
        if self._referenced is None:
            return None
        inputs = {i for feed in plan.inputs for i in feed.columns}
        keep = [f.name for i, f in enumerate(plan.data_schema) if i in inputs or f.name.lower() in self._referenced]
        return keep if len(keep) < len(plan.data_schema) else None

    def _choose(self, call: PredictCall, bound: Bound, data: exp.Query, nested: bool) -> None:
        """INLINE when the model has an SQL form, else STREAM where a stream is correct, else UDF; PLAN = … forces one."""
        choice = call.options.get("PLAN", AUTO)
        if choice not in PLANS:
            raise BindError(f"PREDICT PLAN = {choice} ({call.label}) is not a plan; use PLAN = {', '.join(PLANS)}")
        small = self._small(bound, data) if choice == AUTO and not nested and not bound.inner else None
        if small is not None:
            bound.small_data, bound.why = True, f"DATA has at most {small:,} rows: a kept scoring function costs less to run again than INLINE SQL or a stream"
            return
        if choice in (AUTO, INLINE):
            query, why = inline.inline_query(call, data, bound.plan, self.engine.dialect, self.fail, forced=choice == INLINE)
            if query is not None:
                bound.kind, bound.why, bound.query = INLINE, "the model has an SQL form", query
                return
            bound.why = f"not INLINE: {why}"
        if choice in (AUTO, STREAM):
            blocker = "it is inside another PREDICT's DATA" if nested else call.rereads or self.engine.stream_blocker(bound, data)
            if not blocker:
                bound.kind = STREAM
                bound.why = "PLAN = STREAM" if choice == STREAM else f"{bound.why}; a stream of DATA sees what the statement sees"
                return
            if choice == STREAM:
                raise BindError(f"PREDICT PLAN = STREAM ({call.label}) cannot stream: {blocker}; use PLAN = UDF or AUTO")
            bound.why = f"{bound.why}; not STREAM: {blocker}"
        else:
            bound.why = "PLAN = UDF"

    def _small(self, bound: Bound, data: exp.Query) -> int | None:
        """DATA's row count where it has at most small_data_rows rows and the plan may be kept (every MODEL so far bytes
        or a variable, on an engine that keeps functions, in a statement that stores no SQL), else None."""
        limit = self.settings.small_data_rows
        if not limit or self.settings.plans is None or not self._keepable or self._stores_sql or not isinstance(self.engine, KeepingEngine):
            return None
        return self.engine.small_rows(bound, data, limit)


def _feature_ranges(call: PredictCall, plan: ScoringPlan) -> dict[trees.FeatureKey, trees.Interval]:
    """What the pushed conjuncts prove about each model input value fed from a numeric DATA column."""
    ranges = dict(call.ranges)
    proved = {}
    for feed in plan.inputs:
        for j, column in enumerate(() if feed.whole else feed.columns):
            field = plan.data_schema.field(column)
            numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)
            if numeric and field.name.lower() in ranges:
                proved[(feed.name, j)] = ranges[field.name.lower()]
    return proved


def _first_lines(message: str) -> str:
    """An engine error's headline and its did-you-mean, without the query echo or plan dump that follow."""
    lines = message.strip().splitlines() or [""]
    return " ".join([lines[0], *(line for line in lines[1:2] if line.lower().startswith("did you mean"))])
