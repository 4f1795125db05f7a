"""The Python doors of predictsql: predict, export, log_model, register, argument_names (re-exported by the package)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from predictsql.engine import export as exporting
from predictsql.engine import frames, sessions
from predictsql.engine.binding import argument_schema, bind, output_requests
from predictsql.engine.errors import PredictSQLError
from predictsql.engine.mlflow_registry import MlflowRegistry
from predictsql.engine.scoring import DEFAULT_BATCH_SIZE, Scorer, score_stream
from predictsql.engine.sources import ModelSource, Resolver
from predictsql.udfs import duckdb_engine
from predictsql.udfs.duckdb import Connection


def predict(
    model: bytes | str,
    data: Any,
    outputs: str | Sequence[str] | Mapping[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    registry_uri: str | None = None,
    nulls: str = "error",
) -> pa.Table:
    """Score a pyarrow Table / RecordBatch / pandas DataFrame; returns the data plus output columns.

    `outputs` picks outputs like a WITH clause: names, or {name: SQL type}; default all. A NULL (pandas: None,
    pd.NA, NaT; a float NaN stays NaN, as the model's library reads it) is an error, or with nulls='propagate'
    makes that row's outputs NULL, as PREDICT's NULLS option.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise PredictSQLError(f"predict(batch_size={batch_size!r}) must be a positive whole number of rows")
    table = _as_table(data)
    loaded = sessions.load(Resolver(MlflowRegistry(registry_uri).lookups)(model, _label(model)))
    requested = output_requests(outputs, "predict()")
    scorer = Scorer(bind(table.schema, loaded, requested, str(nulls).upper()), propagate="pass nulls='propagate'")
    return pa.Table.from_batches(list(score_stream(table.to_batches(max_chunksize=batch_size), scorer)), scorer.schema)


def export(model: Any, sample: Any = None, outputs: exporting.Outputs = None, columns: exporting.Columns = None) -> bytes:
    """A fitted model as ONNX bytes that PREDICT binds by DATA column name (see engine/export.py); a Spark MLlib
    PipelineModel is converted with a Spark DataFrame `sample` (udfs/spark_export.py)."""
    if type(model).__module__.startswith("pyspark"):
        from predictsql.udfs import spark_export

        return spark_export.export(model, sample, outputs)
    return exporting.export(model, sample, outputs, columns)


def log_model(
    model: Any,
    name: str,
    sample: Any = None,
    alias: str | None = None,
    outputs: exporting.Outputs = None,
    registry_uri: str | None = None,
    columns: exporting.Columns = None,
) -> str:
    """Register a model in MLflow with the onnx flavour and its signature; returns 'models:/name/<version>'.

    `model` is any model `export` takes (exported with `sample`, `outputs` and `columns`), ONNX bytes, an
    onnx.ModelProto or a path (with `columns` recorded when given). `alias` is set to the new version when given. The registry is `registry_uri`
    or MLFLOW_TRACKING_URI; with neither it refuses rather than create ./mlflow.db.
    """
    registry = MlflowRegistry(registry_uri)
    registry.check(create=True)  # before exporting: a model with nowhere to go is refused at once
    if isinstance(model, (str, os.PathLike)) and columns is None:
        data = Resolver(registry.lookups)(model, _label(model)).data  # a file or a URI
    elif isinstance(model, (bytes, bytearray)) and columns is None and not outputs:
        data = bytes(model)
    else:
        data = export(model, sample, outputs, columns)
    loaded = sessions.load(ModelSource(data, f"'{name}'"))  # only a valid ONNX model is logged
    return registry.log_model(data, loaded.signature, name, alias)


def register(con: Any, name: str, model: Any, outputs: str | Sequence[str] | None = None, registry_uri: str | None = None) -> None:
    """Make `name(col, ...)` a function of plain SQL on a predictsql or duckdb connection, or a SparkSession.

    Arguments bind by position, in the model's input order (`argument_names(model)`); one output
    returns a scalar, several a STRUCT; `outputs` picks outputs by name (default: all). `model` is
    bytes, a path or a URI (models:/…; on a predictsql connection also catalog:/…), read once now.
    """
    if type(con).__module__.startswith("pyspark"):
        from predictsql.udfs import spark

        spark.register(con, name, model, outputs, registry_uri)
        return
    if isinstance(con, Connection):
        duckdb_engine.register(con.duckdb, name, con.resolve(model, f"'{name}'"), outputs, con.settings.session_options)
    elif not isinstance(con, duckdb.DuckDBPyConnection):
        raise PredictSQLError(f"register() takes a predictsql connection, a duckdb connection or a SparkSession, not {type(con).__name__}")
    else:
        duckdb_engine.register(con, name, Resolver(MlflowRegistry(registry_uri).lookups)(model, f"'{name}'"), outputs, sessions.SessionOptions())


def argument_names(model: Any, registry_uri: str | None = None) -> list[str]:
    """The positional arguments of `register(con, name, model)`'s function, in order; `model` is bytes, a path or a URI."""
    return argument_schema(sessions.load(Resolver(MlflowRegistry(registry_uri).lookups)(model, _label(model)))).names


def _label(model: Any) -> str:
    return f"'{model}'" if isinstance(model, (str, os.PathLike)) else "argument"


def _as_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "columns") and hasattr(data, "dtypes"):
        return frames.from_pandas(data, "predict()")
    raise PredictSQLError(f"predict() takes a pyarrow Table or RecordBatch or a pandas DataFrame, not {type(data).__name__}")
