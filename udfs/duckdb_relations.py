"""DuckDB relations kept by their SQL text, so a kept plan's statement and its DATA checks skip binding at creation.

`con.sql` of a query binds it to make a lazy relation, and every read of that relation parses, binds and runs its text
again, with the settings and catalog of that moment; its `.columns` and `.types` are bound again after any statement
that may change what a name reads (DuckDB keeps a catalog version, shared by the database's connections). So a
relation kept by its text reads as a fresh `con.sql` of that text does, without the bind at creation (1.2 ms of a warm
1-row PREDICT's statement, 0.5 ms of its DATA check). Only such relations are kept: not one DuckDB ran at once (a
statement that writes, a SELECT that draws nextval: its rows are fixed), nor one that captured a Python object by name.
"""

from __future__ import annotations

from collections import OrderedDict

import duckdb

ENTRIES = 128  # texts kept per connection (a kept plan's statement and its DATA checks); the least recently used go first
LAZY = "QUERY_RELATION"  # DuckDB's type of a relation that runs its text at each read


class Relations:
    """An LRU of lazy relations on one connection, by SQL text; a text that makes no lazy relation is not kept."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._kept: OrderedDict[str, duckdb.DuckDBPyRelation] = OrderedDict()

    def get(self, sql: str) -> duckdb.DuckDBPyRelation:
        """The relation of a query, kept from an earlier call or made now (and kept when it is lazy)."""
        relation = self._kept.get(sql)
        if relation is not None:
            self._kept.move_to_end(sql)
            return relation
        relation = self._con.sql(sql)
        if relation.type == LAZY and relation.sql_query() == sql:  # another text: it reads a captured Python object
            self._kept[sql] = relation
            if len(self._kept) > ENTRIES:
                self._kept.popitem(last=False)
        return relation

    def clear(self) -> None:
        self._kept.clear()
