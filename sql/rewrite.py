"""Tree → tree rules that turn a PREDICT statement into SQL the target engine runs.

Each rule is a small function of (tree, context) that edits and returns the tree; `apply` runs an
ordered tuple of them on a copy. Adapters apply map_default_schema and expand_views before
binding (the statement in the engine's own names); REWRITE runs after it (the statement as the
engine runs it).
"""

from __future__ import annotations

import datetime
import decimal
import difflib
import math
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlglot import exp

from predictsql.engine.errors import AmbiguousColumnError, BindError, UnknownOutputError
from predictsql.sql.bind import ancestors, data_alias, outermost, source_of
from predictsql.sql.plan import Output, Relation
from predictsql.sql.statements import Variables

E = TypeVar("E", bound=exp.Expr)
DEFAULT_SCHEMA_ALIASES = ("dbo",)
MAX_VIEW_DEPTH = 16
Scope = exp.Select | exp.Update | exp.Delete  # a statement whose columns may read a PREDICT's DATA alias
SCOPES = (exp.Select, exp.Update, exp.Delete)


def _no_schema(name: str) -> bool:
    return False


@dataclass(frozen=True)
class Context:
    """What the rules read: the engine's schemas and stored PREDICT views, the scored relations (in `outermost`
    order) and the variables."""

    schema_exists: Callable[[str], bool] = _no_schema
    views: Mapping[str, exp.Expr] = field(default_factory=dict)
    relations: Sequence[Relation | None] = ()  # None: leave that PREDICT for a later rewrite
    variables: Variables = field(default_factory=Variables)


def apply(rules: Sequence[Callable[[E, Context], E]], tree: E, context: Context) -> E:
    """A copy of `tree` with each rule applied in order."""
    tree = tree.copy()
    for rule in rules:
        tree = rule(tree, context)
    return tree


def map_default_schema(tree: E, context: Context) -> E:
    """`dbo.t` → `t` unless a schema named dbo exists: T-SQL's default schema is the engine's."""
    for table in _default_schema_tables(tree):
        if not context.schema_exists(table.db):
            table.set("db", None)
    return tree


def names_default_schema(tree: exp.Expr) -> bool:
    """Whether map_default_schema may change the tree (it names a `dbo.` table): else a caller need not copy it."""
    return next(_default_schema_tables(tree), None) is not None


def _default_schema_tables(tree: exp.Expr) -> Iterator[exp.Table]:
    return (t for t in tree.find_all(exp.Table) if t.db.lower() in DEFAULT_SCHEMA_ALIASES and not t.catalog)


def expand_views(tree: E, context: Context) -> E:
    """Replace references to stored PREDICT views by their definitions: as aliased subqueries where a query reads
    them, as the query itself where COPY v TO, DESCRIBE v or SUMMARIZE v does; a statement that would change one as
    a table (DROP TABLE v, INSERT INTO v, ALTER VIEW v, ...) is refused."""
    views = context.views
    for _ in range(MAX_VIEW_DEPTH):
        refs = [t for t in tree.find_all(exp.Table) if not t.db and isinstance(t.this, exp.Identifier) and t.name.lower() in views]
        refs = [t for t in refs if not _is_cte_name(t)]
        if not refs:
            return tree
        for table in refs:
            query = views[table.name.lower()].copy()
            if _reads_whole(table):
                table.replace(exp.Subquery(this=query) if isinstance(table.parent, exp.Copy) else query)
            elif (statement := _changed_by(table)) is not None:
                raise BindError(
                    f"{table.name} is a PREDICT view, which predictsql stores, not a DuckDB table or view: {statement} cannot change it; "
                    f"DROP VIEW {table.name} or CREATE OR REPLACE VIEW {table.name} AS ... do"
                )
            else:
                _read_as_written(table, exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(table.alias_or_name))))
    raise BindError(f"PREDICT views nest more than {MAX_VIEW_DEPTH} deep; is a view defined in terms of itself?")


