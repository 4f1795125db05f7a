"""What a statement is, for the adapters, so that no tree is inspected outside sql/: its kind, a DECLARE's items,
a view's definition, the tables a query reads."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from predictsql.engine.errors import BindError
from predictsql.sql.dialect import DescribeModel, PredictTable, to_sql

DECLARE, DESCRIBE_MODEL, CREATE_VIEW, DROP_VIEW, OTHER = "declare", "describe model", "create view", "drop view", "other"


def kind(tree: exp.Expr) -> str:
    """DECLARE, DESCRIBE MODEL, CREATE VIEW, DROP VIEW, or any OTHER statement."""
    if isinstance(tree, exp.Declare):
        return DECLARE
    if isinstance(tree, DescribeModel):
        return DESCRIBE_MODEL
    if isinstance(tree, (exp.Create, exp.Drop)) and str(tree.args.get("kind", "")).upper() == "VIEW":
        return CREATE_VIEW if isinstance(tree, exp.Create) else DROP_VIEW
    return OTHER


@dataclass(frozen=True)
class Declared:
    """One `@name [= value]` of a DECLARE: a scalar subquery to run, another variable, or a constant."""

    name: str
    query: exp.Query | None = None
    variable: str | None = None
    value: object = None


def declared(statement: exp.Expr) -> list[Declared]:
    """The items of a DECLARE, in order; a value that is not a literal, a 0x… literal, @variable or (SELECT …) is a BindError."""
    items = []
    for item in statement.expressions:
        target = item.this[0] if isinstance(item.this, list) else item.this  # sqlglot keeps the parameter in a list
        name, value = target.name.lower(), item.args.get("default")
        if not isinstance(value, exp.Expr):  # no value: None, or False from T-SQL's parser
            items.append(Declared(name))
        elif isinstance(value, exp.Subquery) and isinstance(value.this, exp.Query):
            items.append(Declared(name, query=value.this))
        elif isinstance(value, exp.Parameter):
            items.append(Declared(name, variable=value.name.lower()))
        elif isinstance(value, exp.HexString):
            items.append(Declared(name, value=bytes.fromhex(value.this)))
        elif isinstance(value, exp.Literal):
            items.append(Declared(name, value=value.this if value.is_string else float(value.this) if "." in value.this else int(value.this)))
        else:
            raise BindError(f"DECLARE @{name} = {to_sql(value)}: use a literal, a 0x… literal or a scalar subquery (SELECT ...)")
    return items


@dataclass(frozen=True)
class View:
    """A CREATE VIEW (its name, query, OR REPLACE) or a DROP VIEW (the names it drops)."""

    name: str
    query: exp.Query | None
    replace: bool
    dropped: tuple[str, ...]

    @property
    def reads_variables(self) -> bool:
        return self.query is not None and self.query.find(exp.Parameter) is not None


def view(statement: exp.Expr) -> View:
    """The view a CREATE VIEW or DROP VIEW statement names."""
    if isinstance(statement, exp.Drop):
        return View("", None, False, tuple(t.name.lower() for t in statement.args.get("tables") or []))
    query = statement.expression
    return View(statement.this.name.lower(), query if isinstance(query, exp.Query) else None, bool(statement.args.get("replace")), ())


def reads_predict(tree: exp.Expr) -> bool:
    return tree.find(PredictTable) is not None


def tables(query: exp.Expr) -> set[str]:
    """The unqualified table names a query reads (lower case)."""
    return {t.name.lower() for t in query.find_all(exp.Table) if not t.db}


def string_literal(text: str, dialect: str = "duckdb") -> str:
    """A string as a SQL literal, quotes escaped."""
    return exp.Literal.string(text).sql(dialect=dialect)


def identifier(name: str, dialect: str) -> str:
    """A name quoted as the dialect needs it."""
    return exp.to_identifier(name).sql(dialect=dialect)
