"""What a statement is, for the adapters, so that no tree is inspected outside sql/: its kind, a DECLARE's items,
a view's definition, the tables a query reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from sqlglot import exp

from predictsql.engine.errors import BindError
from predictsql.sql.dialect import DescribeModel, PredictTable, to_sql

DECLARE, SET_VARIABLES, SELECT_VARIABLES = "declare", "set", "select variables"
DESCRIBE_MODEL, CREATE_VIEW, DROP_VIEW, OTHER = "describe model", "create view", "drop view", "other"
VARIABLES = (DECLARE, SET_VARIABLES, SELECT_VARIABLES)  # the statements that give variables values


def kind(tree: exp.Expr) -> str:
    """DECLARE, SET @variables, SELECT @variables, DESCRIBE MODEL, CREATE VIEW, DROP VIEW, or any OTHER statement."""
    if isinstance(tree, exp.Declare):
        return DECLARE
    if isinstance(tree, exp.Set) and tree.expressions and all(_assigned(item) is not None for item in tree.expressions):
        return SET_VARIABLES
    if isinstance(tree, exp.Select) and tree.expressions and all(isinstance(e, exp.EQ) and isinstance(e.this, exp.Parameter) for e in tree.expressions):
        return SELECT_VARIABLES
    if isinstance(tree, DescribeModel):
        return DESCRIBE_MODEL
    if isinstance(tree, (exp.Create, exp.Drop)) and str(tree.args.get("kind", "")).upper() == "VIEW":
        return CREATE_VIEW if isinstance(tree, exp.Create) else DROP_VIEW
    return OTHER


class Variables(dict[str, object]):
    """Variables' values by name, and the type DECLARE gave each (T-SQL's: the value is of that type wherever it is read,
    and SET casts to it)."""

    def __init__(self, values: Mapping[str, object] | None = None, types: Mapping[str, exp.DataType] | None = None) -> None:
        super().__init__(values or {})
        self.types = dict(types or {})

    def merged(self, params: Mapping[str, object]) -> Variables:
        """A copy with Python params over it: a param's value keeps its own type."""
        return Variables({**self, **params}, {name: t for name, t in self.types.items() if name not in params})

    def keep(self, names: Iterable[str], source: Variables) -> None:
        """Take the values and types of `names` from `source` (a statement's DECLAREs into the connection's)."""
        for name in names:
            self[name] = source[name]
            self.types.pop(name, None)
            if name in source.types:
                self.types[name] = source.types[name]


@dataclass(frozen=True)
class Declared:
    """One `@name [= value]` of a DECLARE: a query of its value to run, another variable, or a constant; its type when
    DECLARE casts to one."""

    name: str
    query: exp.Query | None = None
    variable: str | None = None
    value: object = None
    type: exp.DataType | None = None


def declared(statement: exp.Expr, types: Mapping[str, exp.DataType]) -> list[Declared]:
    """The items of a DECLARE or a SET @a = …, in order: a literal, a 0x… literal, @variable, (SELECT …), or any other
    expression as the query of its value, cast to the declared type (DECLARE's own, or for SET the one in `types`); a
    table variable is a BindError."""
    if isinstance(statement, exp.Set):
        pairs = [pair for pair in map(_assigned, statement.expressions) if pair is not None]
        for name, value in pairs:
            _refuse_bare_aggregate(name, value, "SET")
        return [_declared(name, _cast(value, types.get(name))) for name, value in pairs]
    items = []
    for item in statement.expressions:
        target = item.this[0] if isinstance(item.this, list) else item.this  # sqlglot keeps the parameter in a list
        if isinstance(item.args.get("kind"), exp.Schema):
            raise BindError(f"DECLARE @{target.name} TABLE (…): table variables are not supported; use a temp table (CREATE TABLE #{target.name} (…) or SELECT … INTO #{target.name})")
        kind, value = item.args.get("kind"), item.args.get("default")
        _refuse_bare_aggregate(target.name.lower(), value, "DECLARE")
        sized = _sized(kind) if isinstance(kind, exp.DataType) and kind.this in _CAST else None
        items.append(replace(_declared(target.name.lower(), _cast(value, sized)), type=sized))
    return items


def selected(statement: exp.Select, types: Mapping[str, exp.DataType]) -> tuple[list[str], exp.Select]:
    """T-SQL's SELECT @a = x, @b = y FROM …: the variables, and the query of their values (in their order, each cast to
    its variable's declared type)."""
    query = statement.copy()
    names = [item.this.name.lower() for item in statement.expressions]
    query.set("expressions", [exp.Cast(this=item.expression, to=types[name].copy()) if name in types else item.expression for name, item in zip(names, query.expressions, strict=True)])
    return names, query


