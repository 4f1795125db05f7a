"""predictsql on Spark SQL: the same PREDICT text as on DuckDB, scored on the executors.

    spark = ps.session("local[2]")
    df = ps.sql(spark, "SELECT d.id, p.Score FROM PREDICT(MODEL = 'm.onnx', DATA = t AS d) WITH (Score FLOAT) AS p")
    ps.register(spark, "churn_score", model)      # then: SELECT churn_score(age, income) FROM t

Each PREDICT is bound on the driver (model loaded, DATA's schema read, inputs and outputs
matched: the same errors as on DuckDB), then becomes a temp view that the rewritten query reads:
`SELECT <DATA columns>, s.<output>... FROM (SELECT *, score(<model inputs>) AS s FROM DATA)`,
where `score` is an iterator Arrow UDF returning a STRUCT of the outputs. Spark therefore prunes
DATA columns the query never reads, and only the model's input columns go to Python (measured
against mapInArrow and arrow_udtf in benchmarks/README.md). The UDF is marked nondeterministic
so that Spark evaluates it once per PREDICT, after DATA: it neither pushes the outer WHERE below
it nor copies it into each output read; a query that reads no output does not score at all.
Model bytes travel once per executor as a broadcast; each Python worker keeps one scorer per
model in predictsql.udfs.spark_cache. The driver never collects DATA. Scored relations are
recomputed, not streamed, so a PREDICT may be read twice.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
import weakref
from functools import partial
from typing import Any, Iterator, Mapping, Sequence

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql.functions import arrow_udf, col
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType
from sqlglot import exp

from predictsql.engine import sessions
from predictsql.engine.binding import OutputRequest, ScoringPlan, bind
from predictsql.engine.errors import BindError, PredictSQLError, from_text
from predictsql.engine.mlflow_registry import MlflowRegistry
from predictsql.engine.sources import ModelSource, Resolve, Resolver, resolve
from predictsql.engine.types import ONNX_TO_ARROW
from predictsql.sql.bind import find_predicts
from predictsql.sql.dialect import DescribeModel, PredictTable, parse, to_sql
from predictsql.sql.plan import PredictCall, Relation
from predictsql.sql.rewrite import inline_variables, map_default_schema, rewrite
from predictsql.udfs import inline, script, spark_cache

DIALECT = "spark"
_variables: "weakref.WeakKeyDictionary[SparkSession, dict[str, object]]" = weakref.WeakKeyDictionary()
_broadcasts: dict[tuple[str, str], Any] = {}
ARROW_BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
SCORES = "__predictsql_scores"  # the struct column holding a PREDICT's outputs, never visible to queries


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


def sql(spark: SparkSession, text: str, params: Mapping[str, object] | None = None, registry_uri: str | None = None) -> DataFrame | None:
    """Run a script; return the (lazy) DataFrame of the last query, else None.

    DECLARE'd variables persist on the SparkSession. Statements that write (INSERT, CTAS) run
    now; a query's scoring runs when the DataFrame is acted on (wrap actions in `errors()`).
    models:/ URIs resolve against `registry_uri` (default: MLFLOW_TRACKING_URI) when a statement
    is planned, so a lazy DataFrame keeps that version even if the alias moves.
    """
    variables = {**_variables.setdefault(spark, {}), **script.params(params)}
    lookups = MlflowRegistry(registry_uri).lookups
    result = None
    for statement in parse(text):
        planner = Planner(spark, variables, Resolver(lookups))  # one per statement: a URI names one version throughout
        if isinstance(statement, DescribeModel):
            table = script.describe_model(statement, variables, planner.run_query, planner.resolve, sessions.SessionOptions())
            result = spark.createDataFrame(table)
            continue
        if isinstance(statement, exp.Declare):
            script.declare(statement, variables, planner.run_query)
            _variables[spark].update({k: variables[k] for k in script.declared(statement)})
            continue
        statement = map_default_schema(statement, spark.catalog.databaseExists)
        if isinstance(statement, exp.Create) and str(statement.args.get("kind")).upper() == "VIEW" and statement.find(PredictTable):
            spark.sql(planner.plan(statement.expression)).createOrReplaceTempView(statement.this.name)
            continue
        with errors():
            frame = spark.sql(planner.plan(statement))
        if isinstance(statement, exp.Query):
            result = frame
    return result


def register(spark: SparkSession, name: str, model: bytes | str, outputs: Sequence[str] | None = None, registry_uri: str | None = None) -> Any:
    """Make `name(...)` callable from Spark SQL; arguments bind by position to the model's inputs.

    The argument order is the model's input order, with a [N,k] input expanded into the column
    names its metadata records (predictsql.export writes them): `argument_names(model)` tells it.
    One output returns a scalar, several a STRUCT; default: every output, classes expanded.
    """
    source = resolve(model, f"'{name}'", MlflowRegistry(registry_uri).lookups)
    loaded = sessions.load(source)
    arguments = _arguments(loaded)
    requested = [OutputRequest(o) for o in outputs] if outputs else None
    plan = bind(pa.schema(arguments), loaded, requested)
    function = _scoring_udf(spark, source, plan, requested, struct=len(plan.outputs) > 1)
    spark.udf.register(name, function)
    return function


def argument_names(model: sessions.Model) -> list[str]:
    """The positional arguments of a registered model function, in order."""
    return [field.name for field in _arguments(model)]


def _arguments(model: sessions.Model) -> list[pa.Field]:
    """One field per positional argument: each input's columns (a [N,k] input expanded), its type."""
    signature = model.signature
    return [
        pa.field(column, ONNX_TO_ARROW[spec.elem_type])
        for spec in signature.inputs
        for column in signature.input_columns.get(spec.name, [spec.name])
    ]


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Re-raise a predictsql error that failed a Spark job in a worker as itself, not as a Py4J stack."""
    try:
        yield
    except PredictSQLError:
        raise
    except Exception as e:
        error = from_text(str(e))
        if error is None:
            raise
        raise error from None


class Planner:
    """Binds a statement's PREDICTs on the driver and registers each scored relation as a temp view."""

    def __init__(self, spark: SparkSession, variables: Mapping[str, object], resolve: Resolve) -> None:
        self.spark = spark
        self.variables = variables
        self.resolve = resolve
        self._prefix = f"__predictsql_{uuid.uuid4().hex[:8]}"
        self._count = 0

    def plan(self, tree: exp.Expression) -> str:
        return self._rewrite(tree).sql(dialect=DIALECT)

    def _rewrite(self, tree: exp.Expression) -> exp.Expression:
        calls = find_predicts(tree)
        relations = {call.index: self._bind(call) for call in calls}
        return rewrite(tree, relations, self.variables)

    def run_query(self, query: exp.Query) -> list[tuple]:
        rows = self.spark.sql(inline_variables(query.copy(), self.variables).sql(dialect=DIALECT)).take(2)
        return [tuple(bytes(v) if isinstance(v, bytearray) else v for v in row) for row in rows]

    def _bind(self, call: PredictCall) -> Relation:
        source = script.model_source(call, self.variables, self.run_query, self.resolve)
        model = sessions.load(source)
        data_tree = self._rewrite(call.data)
        try:
            data = self.spark.sql(data_tree.sql(dialect=DIALECT))
        except Exception as e:  # pyspark's AnalysisException
            raise BindError(f"PREDICT DATA {to_sql(call.data)} ({call.label}) fails: {str(e).splitlines()[0]}") from e
        plan = script.scoring_plan(call, to_arrow_schema(data.schema), model)
        self._count += 1
        name = f"{self._prefix}_{self._count}"
        query, _ = inline.inline_query(call, data_tree, plan, DIALECT)
        if query is not None:  # INLINE: Spark computes the scores itself, no Python worker involved
            return script.relation(name, plan, query)
        scorer = _scoring_udf(self.spark, source, plan, script.requested(call), struct=True).asNondeterministic()  # see the module docstring
        scored = data.select("*", scorer(*map(_column, _input_names(plan))).alias(SCORES))
        outputs = [col(SCORES).getField(o.field).alias(o.field) for o in plan.outputs]
        scored.select(*map(_column, data.columns), *outputs).createOrReplaceTempView(name)
        return script.relation(name, plan)


