"""predictsql on Spark SQL: the same PREDICT text as on DuckDB, scored on the executors.

    spark = ps.session("local[2]")
    df = ps.sql(spark, "SELECT d.id, p.Score FROM PREDICT(MODEL = 'm.onnx', DATA = t AS d) WITH (Score FLOAT) AS p")
    ps.register(spark, "churn_score", model)      # then: SELECT churn_score(age, income) FROM t

Each PREDICT is bound on the driver by the shared planner (udfs/planner.py: model loaded, DATA's
schema read, inputs and outputs matched: the same errors as on DuckDB). An INLINE one becomes
Spark SQL arithmetic; any other becomes the subquery
`SELECT <DATA columns>, s.<output>... FROM (SELECT *, score(<model inputs>) AS s FROM DATA)`,
where `score` is an iterator Arrow UDF returning a STRUCT of the outputs, registered as a
temporary function of the session under a name of its own, dropped once the statement's DataFrame is analysed
(the analysed plan keeps the function itself, so derived DataFrames still run). Spark therefore prunes
DATA columns the query never reads, and only the model's input columns go to Python (measured
against mapInArrow and arrow_udtf in benchmarks/README.md). The UDF is marked nondeterministic
so that Spark evaluates it once per PREDICT, after DATA: it neither pushes the outer WHERE below
it nor copies it into each output read; a query that reads no output does not score at all.
Model bytes travel once per statement and executor as a broadcast that predictsql keeps no reference to: the
statement's plans hold it, and Spark's ContextCleaner releases it when they are gone. Each Python worker keeps one
scorer per model in predictsql.udfs.spark_cache, so a new broadcast of the same model is never read there. The driver never collects DATA. Scored relations are
recomputed, not streamed, so a PREDICT may be read twice.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.functions import arrow_udf
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType
from sqlglot import exp

from predictsql.engine import sessions
from predictsql.engine.binding import OutputRequest, ScoringPlan, argument_schema, bind, output_requests
from predictsql.engine.errors import AmbiguousColumnError, BindError, NullInputError, PredictSQLError, from_text
from predictsql.engine.mlflow_registry import MlflowRegistry
from predictsql.engine.scoring import DEFAULT_BATCH_SIZE
from predictsql.engine.sources import ModelSource, resolve
from predictsql.engine.validate import DEFAULT_MAX_MODEL_BYTES
from predictsql.sql.reading import read
from predictsql.sql.rewrite import Context, apply, map_default_schema
from predictsql.sql.statements import CREATE_VIEW, Variables, View, kind, reads_predict, view
from predictsql.udfs import script, spark_cache, spark_mllib
from predictsql.udfs.plan_cache import PlanCache
from predictsql.udfs.planner import Bound, Planner, Settings, input_schema
from predictsql.udfs.statements import run_script

DIALECT = "spark"
_variables: weakref.WeakKeyDictionary[SparkSession, Variables] = weakref.WeakKeyDictionary()
_plans: weakref.WeakKeyDictionary[SparkSession, PlanCache] = weakref.WeakKeyDictionary()  # kept plans (udfs/plan_cache.py)
ARROW_BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
MLLIB_NULL = "Encountered null while assembling a row"  # VectorAssembler's message for a NULL with handleInvalid = "error"


def session(master: str = "local[2]", app_name: str = "predictsql", **config: str) -> SparkSession:
    """A SparkSession whose Python workers run this interpreter (not whatever `python3` is on PATH).

    PySpark reads PYSPARK_PYTHON when the context starts; it is defaulted, never overridden.
    Arrow batches default to 65,536 rows, DuckDB's batch size (Spark's 10,000 scores slower, see
    benchmarks/README.md); spark.sql.execution.arrow.maxBytesPerBatch still caps wide rows.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {ARROW_BATCH_ROWS: "65536", **config}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def sql(
    spark: SparkSession,
    text: str,
    params: Mapping[str, object] | None = None,
    registry_uri: str | None = None,
    dialect: str | None = None,
    *,
    intra_op_threads: int = 1,
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    compiled_trees: bool = True,
) -> DataFrame | None:
    """Run a script; return the (lazy) DataFrame of the last statement that yields rows, else None.

    DECLARE'd variables persist on the SparkSession. Statements that write (INSERT, CTAS) run
    now; a query's scoring runs when the DataFrame is acted on (wrap actions in `errors()`).
    models:/ URIs resolve against `registry_uri` (default: MLFLOW_TRACKING_URI) when a statement
    is planned, so a lazy DataFrame keeps that version even if the alias moves. `dialect` is how
    the script is read: None (Spark SQL, T-SQL where only T-SQL reads a statement), "spark" or "tsql".
    """
    persisted = _variables.setdefault(spark, Variables())
    options = sessions.SessionOptions(intra_op_threads, max_model_bytes, compiled_trees)  # as connect() takes them; the workers' sessions too
    registry = MlflowRegistry(registry_uri)
    settings = Settings(DEFAULT_BATCH_SIZE, 1, options, registry.lookups, _plans.setdefault(spark, PlanCache()))  # Spark's Arrow batches are the batches
    runner = SparkRunner(spark, settings, registry)
    return run_script(runner, read(text, DIALECT, dialect), persisted.merged(script.params(params)), persisted)


