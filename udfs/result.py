"""The rows a predictsql statement returns on DuckDB: fully computed (so a failure never leaves partial rows), and
read the ways a DuckDB relation is read (.arrow(), .df(), .pl(), .fetchall(), .fetchnumpy(), .show(), print)."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from predictsql.engine.errors import PredictSQLError


class Result:
    """A statement's rows; printing it shows them as DuckDB prints a relation."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    @property
    def columns(self) -> list[str]:
        return self._table.column_names

    def arrow(self) -> pa.Table:
        return self._table

    def df(self) -> Any:
        return self._table.to_pandas()

    def pl(self) -> Any:
        """A polars DataFrame (polars must be installed)."""
        try:
            import polars
        except ImportError:
            raise PredictSQLError("Result.pl() needs polars: pip install polars") from None
        return polars.from_arrow(self._table)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(zip(*(c.to_pylist() for c in self._table.columns), strict=True))

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._table.slice(0, 1)
        return next(iter(zip(*(c.to_pylist() for c in rows.columns), strict=True)), None)

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        """One numpy array per column, as DuckDB's fetchnumpy() gives them."""
        return {name: column.to_numpy() for name, column in zip(self.columns, self._table.columns, strict=True)}

    def show(self) -> None:
        print(self)

    def __len__(self) -> int:
        return self._table.num_rows

    def __str__(self) -> str:
        return str(duckdb.connect().from_arrow(self._table))

    def __repr__(self) -> str:
        return str(self)