def _cast(value: object, to: exp.DataType | None) -> object:
    """A value as the engine casts it to a declared type (a query of it); no type, no value or NULL: as it is."""
    if to is None or not isinstance(value, exp.Expr) or isinstance(value, exp.Null):
        return value
    return exp.Subquery(this=exp.select(exp.Cast(this=value, to=to.copy())))


_T = exp.DataType.Type
_CAST = {  # DECLARE's types both engines cast to, read as T-SQL's (a binary one is not cast: a model stays its bytes; MONEY, XML, … keep the value's type)
    *(_T.UTINYINT, _T.TINYINT, _T.SMALLINT, _T.INT, _T.BIGINT, _T.FLOAT, _T.DOUBLE, _T.DECIMAL, _T.BOOLEAN),
    *(_T.DATE, _T.DATETIME, _T.DATETIME2, _T.SMALLDATETIME, _T.TIMESTAMP, _T.TIME),
    *(_T.CHAR, _T.NCHAR, _T.VARCHAR, _T.NVARCHAR, _T.TEXT),
}


def _sized(kind: exp.DataType) -> exp.DataType:
    """T-SQL's DECIMAL without a size is DECIMAL(18, 0) (DuckDB's is (18, 3))."""
    if kind.this == _T.DECIMAL and not kind.expressions:
        return exp.DataType.build("DECIMAL(18, 0)")
    return kind


def _assigned(item: exp.Expr) -> tuple[str, exp.Expr] | None:
    """`@name = value` of a SET item, else None (a SET of the engine's own settings)."""
    assignment = item.this if isinstance(item, exp.SetItem) else None
    if isinstance(assignment, exp.EQ) and isinstance(assignment.this, exp.Parameter):
        return assignment.this.name.lower(), assignment.expression
    return None


def _declared(name: str, value: object) -> Declared:
    """One item's value: nothing (NULL), a query to run, another variable, a constant, or any expression as a query."""
    if not isinstance(value, exp.Expr) or isinstance(value, exp.Null):  # no value (None, or False from T-SQL's parser), or NULL
        return Declared(name)
    if isinstance(value, exp.Subquery) and isinstance(value.this, exp.Query):
        return Declared(name, query=value.this)
    if isinstance(value, exp.Parameter):
        return Declared(name, variable=value.name.lower())
    if isinstance(value, exp.HexString):
        return Declared(name, value=bytes.fromhex(value.this))
    if isinstance(value, exp.National):
        return Declared(name, value=value.this)
    negated = isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal) and not value.this.is_string
    if negated or isinstance(value, exp.Literal):
        literal = value.this if negated else value
        if literal.is_string:
            return Declared(name, value=literal.this)
        number = int(literal.this) if literal.this.isdigit() else float(literal.this)  # 2, 2.5, 1e3
        return Declared(name, value=-number if negated else number)
    return Declared(name, query=exp.select(value))  # @c + 1, GETDATE(), CAST(…): the engine computes it


def _refuse_bare_aggregate(name: str, value: object, statement: str) -> None:
    """COUNT(*) as a value has no rows to count (computed alone it would count one): a BindError."""
    if isinstance(value, exp.Expr) and any(isinstance(n, exp.AggFunc | exp.Star) and n.find_ancestor(exp.Query) is None for n in value.walk()):
        raise BindError(f"{statement} @{name} = {to_sql(value)}: an aggregate needs its rows; write a scalar subquery (SELECT ... FROM ...)")


@dataclass(frozen=True)
class View:
    """A CREATE VIEW (its name, query, OR REPLACE) or a DROP VIEW (the names it drops)."""

    name: str
    query: exp.Query | None
    replace: bool
    dropped: tuple[str, ...]
    placed: bool = False  # TEMP, or in a schema named: where a PREDICT view, stored in the file's default schema, cannot go
    exists: bool = False  # IF NOT EXISTS

    @property
    def reads_variables(self) -> bool:
        return self.query is not None and self.query.find(exp.Parameter) is not None


def view(statement: exp.Expr) -> View:
    """The view a CREATE VIEW or DROP VIEW statement names."""
    if isinstance(statement, exp.Drop):
        return View("", None, False, tuple(t.name.lower() for t in statement.args.get("tables") or []))
    query, target = statement.expression, statement.this
    if isinstance(target, exp.Schema) and isinstance(query, exp.Query):  # CREATE VIEW v (a, b) AS …: the query's columns renamed
        alias = exp.TableAlias(this=exp.to_identifier(target.this.name), columns=[exp.to_identifier(c.name) for c in target.expressions])
        query, target = exp.select("*").from_(exp.Subquery(this=query, alias=alias)), target.this
    placed = statement.find(exp.TemporaryProperty) is not None or bool(isinstance(target, exp.Table) and target.db)
    return View(target.name.lower(), query if isinstance(query, exp.Query) else None, bool(statement.args.get("replace")), (), placed, bool(statement.args.get("exists")))


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
