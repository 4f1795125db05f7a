"""Projection pushdown: a PREDICT carries only the DATA columns its statement can read, plus the model's inputs.

A statement reads a DATA column only through a column reference of that name (however qualified), so the names
of every column reference in the statement, over-counting freely, are enough; anything that reads columns
without naming them (`*`, `d.*`, DuckDB's COLUMNS(), a NATURAL or USING join, a whole row by its alias) keeps all.
A stream then reads and carries 20 columns of a 200-column table, not 200.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from predictsql.sql.bind import data_alias
from predictsql.sql.dialect import PredictTable


def referenced_columns(tree: exp.Expr) -> set[str] | None:
    """The lower-cased names of every column reference in the statement, or None when it may read columns unnamed."""
    aliases = {a.lower() for node in tree.find_all(PredictTable) for a in _aliases(node)}
    names: set[str] = set()
    for node in tree.walk():
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            return None
        if isinstance(node, exp.Columns) or (isinstance(node, exp.Anonymous) and node.name.upper() == "COLUMNS"):
            return None
        if isinstance(node, exp.Join) and (node.args.get("using") or (node.method or "").upper() == "NATURAL"):
            return None
        if isinstance(node, exp.Column):
            if not node.table and node.name.lower() in aliases:
                return None  # a whole row read by its alias (DuckDB: SELECT p FROM ... AS p)
            names.update(part.lower() for part in (node.name, node.table, node.db) if part)  # st.a and d.st.a read struct column st
        if isinstance(node, exp.Dot):  # d.s.upper(), DuckDB's dot call: a Dot over identifiers d and s
            names.update(part.name.lower() for part in (node.this, node.expression) if isinstance(part, exp.Identifier))
    return names


def _aliases(node: PredictTable) -> list[str]:
    table = node.parent
    names = [data_alias(node.args["data"]), table.alias if isinstance(table, exp.Table) else ""]
    return [n for n in names if n]


def project(data: exp.Query, names: Sequence[str]) -> exp.Select:
    """SELECT <names> FROM (DATA): the columns a PREDICT carries."""
    inner = exp.Subquery(this=data, alias=exp.TableAlias(this=exp.to_identifier("__predictsql_p")))
    return exp.select(*[exp.column(n, quoted=True) for n in names]).from_(inner)
