"""Kept plans' queries held as DuckDB prepared statements, so a query run again skips DuckDB's parsing and planning.

Only a kept plan used again runs prepared (udfs/plan_cache.py has checked that DATA still binds as it did; DuckDB
itself rebinds a prepared statement whose tables changed). What a plan prepared goes (DEALLOCATE) when the plan cache
replaces or evicts the plan. Only SELECTs are prepared: a write's cost is the write, and DuckDB answers EXECUTE of a
write with a Count row the statement's own text would not.
"""

from __future__ import annotations

import contextlib
import itertools

import duckdb

from predictsql.udfs.plan_cache import Kept
from predictsql.udfs.planner import Planned


class PreparedQueries:
    """One DuckDB connection's prepared statements, by the SQL they were prepared from (None: not preparable)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._names: dict[str, str | None] = {}
        self._count = itertools.count()

    def sql(self, planned: Planned) -> str:
        """What to run for a planned statement: EXECUTE of its prepared form when its plan was kept, else its own SQL."""
        if not planned.kept:
            return planned.sql
        if planned.sql not in self._names:
            if duckdb.extract_statements(planned.sql)[-1].type != duckdb.StatementType.SELECT:
                self._names[planned.sql] = None
                return planned.sql
            prepared = f"__predictsql_prepared_{next(self._count)}"
            try:
                self.con.execute(f"PREPARE {prepared} AS {planned.sql}").fetchall()
            except duckdb.Error:  # e.g. an aborted transaction: run the SQL itself, which says what is wrong
                return planned.sql
            self._names[planned.sql] = prepared
        name = self._names[planned.sql]
        return planned.sql if name is None else f"EXECUTE {name}"

    def drop(self, kept: Kept) -> None:
        """Deallocate what a plan the cache no longer keeps prepared (two keys planned to one text prepare it again)."""
        name = self._names.pop(kept.planned.sql, None)
        if name is not None:
            with contextlib.suppress(duckdb.Error):  # an aborted transaction refuses it; the name is never used again
                self.con.execute(f"DEALLOCATE {name}").fetchall()
