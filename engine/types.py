"""Types flow through one centre, Arrow: ONNX tensor types, SQL type names and casts between them."""

from __future__ import annotations

from enum import Enum

import numpy as np
import pyarrow as pa

ONNX_TO_ARROW: dict[str, pa.DataType] = {
    "float": pa.float32(),
    "double": pa.float64(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}

# SQL names accepted in WITH (...) (sqlglot's DataType names) and printed in CAST suggestions.
SQL_TO_ARROW: dict[str, pa.DataType] = {
    "FLOAT": pa.float32(),
    "REAL": pa.float32(),
    "DOUBLE": pa.float64(),
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INT": pa.int32(),
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
    "BIT": pa.bool_(),
    "VARCHAR": pa.string(),
    "NVARCHAR": pa.string(),
    "CHAR": pa.string(),
    "NCHAR": pa.string(),
    "TEXT": pa.string(),
}

ARROW_TO_SQL: dict[pa.DataType, str] = {
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint32(): "UINTEGER",
    pa.uint64(): "UBIGINT",
    pa.bool_(): "BOOLEAN",
    pa.string(): "VARCHAR",
}


class Cast(Enum):
    """How a DATA column reaches a model input."""

    NONE = "none"  # same type
    EXACT = "exact"  # widening that cannot lose anything (int16 → float32, float32 → float64)
    CHECKED = "checked"  # widening that is exact for most values; each value is checked (int64 → float32)
    ROUNDING = "rounding"  # float64 → float32, as skl2onnx-exported float models expect


def onnx_elem_type(type_str: str) -> str:
    """'tensor(float)' → 'float'."""
    return type_str[len("tensor(") : -1] if type_str.startswith("tensor(") else type_str


def sql_name(arrow_type: pa.DataType) -> str:
    """The SQL spelling of an Arrow type, for messages and CAST suggestions."""
    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return f"{sql_name(arrow_type.value_type)}[]"
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision},{arrow_type.scale})"
    return ARROW_TO_SQL.get(normalize(arrow_type), str(arrow_type).upper())


def normalize(arrow_type: pa.DataType) -> pa.DataType:
    """Treat every string layout (large, view, dictionary of strings) as plain string."""
    if pa.types.is_dictionary(arrow_type):
        return normalize(arrow_type.value_type)
    if pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return pa.string()
    return arrow_type


def input_cast(source: pa.DataType, target: pa.DataType) -> Cast | None:
    """The implicit cast from a DATA column type to a model input type, or None when none is safe."""
    source = normalize(source)
    if source == target:
        return Cast.NONE
    if pa.types.is_boolean(source) and (pa.types.is_floating(target) or pa.types.is_integer(target)):
        return Cast.EXACT  # False 0, True 1, as the libraries read a bool column
    if pa.types.is_floating(target):
        if pa.types.is_floating(source):
            return Cast.EXACT if source.bit_width < target.bit_width else Cast.ROUNDING
        if pa.types.is_decimal(source):  # DuckDB types 1.5 DECIMAL; skl2onnx models expect it rounded to float
            return Cast.ROUNDING
        if pa.types.is_integer(source):
            mantissa = 24 if target == pa.float32() else 53
            return Cast.EXACT if source.bit_width < mantissa else Cast.CHECKED
        return None
    if pa.types.is_integer(target) and pa.types.is_integer(source):
        if pa.types.is_signed_integer(target) == pa.types.is_signed_integer(source):
            return Cast.EXACT if source.bit_width <= target.bit_width else Cast.CHECKED
        return Cast.CHECKED
    return None


def output_cast_allowed(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a model output may be returned as the WITH type (numeric ↔ numeric but never dropping a fraction, anything → text)."""
    if source == target or target == pa.string():
        return True
    if pa.types.is_floating(source) and not pa.types.is_floating(target):
        return False
    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    return any(f(source) for f in numeric) and any(f(target) for f in numeric)


def numpy_dtype(arrow_type: pa.DataType) -> np.dtype:
    """The numpy dtype onnxruntime expects for an input of this Arrow type."""
    if arrow_type == pa.string():
        return np.dtype(object)
    return np.dtype(arrow_type.to_pandas_dtype())
