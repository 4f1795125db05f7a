"""predictsql: T-SQL's PREDICT for DuckDB and Spark SQL, scored by ONNX Runtime over Arrow batches.

    con = predictsql.connect("shop.duckdb")
    con.sql("SELECT d.*, p.Score FROM PREDICT(MODEL = @m, DATA = customers AS d) WITH (Score FLOAT) AS p",
            params={"m": onnx_bytes}).df()
    predictsql.log_model(estimator, "churn", sample=X, alias="prod")   # then MODEL = 'models:/churn@prod'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from predictsql.engine.errors import PredictSQLError

if TYPE_CHECKING:
    from predictsql.api import argument_names, export, log_model, predict, register
    from predictsql.udfs.duckdb import Connection, Result, connect

__all__ = ["Connection", "PredictSQLError", "Result", "argument_names", "connect", "export", "log_model", "predict", "register"]
__version__ = "0.1.0"
_HOMES = {
    "Connection": "predictsql.udfs.duckdb",
    "Result": "predictsql.udfs.result",
    "connect": "predictsql.udfs.duckdb",
    **dict.fromkeys(("argument_names", "export", "log_model", "predict", "register"), "predictsql.api"),
}


def __getattr__(name: str) -> Any:
    """Import a door on first use: onnx, onnxruntime and duckdb cost a second, which `predictsql --help` need not pay."""
    if name not in _HOMES:
        raise AttributeError(f"module 'predictsql' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