def _scoring_udf(spark: SparkSession, source: ModelSource, plan: ScoringPlan, requested: Sequence[OutputRequest] | None, struct: bool) -> Any:
    """An iterator Arrow UDF over the plan's input columns returning its one output, or a STRUCT of its outputs."""
    fields = from_arrow_schema(pa.schema([pa.field(o.field, o.arrow_type) for o in plan.outputs])).fields
    body = partial(spark_cache.score_batches, _broadcast(spark, source), source.sha256, source.label, _input_names(plan), requested, plan.nulls, [f.name for f in fields] if struct else None)

    def score(batches: Iterator[tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        """The type hints are how arrow_udf knows an iterator UDF (a partial has none)."""
        return body(batches)

    return arrow_udf(score, StructType(fields) if struct else fields[0].dataType)


def _input_names(plan: ScoringPlan) -> list[str]:
    """The DATA columns the model reads, in DATA order: the scoring UDF's arguments."""
    return [plan.data_schema.field(i).name for i in sorted({i for feed in plan.inputs for i in feed.columns})]


def _column(name: str) -> Column:
    """A top-level column by its exact name, even one with dots or backticks."""
    return col("`" + name.replace("`", "``") + "`")


def _broadcast(spark: SparkSession, source: ModelSource) -> Any:
    """One broadcast of a model's bytes per Spark application."""
    key = (spark.sparkContext.applicationId, source.sha256)
    if key not in _broadcasts:
        _broadcasts[key] = spark.sparkContext.broadcast(source.data)
    return _broadcasts[key]
