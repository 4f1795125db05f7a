"""The rows a predictsql statement returns on DuckDB: fully computed (so a failure never leaves partial rows), and
read the ways a DuckDB relation is read (.arrow(), .df(), .pl(), .fetchall(), .fetchnumpy(), .show(), print).

The rows are held as DuckDB's Arrow export. Where that export is not what DuckDB reads back (a UUID, JSON or ENUM as
VARCHAR, a HUGEINT as DECIMAL) or pyarrow's Python values are not DuckDB's (an INTERVAL, a MAP), the Python reads go
through DuckDB reading the Arrow rows, each such column cast back to the statement's type; else pyarrow reads them.
A BIT or TIMETZ column cannot be cast back: DuckDB's export keeps only its bytes, or drops the offset.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from predictsql.engine.errors import PredictSQLError


class Result:
    """A statement's rows; printing it shows them as DuckDB prints a relation."""

    def __init__(self, table: pa.Table, types: Sequence[str] | None = None) -> None:
        """`types`: the statement's DuckDB types, where the rows came from a DuckDB statement."""
        self._table = table
        self._types = types

    @property
    def columns(self) -> list[str]:
        return self._table.column_names

    def arrow(self) -> pa.Table:
        return self._table

    @functools.cached_property
    def _relation(self) -> duckdb.DuckDBPyRelation | None:
        """The rows as DuckDB reads them back, each column whose type the export changed cast back; None where pyarrow's
        reads are DuckDB's."""
        if not _read_by_duckdb(tuple(self._types or ()), self._table.schema):
            return None
        read = _reader().cursor().from_arrow(self._table)
        back = [str(t) for t in read.types]
        types = self._types or back
        quoted = ['"' + name.replace('"', '""') + '"' for name in read.columns]
        items = [q if was == now or was in _LOST else f"CAST({q} AS {was}) AS {q}" for q, was, now in zip(quoted, types, back, strict=True)]
        try:
            return read.project(", ".join(items)) if items != quoted else read
        except duckdb.Error:  # a type DuckDB cannot cast its export back to: as exported
            return read

    def df(self) -> Any:
        return self._table.to_pandas() if self._relation is None else self._relation.df()

    def pl(self) -> Any:
        """A polars DataFrame (polars must be installed)."""
        try:
            import polars
        except ImportError:
            raise PredictSQLError("Result.pl() needs polars: pip install polars") from None
        return polars.from_arrow(self._table)

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self._relation is not None:
            return self._relation.fetchall()
        return list(zip(*(c.to_pylist() for c in self._table.columns), strict=True))

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._relation is not None:
            return next(iter(self._relation.limit(1).fetchall()), None)
        rows = self._table.slice(0, 1)
        return next(iter(zip(*(c.to_pylist() for c in rows.columns), strict=True)), None)

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        """One numpy array per column, as DuckDB's fetchnumpy() gives them."""
        if self._relation is not None:
            return self._relation.fetchnumpy()
        return {name: column.to_numpy() for name, column in zip(self.columns, self._table.columns, strict=True)}

    def show(self) -> None:
        print(self)

    def __len__(self) -> int:
        return self._table.num_rows

    def __str__(self) -> str:
        return str(self._relation if self._relation is not None else _reader().cursor().from_arrow(self._table))

    def __repr__(self) -> str:
        return str(self)


_LOST = ("BIT", "TIME WITH TIME ZONE")  # exported as bytes or without the offset: nothing to cast back


@functools.lru_cache(maxsize=256)
def _read_by_duckdb(types: tuple[str, ...], schema: pa.Schema) -> bool:
    """Whether rows of this schema, exported from a statement of these DuckDB types (none: not from a statement), are read
    through DuckDB: DuckDB reads another type back, or pyarrow's Python values are not DuckDB's (asked once per schema)."""
    back = [str(t) for t in _reader().cursor().from_arrow(schema.empty_table()).types]
    return (bool(types) and back != list(types)) or any(_unlike_duckdb(t) for t in schema.types)


def _unlike_duckdb(arrow_type: pa.DataType) -> bool:
    """Whether pyarrow's Python value of the type differs from DuckDB's: an interval (MonthDayNano, not timedelta) or a
    map ((key, value) pairs, not a dict), at any depth."""
    if pa.types.is_interval(arrow_type) or pa.types.is_map(arrow_type):
        return True
    return any(_unlike_duckdb(arrow_type.field(i).type) for i in range(arrow_type.num_fields))


@functools.cache
def _reader() -> duckdb.DuckDBPyConnection:
    """predictsql's own in-memory DuckDB, whose cursors read Results back (connecting once: it takes milliseconds)."""
    return duckdb.connect()