def _reads_whole(table: exp.Table) -> bool:
    """COPY v TO, DESCRIBE v, SUMMARIZE v: statements that read a relation by name and take a query in its place."""
    parent = table.parent
    if isinstance(parent, exp.Copy):
        return table.arg_key == "this" and not parent.args.get("kind")  # kind: COPY v FROM a file, which writes v
    return isinstance(parent, (exp.Describe, exp.Summarize)) and table.arg_key == "this"


_CHANGES = (exp.Create, exp.Drop, exp.Alter, exp.Insert, exp.Update, exp.Delete, exp.TruncateTable, exp.Comment, exp.Copy)


def _changed_by(table: exp.Table) -> str | None:
    """The statement (as 'DROP TABLE', 'INSERT') that creates, drops, alters or writes the table, if one does."""
    parent = table.parent.parent if isinstance(table.parent, exp.Schema) else table.parent
    if not isinstance(parent, _CHANGES) or table.arg_key not in ("this", "tables", "expressions"):
        return None
    kind = parent.args.get("kind")
    return f"{parent.key.upper()} {kind.upper()}" if isinstance(kind, str) else parent.key.upper()


def _read_as_written(table: exp.Table, source: exp.Table | exp.Subquery) -> None:
    """Put `source` where `table` is, with the PIVOT, TABLESAMPLE, LATERAL and joins written after the table's name."""
    for arg in ("pivots", "sample", "laterals", "joins"):
        source.set(arg, table.args.get(arg))
    table.replace(source)


def replace_predicts(tree: E, context: Context) -> E:
    """Swap each PREDICT (in `outermost` order) for its scored relation and point d.x / p.x / d.* / p.* at it.

    A relation with a query (INLINE, UDF) goes in as a subquery (the query itself, not a copy:
    relations are made for one rewrite), else (STREAM) as a table by name. DATA without an alias
    is read through its relation's name (`predict_input.id`), as in Microsoft's docs.
    """
    for node, relation in zip(outermost(tree), context.relations, strict=True):
        if relation is None:
            continue
        table = source_of(node)
        data = node.args["data"]
        read_as = data_alias(data)
        alias = table.alias or read_as or relation.name
        select = _scope(table)
        source = exp.Table(this=exp.to_identifier(relation.name)) if relation.query is None else exp.Subquery(this=relation.query)
        source.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        _read_as_written(table, source)
        if select is not None:
            _rewrite_columns(select, alias, relation, read_as.lower() if read_as else None, table.alias.lower() if table.alias else None)
    return tree


def _rewrite_columns(select: Scope, alias: str, relation: Relation, data_alias: str | None, predict_alias: str | None) -> None:
    """Qualify d.x and p.x with the relation's alias, map renamed outputs, read d and p as whole rows, then expand d.* and p.*."""
    names = {a for a in (data_alias, predict_alias) if a}
    if predict_alias:  # without one, the DATA alias names the relation: d.x reads either
        _refuse_ambiguous(select, relation, predict_alias, data_alias)
    for dot in list(select.find_all(exp.Dot)):  # d.s.upper(), DuckDB's dot call, which sqlglot reads as a Dot over d and s
        if isinstance(dot.this, exp.Identifier) and dot.this.name.lower() in names and isinstance(dot.expression, exp.Identifier):
            dot.replace(exp.column(dot.expression, table=dot.this))
    _whole_rows(select, alias, relation, data_alias, predict_alias)
    for column in list(select.find_all(exp.Column)):  # d.st.a, a field of struct column st, which sqlglot reads as table st of schema d
        if column.db.lower() in names and not column.catalog and _resolves_here(column, select, column.db.lower()) and not _reads_table(column, select):
            column.replace(exp.Dot(this=exp.column(column.args["table"], table=column.args["db"]), expression=column.this))
    for column in list(select.find_all(exp.Column)):
        qualifier = column.table.lower()
        if qualifier not in names or isinstance(column.this, exp.Star) or not _resolves_here(column, select, qualifier):
            continue
        _check_column(column, relation, is_data=qualifier == data_alias)
        column.set("table", exp.to_identifier(alias))
        output = _output_named(relation, column.name) if qualifier == predict_alias else None
        if output is not None and output.field != output.name:
            column.set("this", exp.to_identifier(output.field, quoted=True))
            if column.parent is select:
                column.replace(exp.alias_(column.copy(), output.name))
    projections = []
    for item in select.expressions:
        if isinstance(item, exp.Column) and isinstance(item.this, exp.Star) and item.table.lower() in names:
            projections += _star(item, item.table.lower() == data_alias, alias, relation)
        else:
            projections.append(item)
    select.set("expressions", projections)
    for star in select.find_all(exp.Star):
        inside = star.parent
        if isinstance(inside, exp.Column) and inside.table.lower() in names and _resolves_here(inside, select, inside.table.lower()):
            around = inside.parent.sql("duckdb") if inside.parent is not None else "the query"
            raise BindError(f"{inside.sql('duckdb')} inside {around}: PREDICT's {inside.table}.* is expanded only as a select item; list its columns instead")


