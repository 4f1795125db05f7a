"""Find the PREDICT calls of a statement and read their arguments: syntax-level binding.

Semantic binding (DATA schema against the model signature) needs the engine and happens in
predictsql.engine.binding; this module only knows sqlglot trees.
"""

from __future__ import annotations

from typing import Iterator

from sqlglot import exp

from predictsql.engine.errors import BindError
from predictsql.sql.dialect import PredictTable, to_sql
from predictsql.sql.plan import LITERAL, QUERY, VARIABLE, ModelRef, PredictCall

INDEX_KEY = "predictsql_index"
RUNTIMES = ("ONNX",)


def find_predicts(tree: exp.Expression) -> list[PredictCall]:
    """The PREDICT calls of `tree`, outermost only: those inside another PREDICT's DATA belong to it."""
    calls = []
    for node in tree.find_all(PredictTable):
        if any(isinstance(a, PredictTable) for a in ancestors(node)):
            continue
        node.meta[INDEX_KEY] = len(calls)
        calls.append(_read_call(node, len(calls)))
    return calls


def _read_call(node: PredictTable, index: int) -> PredictCall:
    table = node.parent
    options = {o.name.upper(): o.expression.name.upper() if isinstance(o.expression, exp.Var) else o.expression.name for o in node.args.get("options") or []}
    runtime = options.get("RUNTIME", "ONNX")
    if runtime not in RUNTIMES:
        raise BindError(f"PREDICT RUNTIME = {runtime} is not supported; use RUNTIME = ONNX")
    data = node.args["data"]
    columns = node.args.get("columns")
    query, inherited = _data_query(data, table)
    return PredictCall(
        index=index,
        model=model_ref(node.args["model"]),
        data=query,
        data_alias=data.alias or None,
        alias=table.alias or None if isinstance(table, exp.Table) else None,
        columns=tuple((c.name, type_name(c.args["kind"])) for c in columns) if columns else None,
        options=options,
        inherited_ctes=inherited,
    )


def model_ref(model: exp.Expression) -> ModelRef:
    """The MODEL of a PREDICT or DESCRIBE MODEL: a variable, a scalar subquery, or a 0x… / string literal."""
    label = to_sql(model)
    if isinstance(model, exp.Parameter):
        return ModelRef(VARIABLE, model.name.lower(), label)
    if isinstance(model, exp.Subquery):
        return ModelRef(QUERY, model.this, label)
    if isinstance(model, exp.HexString):
        return ModelRef(LITERAL, bytes.fromhex(model.this), label if len(label) < 40 else f"{label[:20]}…")
    if isinstance(model, exp.Literal) and model.is_string:
        return ModelRef(LITERAL, model.this, label)
    raise BindError(f"PREDICT MODEL = {label} is not a model: use @variable, a scalar subquery (SELECT blob FROM ...), a 0x… literal, or a string: a file path, 'models:/name@alias' (MLflow) or 'catalog:/name' (the database's model catalog)")


def _data_query(data: exp.Expression, table: exp.Expression) -> tuple[exp.Query, int]:
    """DATA as a query of its own: SELECT * FROM <table>, or the subquery, plus (first) the CTEs it reads; and their count."""
    if isinstance(data, exp.Subquery):
        query = data.this.copy()
    elif isinstance(data, exp.Table):
        source = data.copy()
        source.set("alias", None)
        query = exp.select("*").from_(source)
    else:
        raise BindError(f"PREDICT DATA = {to_sql(data)} is not a relation: use a table, view, CTE name or (SELECT ...)")
    ctes = _visible_ctes(table)
    needed = _needed_ctes(query, ctes)
    if needed:
        existing = list(query.args["with_"].expressions) if query.args.get("with_") else []
        query.set("with_", exp.With(expressions=[c.copy() for c in needed] + existing))
    return query, len(needed)


def _visible_ctes(node: exp.Expression) -> list[exp.CTE]:
    """CTEs `node` may read: those of enclosing queries; inside CTE i, only the ones before it."""
    ctes: list[exp.CTE] = []
    child = node
    for ancestor in ancestors(node):
        with_ = ancestor.args.get("with_") if isinstance(ancestor, exp.Query) else None
        if with_ is not None and child is not with_:
            ctes = list(with_.expressions) + ctes
        elif isinstance(ancestor, exp.With):
            ctes = list(ancestor.expressions)[: ancestor.expressions.index(child)] + ctes
        child = ancestor
    return ctes


def _needed_ctes(query: exp.Query, ctes: list[exp.CTE]) -> list[exp.CTE]:
    """The CTEs `query` reads, directly or through other CTEs, in definition order."""
    by_name = {c.alias.lower(): c for c in ctes}
    needed: set[str] = set()
    pending = [query]
    while pending:
        for table in pending.pop().find_all(exp.Table):
            name = table.name.lower()
            if not table.db and name in by_name and name not in needed:
                needed.add(name)
                pending.append(by_name[name].this)
    return [c for c in ctes if c.alias.lower() in needed]


def ancestors(node: exp.Expression) -> Iterator[exp.Expression]:
    """Parent, grandparent, … of `node`."""
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def type_name(kind: exp.DataType) -> str:
    """'FLOAT', 'BIGINT', … or 'FLOAT[]' for a WITH column type."""
    if kind.this == exp.DataType.Type.ARRAY:
        return f"{type_name(kind.expressions[0])}[]"
    return kind.this.value
