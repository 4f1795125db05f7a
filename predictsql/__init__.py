"""predictsql: T-SQL's PREDICT for DuckDB and Spark SQL, scored by ONNX Runtime over Arrow batches.

    con = predictsql.connect("shop.duckdb")
    con.sql("SELECT d.*, p.Score FROM PREDICT(MODEL = @m, DATA = customers AS d) WITH (Score FLOAT) AS p",
            params={"m": onnx_bytes}).df()
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pyarrow as pa

from predictsql.engine import sessions
from predictsql.engine.binding import OutputRequest, bind
from predictsql.engine.errors import PredictSQLError
from predictsql.engine.export import export
from predictsql.engine.scoring import DEFAULT_BATCH_SIZE, Scorer, score_stream
from predictsql.engine.sources import resolve
from predictsql.udfs.duckdb import Connection, Result, connect

__all__ = ["Connection", "PredictSQLError", "Result", "connect", "export", "predict"]
__version__ = "0.1.0"


def predict(
    model: bytes | str,
    data: Any,
    outputs: Sequence[str] | Mapping[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pa.Table:
    """Score a pyarrow Table / RecordBatch / pandas DataFrame; returns the data plus output columns.

    `outputs` picks outputs like a WITH clause: names, or {name: SQL type}; default all.
    """
    table = _as_table(data)
    loaded = sessions.load(resolve(model, "argument" if isinstance(model, (bytes, bytearray)) else f"'{model}'"))
    requested = None
    if outputs is not None:
        types = outputs if isinstance(outputs, Mapping) else dict.fromkeys(outputs)
        requested = [OutputRequest(name, type_name) for name, type_name in types.items()]
    scorer = Scorer(bind(table.schema, loaded, requested))
    return pa.Table.from_batches(list(score_stream(table.to_batches(max_chunksize=batch_size), scorer)), scorer.schema)


def _as_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "columns") and hasattr(data, "dtypes"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise PredictSQLError(f"predict() takes a pyarrow Table or RecordBatch or a pandas DataFrame, not {type(data).__name__}")
