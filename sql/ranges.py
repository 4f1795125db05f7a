"""What the conjuncts pushed below a PREDICT prove about its DATA columns: a closed interval per column.

A row reaches the model only if every pushed conjunct holds, so `d.x < 5 AND d.x >= 1` bounds what the model
sees of x to [1, 5], and a tree ensemble may drop the branches no such row can take (engine/trees.py). Only
comparisons of a DATA column with a number are read (<, <=, >, >=, =, BETWEEN, IN of numbers); anything else
proves nothing and is ignored. Intervals are closed (x < 5 gives [-inf, 5]): a bound loses at most the point
itself. NaN, which DuckDB and Spark order above every number, passes a lower bound alone (x > 5) but no upper
bound, so an interval whose upper end is +inf admits NaN.
"""

from __future__ import annotations

import math

from sqlglot import exp

Interval = tuple[float, float]
_UPPER = {exp.LT: True, exp.LTE: True, exp.GT: False, exp.GTE: False}  # column on the left: True when it bounds from above


def column_ranges(conjuncts: list[exp.Expr]) -> dict[str, Interval]:
    """Each column a conjunct bounds (lower-cased name), with the intersection of its bounds."""
    ranges: dict[str, Interval] = {}
    for condition in conjuncts:
        found = _bound(condition.unnest())
        if found is not None:
            name, (low, high) = found
            old_low, old_high = ranges.get(name, (-math.inf, math.inf))
            ranges[name] = (max(low, old_low), min(high, old_high))
    return ranges


def _bound(condition: exp.Expr) -> tuple[str, Interval] | None:
    if isinstance(condition, exp.Between):
        column, low, high = _column(condition.this), _number(condition.args["low"]), _number(condition.args["high"])
        return (column, (low, high)) if column and low is not None and high is not None else None
    if isinstance(condition, exp.In) and not condition.args.get("query"):
        column, values = _column(condition.this), [_number(v) for v in condition.expressions]
        numbers = [v for v in values if v is not None]
        return (column, (min(numbers), max(numbers))) if column and numbers and len(numbers) == len(values) else None
    if isinstance(condition, exp.EQ):
        for left, right in ((condition.this, condition.expression), (condition.expression, condition.this)):
            column, value = _column(left), _number(right)
            if column and value is not None:
                return column, (value, value)
        return None
    for kind, upper in _UPPER.items():
        if isinstance(condition, kind):
            for left, right, above in ((condition.this, condition.expression, upper), (condition.expression, condition.this, not upper)):
                column, value = _column(left), _number(right)
                if column and value is not None:
                    return column, (-math.inf, value) if above else (value, math.inf)
    return None


def _column(node: exp.Expr) -> str:
    node = node.unnest()
    return node.name.lower() if isinstance(node, exp.Column) else ""


def _number(node: exp.Expr) -> float | None:
    """A finite numeric literal (or its negation) as a float, else None."""
    node = node.unnest()
    sign = 1.0
    if isinstance(node, exp.Neg):
        node, sign = node.this.unnest(), -1.0
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    try:
        value = sign * float(node.this)
    except ValueError:  # a literal float() does not read (0x…, 1_000 in some dialects)
        return None
    return value if math.isfinite(value) else None
