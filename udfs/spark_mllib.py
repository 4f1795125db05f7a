"""Spark MLlib models scored by Spark itself: a PREDICT whose MODEL is a saved PipelineModel (a directory, or a
`models:/` URI of MLflow's spark flavour, or any MODEL with `RUNTIME = SPARKML`) becomes `pipeline.transform(DATA)`.

Before the statement is planned, each such outermost PREDICT is replaced by a temp view of

    SELECT <DATA columns>, <outputs> FROM pipeline.transform(DATA)

where the outputs are the columns the pipeline adds: by default its last stage's (prediction, probability,
rawPrediction, as that stage names them); with WITH any added column, a vector as an array, `<vector>_<i>` one
of its values, each cast to the WITH type. The view is lazy: Spark scores when the statement's DataFrame runs, in
the same plan as the rest of the statement; the name is dropped once the statement is analysed. DATA may hold ONNX PREDICTs (the planner plans them); an MLlib
PREDICT inside another PREDICT's DATA is not looked for.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_type
from sqlglot import exp

from predictsql.engine.binding import NULLS_ERROR, NULLS_PROPAGATE, check_nulls
from predictsql.engine.errors import BindError, MissingColumnError, UnknownOutputError
from predictsql.engine.mlflow_registry import MlflowRegistry
from predictsql.engine.sources import is_spark_pipeline, uri_scheme
from predictsql.engine.types import SQL_TO_ARROW
from predictsql.sql.bind import find_predicts
from predictsql.sql.plan import QUERY, Output, PredictCall, Relation
from predictsql.sql.rewrite import Context, apply, replace_predicts
from predictsql.udfs import script
from predictsql.udfs.planner import Planner
from predictsql.udfs.spark_export import raw_inputs

SPARKML = "SPARKML"
_OUTPUT_PARAMS = ("predictionCol", "probabilityCol", "rawPredictionCol", "varianceCol", "outputCol")


def is_pipeline_directory(value: object) -> bool:
    """Whether a MODEL value is the folder of a saved Spark ML model (metadata/ and stages/, as PipelineModel.save writes)."""
    if not isinstance(value, str) or uri_scheme(value) is not None:
        return False
    return is_spark_pipeline(Path(value).expanduser())


def replace_pipelines(spark: SparkSession, tree: exp.Expr, planner: Planner, registry: MlflowRegistry, views: list[str]) -> exp.Expr:
    """`tree` with each outermost MLlib PREDICT replaced by its scored temp view (see the module docstring), named in `views`."""
    relations: list[Relation | None] = []
    for call in find_predicts(tree):
        runtime = call.options.get("RUNTIME") == SPARKML
        value = script.model_value(call.model, planner.variables, planner.run_query) if runtime or call.model.kind != QUERY else None
        relations.append(_score(spark, call, value, planner, registry, views) if runtime or is_pipeline_directory(value) else None)
    if not any(relations):
        return tree
    return apply((replace_predicts,), tree, Context(relations=relations))


def _score(spark: SparkSession, call: PredictCall, value: object, planner: Planner, registry: MlflowRegistry, views: list[str]) -> Relation:
    if call.options.get("PLAN", "AUTO") != "AUTO":
        raise BindError(f"PREDICT PLAN = {call.options['PLAN']} ({call.label}) does not apply to a Spark MLlib model, which Spark's own transform scores: leave PLAN out")
    with _pipeline(value, call.label, registry) as (pipeline, label):
        data = spark.sql(planner.plan(call.data).sql)
        inputs = raw_inputs(pipeline)
        missing = [c for c in inputs if c not in data.columns]
        if missing:
            raise MissingColumnError(f"PREDICT input '{missing[0]}' (Spark MLlib model {label}) has no DATA column of that name. DATA columns: {', '.join(data.columns)}")
        nulls = call.options.get("NULLS", NULLS_ERROR)
        check_nulls(nulls, f"Spark MLlib model {label}")
        complete = functools.reduce(lambda a, b: a & b, [F.col(f"`{c}`").isNotNull() for c in inputs], F.lit(True))
        try:
            scored = pipeline.transform(data.where(complete) if nulls == NULLS_PROPAGATE else data)
        except Exception as e:  # AnalysisException, or IllegalArgumentException and others raised through py4j
            raise BindError(f"Spark MLlib model {label} cannot transform DATA: {str(e).splitlines()[0]}") from e
    added = [c for c in scored.columns if c not in data.columns]
    requested = list(call.columns) if call.columns else [(name, None) for name in _last_outputs(pipeline, added)]
    outputs = [_output(scored, added, name, type_name, label) for name, type_name in requested]
    name = f"__predictsql_ml_{uuid.uuid4().hex[:12]}"
    kept = [F.col(f"`{c}`") for c in data.columns]
    result = scored.select(*kept, *outputs)
    if nulls == NULLS_PROPAGATE:  # a row with a NULL input is not transformed: its outputs are NULL, as with ONNX models
        unscored = data.where(~complete).select(*kept, *[F.lit(None).cast(result.schema[n].dataType).alias(n) for n, _ in requested])
        result = result.unionByName(unscored)
    result.createOrReplaceTempView(name)
    views.append(name)
    return Relation(name, tuple(data.columns), tuple(Output(n, n) for n, _ in requested), model=f"Spark MLlib model {label}")


@contextlib.contextmanager
def _pipeline(value: object, label: str, registry: MlflowRegistry) -> Iterator[tuple[PipelineModel, str]]:
    """The PipelineModel a MODEL value names: a saved directory, or a models:/ URI of MLflow's spark flavour."""
    if isinstance(value, str) and uri_scheme(value) == "models":
        with registry.spark_model(value) as (path, pinned):
            yield PipelineModel.load(str(path)), pinned
        return
    if not is_pipeline_directory(value):
        raise BindError(f"MODEL {label} with RUNTIME = SPARKML must be the directory of a saved PipelineModel or a models:/ URI of MLflow's spark flavour")
    yield PipelineModel.load(str(Path(str(value)).expanduser().resolve())), label  # the JVM resolves relative paths from where it started