class SparkRunner:
    """The statement loop's Runner on Spark (udfs/statements.py): lazy DataFrames, CREATE VIEW over PREDICT as a temp view."""

    def __init__(self, spark: SparkSession, settings: Settings, registry: MlflowRegistry) -> None:
        self.spark = spark
        self.settings = settings
        self.registry = registry
        self.temporary = Temporary(spark)

    def engine(self) -> SparkEngine:
        return SparkEngine(self.spark, self.settings.session_options, self.temporary)

    def execute(self, sql: str) -> DataFrame | None:
        with errors():
            return _rows(self.spark.sql(sql))

    def rows(self, table: pa.Table) -> DataFrame:
        return self.spark.createDataFrame(table)

    def prepare(self, tree: exp.Expr) -> exp.Expr:
        return apply((map_default_schema,), tree, Context(schema_exists=self.spark.catalog.databaseExists))

    def run(self, tree: exp.Expr, planner: Planner) -> DataFrame | None:
        try:
            created = view(tree) if kind(tree) == CREATE_VIEW else None
            over_predict = created is not None and created.query is not None and reads_predict(created.query)
            cached = isinstance(tree, exp.Cache) and isinstance(tree.expression, exp.Query) and reads_predict(tree.expression)
            tree = spark_mllib.replace_pipelines(self.spark, tree, planner, self.registry, self.temporary.views)  # MLlib models: Spark's own transform
            created = view(tree) if over_predict else None
            if created is not None and created.query is not None:
                self._create_view(tree, created, planner.plan(created.query).sql)
                return None
            if cached and isinstance(tree, exp.Cache):
                self._cache(tree, planner)
                return None
            return self.execute(planner.plan(tree).sql)
        finally:
            self.temporary.drop()

    def query(self, query: exp.Query, planner: Planner) -> list[tuple]:
        frame = self.run(query, planner)
        with errors():
            return [_values(row) for row in frame.collect()] if frame is not None else []

    def _create_view(self, statement: exp.Expr, created: View, sql: str) -> None:
        """A view over PREDICT as a temp view of the statement's DataFrame (a GLOBAL one in global_temp): a view in the
        catalog would keep the query's text, whose per-statement scoring function is dropped. An existing view is
        replaced only under OR REPLACE, as Spark's CREATE VIEW does."""
        name = created.name
        target = statement.this.this if isinstance(statement.this, exp.Schema) else statement.this
        glob = statement.find(exp.GlobalProperty) is not None
        if isinstance(target, exp.Table) and target.db and not (glob and target.db.lower() == "global_temp"):
            raise BindError(f"view {target.sql('spark')} reads PREDICT, so it is a temporary view of this session: CREATE TEMP VIEW {name} (or GLOBAL TEMP VIEW) instead")
        if not created.replace and self.spark.catalog.tableExists(f"global_temp.{name}" if glob else name):
            if created.exists:
                return
            raise BindError(f"view {name} already exists; use CREATE OR REPLACE VIEW")
        frame = self.spark.sql(sql)
        if glob:
            frame.createOrReplaceGlobalTempView(name)
        else:
            frame.createOrReplaceTempView(name)

    def _cache(self, statement: exp.Cache, planner: Planner) -> None:
        """CACHE [LAZY] TABLE t [OPTIONS ('storageLevel' ...)] AS <query over PREDICT>: a temp view of the query's
        DataFrame, cached. Spark's own CACHE TABLE keeps the query's text, whose per-statement function predictsql drops."""
        name = statement.this.name
        self.spark.sql(planner.plan(statement.expression).sql).createOrReplaceTempView(name)
        options = statement.args.get("options") or []
        settings = {options[i].name.lower(): options[i + 1].name for i in range(0, len(options) - 1, 2)}
        level = settings.get("storagelevel")
        if level is not None and not isinstance(getattr(StorageLevel, level.upper(), None), StorageLevel):
            raise BindError(f"CACHE TABLE {name} OPTIONS ('storageLevel' '{level}'): Spark has no such storage level; e.g. MEMORY_AND_DISK or DISK_ONLY")
        with errors():
            if level is None:
                self.spark.catalog.cacheTable(name)
            else:
                self.spark.catalog.cacheTable(name, getattr(StorageLevel, level.upper()))
            if not statement.args.get("lazy"):
                self.spark.table(name).count()  # CACHE TABLE fills the cache now, as Spark's does