def _whole_rows(select: Scope, alias: str, relation: Relation, data_alias: str | None, predict_alias: str | None) -> None:
    """`SELECT d` and `SELECT p`, DuckDB's whole row of an alias, as the STRUCT of DATA's columns or of the outputs (a
    column of that name is read as the column, as DuckDB reads it)."""
    taken = {n.lower() for n in (*relation.data_columns, *(o.name for o in relation.outputs))}
    for column in list(select.find_all(exp.Column)):
        name = column.name.lower()
        if column.table or name in taken or name not in (data_alias, predict_alias) or _scope(column) is not select:
            continue
        if name == data_alias:
            fields = [(n, n) for n in relation.data_columns]
        else:
            fields = [(o.name, o.field) for o in relation.outputs]
        row = exp.Struct(expressions=[exp.PropertyEQ(this=exp.to_identifier(n, quoted=True), expression=_column(alias, f)) for n, f in fields])
        column.replace(exp.alias_(row, column.this.copy()) if column.parent is select else row)


def _refuse_ambiguous(select: Scope, relation: Relation, predict_alias: str, data_alias: str | None) -> None:
    """An unqualified name that is both a DATA column and an output is ambiguous, as in T-SQL and in DuckDB's join
    of the two (it read DATA's column); a select-list alias of that name, read by ORDER BY, is not."""
    both = {o.name.lower() for o in relation.outputs} & {c.lower() for c in relation.data_columns}
    if not both:
        return
    aliases = {e.alias.lower() for e in select.expressions if isinstance(e, exp.Alias)}
    for column in select.find_all(exp.Column):
        name = column.name.lower()
        if column.table or name not in both or _scope(column) is not select:
            continue
        if name in aliases and column.find_ancestor(exp.Order) is not None:
            continue
        data = f"{data_alias}.{column.name}" if data_alias else f"the DATA query's {column.name}"
        raise AmbiguousColumnError(f"column {column.name} is both a DATA column and an output of PREDICT {predict_alias} ({relation.model}): write {data} or {predict_alias}.{column.name}")


def _output_named(relation: Relation, name: str) -> Output | None:
    """The output a p.x reads: the one named exactly x, else the first whose name matches ignoring case (as SQL reads it)."""
    exact = [o for o in relation.outputs if o.name == name] or [o for o in relation.outputs if o.name.lower() == name.lower()]
    return exact[0] if exact else None


def _check_column(column: exp.Column, relation: Relation, is_data: bool) -> None:
    """d.x must name a DATA column and p.x a DATA column or an output: the engine's own error would name the relation
    the rewrite made (DuckDB: 'Values list "p" does not have a column …', for d.x too)."""
    data = relation.data_columns
    outputs = [] if is_data else [n for o in relation.outputs for n in dict.fromkeys((o.name, o.field))]
    if column.name.lower() in {n.lower() for n in (*data, *outputs)}:
        return
    close = difflib.get_close_matches(column.name.lower(), [n.lower() for n in (*data, *outputs)], n=1)
    hint = f"; did you mean {column.table}.{next(n for n in (*data, *outputs) if n.lower() == close[0])}?" if close else ""
    if is_data:
        raise BindError(f"{column.sql()}: PREDICT's DATA {column.table} ({relation.model}) has no column {column.name}{hint}")
    raise UnknownOutputError(
        f"{column.sql()}: PREDICT {column.table} ({relation.model}) has no column {column.name}: it has DATA's columns and the outputs "
        f"{', '.join(o.name for o in relation.outputs)}{hint}"
    )


