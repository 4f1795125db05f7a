"""DuckDB relations kept by their SQL text, so a kept plan's statement skips binding at creation.

`con.sql` of a query binds it to make a lazy relation, and every read of that relation parses, binds and runs its text
again, with the settings, catalog, files and Python objects of that moment. So a relation kept by its text reads as a
fresh `con.sql` of that text does, without the bind at creation (1.2 ms of a warm 1-row PREDICT). Only such relations
are kept: not one DuckDB ran at once (a statement that writes, a SELECT that draws nextval: its rows are fixed), nor one
that captured a Python object by name, when it was made or when a later catalog change bound its columns again (it
would read that object ever after).
"""

from __future__ import annotations

from collections import OrderedDict

import duckdb

ENTRIES = 128  # texts kept per connection (kept plans' statements); the least recently used go first
LAZY = "QUERY_RELATION"  # DuckDB's type of a relation that runs its text at each read


class Relations:
    """An LRU of lazy relations on one connection, by SQL text; a text that makes no lazy relation is not kept."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._kept: OrderedDict[str, duckdb.DuckDBPyRelation] = OrderedDict()

    def get(self, sql: str) -> duckdb.DuckDBPyRelation:
        """The relation of a query, kept from an earlier call or made now (and kept when it is lazy)."""
        relation = self._kept.pop(sql, None)
        if relation is None or not _reads_as(relation, sql):
            relation = self._con.sql(sql)
            if relation.type != LAZY or not _reads_as(relation, sql):
                return relation
        self._kept[sql] = relation
        if len(self._kept) > ENTRIES:
            self._kept.popitem(last=False)
        return relation

    def clear(self) -> None:
        self._kept.clear()


def _reads_as(relation: duckdb.DuckDBPyRelation, sql: str) -> bool:
    """Whether the relation still runs the text itself: binding its columns (again, after a catalog change) may capture a
    Python object by name, and then DuckDB runs another text that reads that object."""
    relation.columns  # noqa: B018 - binds again where the catalog changed since
    return relation.sql_query() == sql
