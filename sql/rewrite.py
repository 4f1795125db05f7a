"""Tree → tree rules that turn a PREDICT statement into SQL the target engine runs.

Each rule is a small function of (tree, context) that edits and returns the tree. The adapter
applies map_default_schema and expand_views before binding; `rewrite` applies the rest.
"""

from __future__ import annotations

from typing import Callable, Mapping

from sqlglot import exp

from predictsql.engine.errors import BindError
from predictsql.sql.bind import INDEX_KEY, ancestors
from predictsql.sql.dialect import PredictTable
from predictsql.sql.plan import Relation

DEFAULT_SCHEMA_ALIASES = ("dbo",)
MAX_VIEW_DEPTH = 16


def map_default_schema(tree: exp.Expression, schema_exists: Callable[[str], bool]) -> exp.Expression:
    """`dbo.t` → `t` unless a schema named dbo exists: T-SQL's default schema is the engine's."""
    for table in tree.find_all(exp.Table):
        if table.db.lower() in DEFAULT_SCHEMA_ALIASES and not table.catalog and not schema_exists(table.db):
            table.set("db", None)
    return tree


def expand_views(tree: exp.Expression, views: Mapping[str, exp.Query]) -> exp.Expression:
    """Replace references to stored PREDICT views by their definitions, as aliased subqueries."""
    for _ in range(MAX_VIEW_DEPTH):
        refs = [t for t in tree.find_all(exp.Table) if not t.db and isinstance(t.this, exp.Identifier) and t.name.lower() in views]
        refs = [t for t in refs if not _is_cte_name(t)]
        if not refs:
            return tree
        for table in refs:
            subquery = exp.Subquery(this=views[table.name.lower()].copy(), alias=exp.TableAlias(this=exp.to_identifier(table.alias_or_name)))
            if table is tree:
                return subquery
            table.replace(subquery)
    raise BindError(f"PREDICT views nest more than {MAX_VIEW_DEPTH} deep; is a view defined in terms of itself?")


def replace_predicts(tree: exp.Expression, relations: Mapping[int, Relation], materialize_ctes: bool = False) -> exp.Expression:
    """Swap each PREDICT for its scored relation and point d.x / p.x / d.* / p.* at it.

    A relation with a query (the INLINE plan) goes in as a subquery (the query itself, not a
    copy: relations are made for one rewrite), else as a table by name.
    With `materialize_ctes`, a CTE over a named PREDICT relation is marked MATERIALIZED: on
    engines where the scored relation is a stream, it can be read only once.
    """
    outermost = [n for n in tree.find_all(PredictTable) if not any(isinstance(a, PredictTable) for a in ancestors(n))]
    for node in outermost:
        relation = relations[node.meta[INDEX_KEY]]
        table = node.parent
        data_alias = node.args["data"].alias
        alias = table.alias or data_alias or relation.name
        select = table.find_ancestor(exp.Select)
        source = exp.Table(this=exp.to_identifier(relation.name)) if relation.query is None else exp.Subquery(this=relation.query)
        source.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        table.replace(source)
        if select is not None:
            _rewrite_columns(select, alias, relation, data_alias.lower() if data_alias else None, table.alias.lower() if table.alias else None)
        cte = select.find_ancestor(exp.CTE) if select is not None and materialize_ctes and relation.query is None else None
        if cte is not None:
            cte.set("materialized", True)
    return tree


def _rewrite_columns(select: exp.Select, alias: str, relation: Relation, data_alias: str | None, predict_alias: str | None) -> None:
    """Qualify d.x and p.x with the relation's alias, map renamed outputs, then expand d.* and p.*."""
    names = {a for a in (data_alias, predict_alias) if a}
    renamed = {o.name.lower(): o for o in relation.outputs if o.field != o.name}
    for column in list(select.find_all(exp.Column)):
        qualifier = column.table.lower()
        if qualifier not in names or isinstance(column.this, exp.Star) or not _resolves_here(column, select, qualifier):
            continue
        column.set("table", exp.to_identifier(alias))
        output = renamed.get(column.name.lower()) if qualifier == predict_alias else None
        if output is not None:
            column.set("this", exp.to_identifier(output.field, quoted=True))
            if column.parent is select:
                column.replace(exp.alias_(column.copy(), output.name))
    projections = []
    for item in select.expressions:
        if isinstance(item, exp.Column) and isinstance(item.this, exp.Star) and item.table.lower() in names:
            projections += _star(item.table.lower() == data_alias, alias, relation)
        else:
            projections.append(item)
    select.set("expressions", projections)


def _star(is_data: bool, alias: str, relation: Relation) -> list[exp.Expression]:
    if is_data:
        return [_column(alias, name) for name in relation.data_columns]
    return [_column(alias, o.field) if o.field == o.name else exp.alias_(_column(alias, o.field), o.name, quoted=True) for o in relation.outputs]


def _column(table: str, name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True), table=exp.to_identifier(table))


def _resolves_here(column: exp.Column, select: exp.Select, name: str) -> bool:
    """Whether `column`'s table qualifier refers to `select`'s sources, not to a nested query's own alias."""
    inner = column.find_ancestor(exp.Select)
    while inner is not None and inner is not select:
        if any(source.alias_or_name.lower() == name for source in _sources(inner)):
            return False
        inner = inner.find_ancestor(exp.Select)
    return inner is select


def _sources(select: exp.Select) -> list[exp.Expression]:
    from_ = select.args.get("from_")
    return ([from_.this] if from_ else []) + [j.this for j in select.args.get("joins") or []]


def _is_cte_name(table: exp.Table) -> bool:
    name = table.name.lower()
    return any(
        isinstance(a, exp.Query) and a.args.get("with_") and any(c.alias.lower() == name for c in a.args["with_"].expressions)
        for a in ancestors(table)
    )


def inline_variables(tree: exp.Expression, variables: Mapping[str, object]) -> exp.Expression:
    """Replace @name references by literals of their values."""
    for param in list(tree.find_all(exp.Parameter)):
        name = param.name.lower()
        if name not in variables:
            raise BindError(f"variable @{param.name} is not declared: DECLARE @{param.name} ... = ... first, or pass params={{'{param.name}': ...}}")
        param.replace(_literal(variables[name]))
    return tree


def _literal(value: object) -> exp.Expression:
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float)):
        return exp.Literal.number(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return exp.HexString(this=bytes(value).hex())
    return exp.Literal.string(str(value))


def rewrite(tree: exp.Expression, relations: Mapping[int, Relation], variables: Mapping[str, object], materialize_ctes: bool = False) -> exp.Expression:
    """The statement as the engine will run it, on a copy: PREDICTs replaced, then variables inlined."""
    return inline_variables(replace_predicts(tree.copy(), relations, materialize_ctes), variables)