def _star(item: exp.Column, is_data: bool, alias: str, relation: Relation) -> list[exp.Expr]:
    """d.* (DATA's columns) or p.* (the outputs), with DuckDB's EXCLUDE, REPLACE, RENAME and ILIKE applied as DuckDB applies them."""
    if is_data:
        columns: dict[str, exp.Expr] = {name: _column(alias, name) for name in relation.data_columns}
    else:
        columns = {o.name: _column(alias, o.field) if o.field == o.name else exp.alias_(_column(alias, o.field), o.name, quoted=True) for o in relation.outputs}
    star, by_key = item.this, {name.lower(): name for name in columns}

    def named(name: str, clause: str) -> str:
        if name.lower() not in by_key:
            raise BindError(f"{item.sql('duckdb')}: {clause} names {name}, which {item.table}.* does not have; it has {', '.join(columns)}")
        return by_key[name.lower()]

    pattern = star.args.get("ilike")
    if pattern is not None:
        regex = re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern.name), re.IGNORECASE | re.DOTALL)
        columns = {name: value for name, value in columns.items() if regex.fullmatch(name)}
    for excluded in star.args.get("except_") or []:
        columns.pop(named(excluded.name, "EXCLUDE"))
    for replaced in star.args.get("replace") or []:
        columns[named(replaced.alias, "REPLACE")] = replaced
    for renamed in star.args.get("rename") or []:
        name = named(renamed.this.name, "RENAME")
        value = columns[name]
        columns[name] = exp.alias_(value.this if isinstance(value, exp.Alias) else value, renamed.alias, quoted=True)
    return list(columns.values())


def _column(table: str | None, name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True), table=exp.to_identifier(table) if table else None)


def _resolves_here(column: exp.Column, select: Scope, name: str) -> bool:
    """Whether `column`'s table qualifier refers to `select`'s sources, not to a nested query's own alias."""
    inner = _scope(column)
    while inner is not None and inner is not select:
        if any(source.alias_or_name.lower() == name for source in _sources(inner)):
            return False
        inner = _scope(inner)
    return inner is select


def _reads_table(column: exp.Column, select: Scope) -> bool:
    """Whether `column`'s schema.table qualifier names a table that `select`, or a query inside it around the column,
    reads (then d.st.a is that table's column a, as the engines resolve it, not a field of DATA's struct)."""
    scope = _scope(column)
    while scope is not None:
        if any(isinstance(t, exp.Table) and t.db.lower() == column.db.lower() and t.name.lower() == column.table.lower() for t in _sources(scope)):
            return True
        scope = None if scope is select else _scope(scope)
    return False


def _scope(node: exp.Expr) -> Scope | None:
    """The nearest SELECT, UPDATE or DELETE around `node`: the statement whose columns may read a PREDICT's aliases."""
    scope = node.find_ancestor(*SCOPES)
    return scope if isinstance(scope, SCOPES) else None


def _sources(scope: Scope) -> list[exp.Expr]:
    """The relations a scope reads: FROM and its joins; an UPDATE's or DELETE's target and a DELETE's USING too (sqlglot
    keeps an UPDATE … FROM's joins on its first source)."""
    from_ = scope.args.get("from_")
    first = [from_.this] if from_ else []
    joins = scope.args.get("joins") or (first[0].args.get("joins") if first else None) or []
    target = [scope.this] if isinstance(scope, (exp.Update, exp.Delete)) and isinstance(scope.this, exp.Table) else []
    return target + first + [j.this for j in joins] + list(scope.args.get("using") or [])


def _is_cte_name(table: exp.Table) -> bool:
    name = table.name.lower()
    return any(
        isinstance(a, exp.Query) and a.args.get("with_") and any(c.alias.lower() == name for c in a.args["with_"].expressions)
        for a in ancestors(table)
    )


