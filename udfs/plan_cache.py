"""Plans kept per connection, so a statement run again skips binding, rendering and SQL generation.

A plan is kept only when its meaning the key and a schema check pin down: every PREDICT is INLINE or a UDF whose
scoring function the engine keeps registered with it, none is nested, and every MODEL is bytes given in the statement
or a variable (not a subquery, a path or a URI, whose model may change under the same text). A kept plan's `release`
removes its functions when the plan is dropped, replaced or pushed out. The key is the statement as planned (stored views expanded, `dbo.`
mapped) and the session options, with every variable's value; a kept plan is used again only if each DATA query still
has the column names and engine types it was bound to, so an altered or replaced table binds afresh.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from predictsql.engine.errors import PredictSQLError
from predictsql.sql.statements import Variables

ENTRIES = 64  # statements kept per connection; the least recently used go first
Columns = tuple[tuple[str, str], ...]  # a query's column names and engine types


@dataclass(frozen=True)
class Kept:
    """A planned statement, the errors its SQL may raise (by key), each DATA query's columns when it was bound, and
    what removes the scoring functions it keeps registered."""

    planned: Any  # planner.Planned
    failures: Mapping[str, PredictSQLError]
    probes: tuple[tuple[str, Columns], ...]
    release: Callable[[], None] | None = None  # None: it keeps no function


class PlanCache:
    """An LRU of Kept plans; `stats` counts hits and misses (tests read them). Threads may share one (a SparkSession's):
    each change holds a lock, while binding a DATA query to check a plan and removing functions do not."""

    def __init__(self) -> None:
        self._kept: OrderedDict[Hashable, Kept] = OrderedDict()
        self._texts: OrderedDict[int, tuple[object, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = {"hits": 0, "misses": 0}

    def text(self, tree: object, render: Callable[[Any], str]) -> str:
        """A statement tree's SQL, kept by the tree's identity: a script read again shares its trees, which nothing
        changes (sql/reading.py), so each renders once (0.14 ms of a warm 1-row PREDICT); the entry holds the tree,
        so its id is not reused while kept."""
        with self._lock:
            entry = self._texts.get(id(tree))
        if entry is None or entry[0] is not tree:
            entry = (tree, render(tree))
        with self._lock:
            self._texts[id(tree)] = entry
            self._texts.move_to_end(id(tree))
            if len(self._texts) > ENTRIES:
                self._texts.popitem(last=False)
        return entry[1]

    def get(self, key: Hashable | None, columns: Callable[[str], Columns]) -> Kept | None:
        """The plan kept under `key` if every DATA query still has its columns (`columns` binds one), else None."""
        with self._lock:
            kept = self._kept.get(key) if key is not None else None
        held = kept is not None and _unchanged(kept, columns)
        with self._lock:
            self.stats["hits" if held else "misses"] += 1
            if held and key in self._kept:
                self._kept.move_to_end(key)
        if kept is not None and not held:  # it no longer holds: its functions go now, whatever the new plan is
            self._drop(key, kept)
        return kept if held else None

    def put(self, key: Hashable, kept: Kept) -> None:
        with self._lock:
            replaced = self._kept.pop(key, None)
            self._kept[key] = kept
            evicted = [self._kept.popitem(last=False)[1] for _ in range(len(self._kept) - ENTRIES)]
        for old in ([replaced] if replaced is not None else []) + evicted:
            _release(old)

    def clear(self) -> None:
        """Forget every plan and remove their functions (a connection closing: DuckDB would keep them registered)."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), OrderedDict()
        for old in kept:
            _release(old)

    def drop(self, key: Hashable) -> None:
        """Forget the plan kept under `key`, if any, and remove its scoring functions."""
        self._drop(key, None)

    def _drop(self, key: Hashable, only: Kept | None) -> None:
        """Forget the plan under `key` (only if it is `only`, when given: another thread may have kept a new one)."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None or (only is not None and kept is not only):
                return
            del self._kept[key]
        _release(kept)


def key(statement: Hashable, variables: Variables) -> Hashable | None:
    """The statement with its variables' values and declared types; None when a value cannot be a key (then nothing is kept)."""
    try:
        values = tuple(sorted((name, _frozen(value)) for name, value in variables.items()))
        hash(values)
    except TypeError:
        return None
    return statement, values, tuple(sorted((name, to.sql()) for name, to in variables.types.items()))


def _release(kept: Kept) -> None:
    if kept.release is not None:
        kept.release()


def _frozen(value: object) -> object:
    """A value as part of a key, with its type: True, 1, 1.0 and Decimal('1') are equal in Python but not as SQL literals."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, bytearray | memoryview):
        return bytes, bytes(value)
    return type(value), value


def _unchanged(kept: Kept, columns: Callable[[str], Columns]) -> bool:
    try:
        return all(columns(sql) == bound for sql, bound in kept.probes)
    except Exception:  # DATA no longer binds: plan afresh, which raises the proper error
        return False