def _last_outputs(pipeline: PipelineModel, added: Sequence[str]) -> list[str]:
    """The columns the last stage adds (prediction, probability, …), in the order the pipeline's result has them."""
    last = pipeline.stages[-1]
    names = {last.getOrDefault(p) for p in _OUTPUT_PARAMS if last.hasParam(p) and last.isDefined(last.getParam(p))}
    return [c for c in added if c in names] or list(added)


def _output(scored: DataFrame, added: Sequence[str], name: str, type_name: str | None, label: str) -> Column:
    """One WITH column: an added column (a vector as an array) or `<vector>_<i>`, cast to its WITH type."""
    source, index = _source(added, name)
    if source is None:
        raise UnknownOutputError(f"WITH column '{name}' names no column that Spark MLlib model {label} adds; it adds {', '.join(added)} (a vector's values as <name>_0, <name>_1, …)")
    column = F.col(f"`{source}`")
    field = scored.schema[source]
    if index is not None and not isinstance(field.dataType, VectorUDT):
        raise UnknownOutputError(f"WITH column '{name}': {source} of Spark MLlib model {label} is a {field.dataType.simpleString()}, not a vector to pick value {index} of; read it as {source}")
    if isinstance(field.dataType, VectorUDT):
        column = vector_to_array(column)
        if index is not None:
            size = field.metadata.get("ml_attr", {}).get("num_attrs")
            if size is not None and index >= size:
                close = f"{source}_{size - 1}" if size else source
                raise UnknownOutputError(f"WITH column '{name}': {source} of Spark MLlib model {label} holds {size} values ({source}_0 … {close}); did you mean {close}?")
            column = F.element_at(column, index + 1)
    if type_name is not None:
        column = column.cast(_spark_type(type_name, name))
    return column.alias(name)


def _source(added: Sequence[str], name: str) -> tuple[str | None, int | None]:
    exact = next((c for c in added if c.lower() == name.lower()), None)
    if exact is not None:
        return exact, None
    base, _, number = name.rpartition("_")
    match = next((c for c in added if c.lower() == base.lower()), None)
    return (match, int(number)) if match is not None and number.isdigit() else (None, None)


def _spark_type(type_name: str, name: str) -> str:
    """A WITH type as Spark names it, through the Arrow type every WITH type maps to (engine/types.py)."""
    element = SQL_TO_ARROW.get(type_name.removesuffix("[]"))
    if element is None:
        raise BindError(f"WITH column {name} has type {type_name}; use FLOAT, DOUBLE, INT, BIGINT, VARCHAR, BOOLEAN or a list such as DOUBLE[]")
    return from_arrow_type(pa.list_(element) if type_name.endswith("[]") else element).simpleString()
