"""What the sql layer hands to an engine adapter: each PREDICT call, and the shape of its scored relation."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

VARIABLE = "variable"  # MODEL = @name
QUERY = "query"  # MODEL = (SELECT blob FROM ...)
LITERAL = "literal"  # MODEL = 0x… or 'path' / 'models:/…'


@dataclass(frozen=True)
class ModelRef:
    """The MODEL argument: how to get the model, and how the query wrote it (for messages)."""

    kind: str
    value: object  # variable name, query tree, bytes or string
    label: str


@dataclass(frozen=True)
class PredictCall:
    """One PREDICT(...) found in a statement; `index` ties it to its node in the tree."""

    index: int
    model: ModelRef
    data: exp.Query  # the DATA relation as a standalone query, with the CTEs it reads
    data_alias: str | None
    alias: str | None
    columns: tuple[tuple[str, str], ...] | None  # WITH (name TYPE, ...), types as 'FLOAT' or 'FLOAT[]'
    options: dict[str, str]  # RUNTIME, NULLS, BATCH_SIZE, PLAN, … upper-cased
    inherited_ctes: int = 0  # how many of data's CTEs (the first ones) were copied from enclosing queries
    rereads: str = ""  # why the statement may read the scored relation more than once ('' when it reads it once)
    filtered: bool = False  # a condition outside the PREDICT (WHERE, ON, HAVING, QUALIFY) may read its outputs, under any name
    pushed: tuple[str, ...] = ()  # conjuncts of the outer WHERE / ON moved below the PREDICT (sql/pushdown.py)
    ranges: tuple[tuple[str, tuple[float, float]], ...] = ()  # what they prove about DATA columns (sql/ranges.py)

    @property
    def label(self) -> str:
        return self.model.label


@dataclass(frozen=True)
class Output:
    """An output column of a scored relation: `name` in the query, `field` in the relation."""

    name: str
    field: str


@dataclass(frozen=True)
class Relation:
    """The scored relation that replaces a PREDICT: DATA columns followed by outputs.

    The engine reads it by `name` (a registered stream), or, when `query` is set (INLINE, UDF), as that subquery.
    """

    name: str
    data_columns: tuple[str, ...]
    outputs: tuple[Output, ...]
    query: exp.Query | None = None
    model: str = ""  # the model as messages name it


def in_place(data: exp.Query, call: PredictCall) -> exp.Query:
    """A PREDICT's (rewritten) DATA query as it stands inside its statement, for a relation computed there:
    without the CTEs copied in from enclosing queries, which the statement defines already."""
    if not call.inherited_ctes:
        return data
    data = data.copy()
    kept = data.args["with_"].expressions[call.inherited_ctes :]
    data.set("with_", exp.With(expressions=kept, recursive=data.args["with_"].args.get("recursive")) if kept else None)
    return data
