"""Predicate pushdown: filter DATA before it is scored.

PREDICT scores row by row, so a PREDICT filtered on its DATA columns equals the PREDICT of the filtered DATA. A
conjunct of a SELECT's WHERE moves below the PREDICT it stands over when it reads DATA columns only, written with
the DATA alias (`d.age > 60` for `DATA = patients AS d`: a `p.` column might be an output), or unqualified where no
other column can be meant: the PREDICT is the statement's outermost SELECT's only source, its WITH names every
output, and the column is neither one of them nor an alias of the SELECT list (`WHERE age > 60`, as Synapse users
write it). Moving keeps SQL's meaning:
- the PREDICT is not on the null-supplying side of an outer join (a WHERE there also removes null-extended rows),
  nor sampled or pivoted (TABLESAMPLE and PIVOT after it, and DuckDB's SELECT-level USING SAMPLE, act before the
  WHERE), nor in a SELECT with a POSITIONAL or ASOF join (they pair rows by position or by nearest key, so removing
  DATA rows first re-pairs the others);
- the conjunct has no subquery, aggregate, window, or volatile or unknown function (random(), a UDF).
A conjunct of a JOIN's ON moves likewise when the PREDICT is the join's right side of an inner or LEFT join.
The conjuncts are kept on the PREDICT node (`pushed`); reading DATA (sql/bind.py) wraps it in their filter, so
rows the WHERE removes are never scored (a NULL input there raises nothing) and every plan reads fewer rows.
"""

from __future__ import annotations

from typing import TypeVar

from sqlglot import exp

from predictsql.sql.bind import data_alias
from predictsql.sql.dialect import PredictTable

E = TypeVar("E", bound=exp.Expr)
_VOLATILE = frozenset({"RANDOM", "RAND", "UUID", "GEN_RANDOM_UUID", "NEXTVAL", "CURRVAL", "SETSEED", "MONOTONICALLY_INCREASING_ID", "SPARK_PARTITION_ID", "INPUT_FILE_NAME", "SHUFFLE", "NEWID"})
_PAIRING = frozenset({"POSITIONAL", "ASOF"})  # joins that pair rows by position or nearest key: filtering first re-pairs them
_BLOCKERS = (exp.Subquery, exp.Query, exp.Exists, exp.AggFunc, exp.Window, exp.Star)  # and volatile or unknown functions: calls_volatile


def push_predicates(tree: E, _context: object = None) -> E:
    """Move each qualifying conjunct below its PREDICT (see the module docstring); edits `tree` in place."""
    for node in list(tree.find_all(PredictTable)):
        table, data = node.parent, node.args["data"]
        alias = data_alias(data).lower()
        if not isinstance(table, exp.Table) or not alias or (table.alias or "").lower() == alias or table.args.get("sample") or table.args.get("pivots"):
            continue  # a TABLESAMPLE samples, a PIVOT reshapes, the PREDICT's rows before the WHERE reads them
        position = table.parent
        if not isinstance(position, (exp.From, exp.Join)) or not isinstance(position.parent, exp.Select):
            continue
        select = position.parent
        if select.args.get("sample") or any((j.method or "").upper() in _PAIRING for j in select.args.get("joins") or []):
            continue
        alone = isinstance(position, exp.From) and not select.args.get("joins") and select.parent_select is None and not select.find_ancestor(exp.Subquery)
        outputs = {c.name.lower() for c in node.args.get("columns") or []} if alone else set()
        outputs |= {e.alias.lower() for e in select.expressions if e.alias} if outputs else set()  # WHERE may name a SELECT alias (DuckDB)
        moved = []
        if not _nullable(select, position):
            moved += _take(select, "where", alias, outputs)
        if isinstance(position, exp.Join) and (position.side or "").upper() in ("", "LEFT") and (position.kind or "").upper() in ("", "INNER"):
            moved += _take(position, "on", alias, set())
        if moved:
            node.set("pushed", [*(node.args.get("pushed") or []), *moved])
    return tree


def _nullable(select: exp.Select, position: exp.From | exp.Join) -> bool:
    """Whether an outer join can null-extend the source at `position` (then its WHERE cannot move below it)."""
    joins = select.args.get("joins") or []
    later = joins if isinstance(position, exp.From) else joins[next(i for i, j in enumerate(joins) if j is position) + 1 :]
    own = "" if isinstance(position, exp.From) else (position.side or "").upper()
    return own in ("LEFT", "FULL") or any((j.side or "").upper() in ("RIGHT", "FULL") for j in later)


def _take(owner: exp.Expr, key: str, alias: str, outputs: set[str]) -> list[exp.Expr]:
    """Remove from owner's WHERE / ON the conjuncts that read only `alias`'s columns (or, when `outputs` names every
    output, unqualified columns not among them); return them."""
    clause = owner.args.get(key)
    condition = clause.this if isinstance(clause, exp.Where) else clause
    if condition is None:
        return []
    conjuncts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    moved = [c for c in conjuncts if _reads_only(c, alias, outputs)]
    if not moved:
        return []
    kept = [c for c in conjuncts if not any(c is m for m in moved)]
    rest = exp.and_(*[c.copy() for c in kept]) if kept else None
    if key == "where":
        owner.set("where", exp.Where(this=rest) if rest is not None else None)
    else:
        owner.set("on", rest if rest is not None else exp.true())
    return [m.copy() for m in moved]


def _reads_only(condition: exp.Expr, alias: str, outputs: set[str]) -> bool:
    columns = list(condition.find_all(exp.Column))
    data = [c.table.lower() == alias or (outputs and not c.table and c.name.lower() not in outputs) for c in columns]
    if not columns or not all(data) or any(c.args.get("db") for c in columns):
        return False
    if any(isinstance(n, _BLOCKERS) for n in condition.walk()):
        return False
    return not calls_volatile(condition)


def calls_volatile(tree: exp.Expr) -> bool:
    """Whether the tree calls a function whose value may change from call to call: random(), or one sqlglot does not
    know (nextval(), a UDF)."""
    return any(isinstance(n, exp.Anonymous) or (isinstance(n, exp.Func) and n.sql_name().upper() in _VOLATILE) for n in tree.walk())