def inline_variables(tree: E, context: Context) -> E:
    """Replace @name references by literals of their values, cast to the types DECLARE gave them."""
    variables = context.variables
    for param in list(tree.find_all(exp.Parameter)):
        name = param.name.lower()
        if name not in variables:
            raise BindError(f"variable @{param.name} is not declared: DECLARE @{param.name} ... = ... first, or pass params={{'{param.name}': ...}}")
        try:
            literal = _literal(variables[name])
            param.replace(exp.Cast(this=literal, to=variables.types[name].copy()) if name in variables.types else literal)
        except TypeError:
            raise BindError(
                f"@{param.name} holds a {type(variables[name]).__name__}, which has no SQL literal: give it a bool, number, string, bytes, "
                "date, datetime, time, Decimal, UUID or a list of them"
            ) from None
    return tree


_TEMPORAL = ((datetime.datetime, exp.DataType.Type.TIMESTAMP), (datetime.date, exp.DataType.Type.DATE), (datetime.time, exp.DataType.Type.TIME))


def _literal(value: object) -> exp.Expr:
    """A variable's value as SQL: NaN and ±inf as DOUBLE casts, lists and tuples as array literals, dates, times and
    UUIDs as typed casts; a TypeError for any other kind of value."""
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), exp.DataType.Type.TIMESTAMPTZ)
    for kind, sql_type in _TEMPORAL:  # datetime before date: it is one
        if isinstance(value, kind):
            return exp.cast(exp.Literal.string(value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else value.isoformat()), sql_type)
    if isinstance(value, uuid.UUID):
        return exp.cast(exp.Literal.string(str(value)), exp.DataType.Type.UUID)
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return exp.Literal.number(str(value))
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, float) and not math.isfinite(value):
        return exp.cast(exp.Literal.string(str(value)), exp.DataType.Type.DOUBLE)
    if isinstance(value, float):  # DOUBLE, as the engines type a Python float (a bare 0.5 is DECIMAL in DuckDB)
        return exp.cast(exp.Literal.number(repr(value)), exp.DataType.Type.DOUBLE)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, (list, tuple)):
        return exp.Array(expressions=[_literal(v) for v in value])
    if isinstance(value, (bytes, bytearray, memoryview)):
        return exp.HexString(this=bytes(value).hex())
    if isinstance(value, str):
        return exp.Literal.string(value)
    raise TypeError(type(value).__name__)


REWRITE = (replace_predicts, inline_variables)


def rewrite(tree: E, relations: Sequence[Relation], variables: Variables) -> E:
    """The statement as the engine will run it, on a copy: PREDICTs replaced, then variables inlined."""
    return apply(REWRITE, tree, Context(relations=relations, variables=variables))


SCORES = "__predictsql_s"  # the STRUCT column a scoring function returns, never visible to the query


def function_relation(data: exp.Query, function: str, inputs: Sequence[str], data_columns: Sequence[str], fields: Sequence[tuple[str, str]]) -> exp.Select:
    """The UDF plan's relation: DATA's columns, then each output read from the STRUCT that `function(inputs)` returns once per row.

        SELECT <data columns>, __predictsql_s.<struct field> AS <field>, ... FROM (SELECT *, function(<inputs>) AS __predictsql_s FROM (<DATA>))
    """
    call = exp.Anonymous(this=function, expressions=[_column(None, name) for name in inputs])
    scored = exp.select(exp.Star(), exp.alias_(call, SCORES, quoted=True), copy=False).from_(exp.Subquery(this=data, alias=exp.TableAlias(this=exp.to_identifier("__predictsql_d"))), copy=False)
    outputs = [exp.alias_(exp.Dot(this=_column(None, SCORES), expression=exp.to_identifier(f, quoted=True)), name, quoted=True) for f, name in fields]
    return exp.select(*[_column(None, n) for n in data_columns], *outputs, copy=False).from_(
        exp.Subquery(this=scored, alias=exp.TableAlias(this=exp.to_identifier("__predictsql_u"))), copy=False
    )

