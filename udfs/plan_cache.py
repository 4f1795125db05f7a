"""Plans kept per connection, so a statement run again skips binding, rendering and SQL generation.

A plan is kept only when it is pure SQL whose meaning the key and a schema check pin down: every PREDICT is INLINE,
none is nested, and every MODEL is bytes given in the statement or a variable (not a subquery, a path or a URI,
whose model may change under the same text). The key is the statement as planned (stored views expanded, `dbo.`
mapped) with every variable's value; a kept plan is used again only if each DATA query still has the Arrow schema
it was bound to, so an altered or replaced table binds afresh.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from predictsql.engine.errors import PredictSQLError

ENTRIES = 64  # statements kept per connection; the least recently used go first


@dataclass(frozen=True)
class Kept:
    """A planned statement, the errors its SQL may raise (by key), and the DATA schemas it was bound to."""

    planned: Any  # planner.Planned
    failures: Mapping[str, PredictSQLError]
    probes: tuple[tuple[str, pa.Schema], ...]


class PlanCache:
    """An LRU of Kept plans; `stats` counts hits and misses (tests read them)."""

    def __init__(self) -> None:
        self._kept: OrderedDict[Hashable, Kept] = OrderedDict()
        self.stats = {"hits": 0, "misses": 0}

    def get(self, key: Hashable | None, schema: Callable[[str], pa.Schema]) -> Kept | None:
        """The plan kept under `key` if every DATA query still has its schema (`schema` probes one), else None."""
        kept = self._kept.get(key) if key is not None else None
        if kept is not None and _unchanged(kept, schema):
            self._kept.move_to_end(key)
            self.stats["hits"] += 1
            return kept
        self.stats["misses"] += 1
        return None

    def put(self, key: Hashable, kept: Kept) -> None:
        self._kept[key] = kept
        self._kept.move_to_end(key)
        while len(self._kept) > ENTRIES:
            self._kept.popitem(last=False)


def key(statement_sql: str, variables: Mapping[str, object]) -> Hashable | None:
    """The statement with its variables' values; None when a value cannot be a key (then nothing is kept)."""
    try:
        values = tuple(sorted((name, _frozen(value)) for name, value in variables.items()))
        hash(values)
    except TypeError:
        return None
    return statement_sql, values


def _frozen(value: object) -> object:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def _unchanged(kept: Kept, schema: Callable[[str], pa.Schema]) -> bool:
    try:
        return all(schema(sql) == bound for sql, bound in kept.probes)
    except Exception:  # DATA no longer binds: plan afresh, which raises the proper error
        return False