class Temporary:
    """The temp functions and views one statement registers, dropped when it has been analysed (or has failed).

    Spark resolves names when spark.sql analyses a statement, so its DataFrame, views made from it and frames
    derived from it keep what they resolved; only the session's catalog forgets the names."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.functions: list[str] = []
        self.views: list[str] = []

    def drop(self) -> None:
        for name in self.functions:
            self.spark.sql(f"DROP TEMPORARY FUNCTION IF EXISTS {name}")
        for name in self.views:
            self.spark.catalog.dropTempView(name)
        self.functions.clear()
        self.views.clear()


def _rows(frame: DataFrame) -> DataFrame | None:
    """The frame of a statement that yields rows; None for one that only acts (its frame has no columns)."""
    return frame if frame.columns else None


def register(
    spark: SparkSession,
    name: str,
    model: bytes | str,
    outputs: Sequence[str] | None = None,
    registry_uri: str | None = None,
    *,
    intra_op_threads: int = 1,
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    compiled_trees: bool = True,
) -> Any:
    """Make `name(...)` callable from Spark SQL; arguments bind by position to the model's inputs.

    The argument order is the model's input order, with a [N,k] input expanded into the column
    names its metadata records (predictsql.export writes them): `predictsql.argument_names(model)` tells it.
    One output returns a scalar, several a STRUCT; default: every output, classes expanded.
    """
    source = resolve(model, f"'{name}'", MlflowRegistry(registry_uri).lookups)
    options = sessions.SessionOptions(intra_op_threads, max_model_bytes, compiled_trees)
    loaded = sessions.load(source, options)
    requested = output_requests(outputs, "register()")
    plan = bind(argument_schema(loaded), loaded, requested)
    function = _scoring_udf(spark, source, plan, requested, options, struct=len(plan.outputs) > 1)
    spark.udf.register(name, function)
    return function


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Re-raise a predictsql error that failed a Spark job (a worker's, or one an INLINE raise_error() call raised) as itself.

    Analysis errors are the engine's own and stay untouched, even when their plan dump quotes predictsql's SQL."""
    try:
        yield
    except (PredictSQLError, AnalysisException):
        raise
    except Exception as e:
        error = from_text(str(e))
        if error is None and MLLIB_NULL in str(e):
            error = NullInputError(
                "a NULL input reached a Spark MLlib model's VectorAssembler (RUNTIME = SPARKML), which refuses it: filter or fill "
                "the NULLs in the DATA query, or add NULLS = PROPAGATE to score those rows as NULL"
            )
        if error is None:
            raise
        raise error from None


class SparkEngine:
    """The planner's view of a SparkSession: schemas and rows from spark.sql, scoring functions as Arrow UDFs."""

    dialect = DIALECT

    def __init__(self, spark: SparkSession, options: sessions.SessionOptions, temporary: Temporary) -> None:
        self.spark = spark
        self.options = options
        self.temporary = temporary

    def schema(self, sql: str) -> pa.Schema:
        """The Arrow schema of a query's rows, TIMESTAMPs in the session's time zone (as Arrow batches carry them); names
        that differ only in case are an AmbiguousColumnError, as Spark (case-insensitive by default) reads them as one."""
        schema = to_arrow_schema(self.spark.sql(sql).schema, timezone=self.spark.conf.get("spark.sql.session.timeZone"))
        if str(self.spark.conf.get("spark.sql.caseSensitive", "false")).lower() != "true":
            seen: dict[str, str] = {}
            for name in schema.names:
                if name.lower() in seen and seen[name.lower()] != name:
                    raise AmbiguousColumnError(f"DATA columns {seen[name.lower()]} and {name} differ only in case, which Spark SQL reads as one name: rename one in the DATA query")
                seen.setdefault(name.lower(), name)
        return schema

    def rows(self, sql: str) -> list[tuple]:
        return [_values(row) for row in self.spark.sql(sql).take(2)]

    def columns(self, sql: str) -> tuple[tuple[str, str], ...]:
        return tuple((f.name, f.dataType.simpleString()) for f in self.spark.sql(sql).schema.fields)

    def function(self, bound: Bound) -> None:
        """A nondeterministic Arrow UDF (see the module docstring), registered as a temporary function of the session."""
        assert bound.function_plan is not None
        function = _scoring_udf(self.spark, bound.source, bound.function_plan, bound.requested, self.options, struct=True)
        self.spark.udf.register(bound.name, function.asNondeterministic())
        self.temporary.functions.append(bound.name)

    def stream_blocker(self, bound: Bound, data: exp.Query) -> str:
        return "Spark scores every PREDICT that is not INLINE in an Arrow UDF inside the query"


def _scoring_udf(spark: SparkSession, source: ModelSource, plan: ScoringPlan, requested: Sequence[OutputRequest] | None, options: sessions.SessionOptions, struct: bool) -> Any:
    """An iterator Arrow UDF over the plan's input columns returning its one output, or a STRUCT of its outputs."""
    fields = from_arrow_schema(pa.schema([pa.field(o.field, o.arrow_type) for o in plan.outputs])).fields
    body = partial(spark_cache.score_batches, spark.sparkContext.broadcast(source.data), source.sha256, source.label, input_schema(plan).names, requested, plan.nulls, options, struct)

    def score(batches: Iterator[tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        """The type hints are how arrow_udf knows an iterator UDF (a partial has none)."""
        return body(batches)

    return arrow_udf(score, StructType(fields) if struct else fields[0].dataType)  # type: ignore[call-overload]  # the stub wants functionType; at run time the type hints choose the iterator form


def _values(row: Any) -> tuple:
    """A Spark Row's values, BINARY as bytes (Spark gives bytearray), as DuckDB's rows have them."""
    return tuple(bytes(v) if isinstance(v, bytearray) else v for v in row)
