"""Find the PREDICT calls of a statement and read their arguments: syntax-level binding.

Semantic binding (DATA schema against the model signature) needs the engine and happens in
predictsql.engine.binding; this module only knows sqlglot trees.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator

from sqlglot import exp

from predictsql.engine.errors import BindError
from predictsql.sql.dialect import PredictTable, to_sql, type_name
from predictsql.sql.plan import LITERAL, QUERY, VARIABLE, ModelRef, PredictCall
from predictsql.sql.ranges import column_ranges

RUNTIMES = ("ONNX", "SPARKML")  # SPARKML: a saved Spark MLlib model, scored by Spark (udfs/spark_mllib.py)
OPTIONS = ("RUNTIME", "NULLS", "BATCH_SIZE", "PLAN")


def outermost(tree: exp.Expr) -> list[PredictTable]:
    """The PREDICT nodes of `tree` in a fixed order, outermost only: those inside another PREDICT's DATA belong to it."""
    return [n for n in tree.find_all(PredictTable) if not any(isinstance(a, PredictTable) for a in ancestors(n))]


def find_predicts(tree: exp.Expr) -> list[PredictCall]:
    """The PREDICT calls of `tree`, in `outermost` order (the order `replace_predicts` expects relations in)."""
    return [_read_call(node, index) for index, node in enumerate(outermost(tree))]


def data_alias(data: exp.Expr) -> str:
    """The name DATA's columns are read through: its alias, else a table's own name ('' for an unaliased subquery)."""
    return data.alias or (data.name if isinstance(data, exp.Table) else "")


def source_of(node: PredictTable) -> exp.Table:
    """The table source a PREDICT stands as (it carries the PREDICT alias); a PREDICT anywhere else is a BindError."""
    table = node.parent
    if not isinstance(table, exp.Table):
        raise BindError(f"{to_sql(node)[:80]}… is a table source, not a value: write it in FROM or JOIN, e.g. SELECT d.*, p.Score FROM PREDICT(...) WITH (Score FLOAT) AS p")
    return table


def _filtered(node: PredictTable) -> bool:
    """Whether a condition outside the PREDICT (WHERE, JOIN … ON, HAVING, QUALIFY) may read its outputs: an engine may
    copy a deterministic scoring call into such a filter. Any one counts, as an output may be read under another name."""
    root = node.root()
    conditions = [*root.find_all(exp.Where, exp.Having, exp.Qualify), *(j.args["on"] for j in root.find_all(exp.Join) if j.args.get("on"))]
    return any(not _inside(condition, node) for condition in conditions)


def _inside(expression: exp.Expr, node: exp.Expr) -> bool:
    parent = expression.parent
    while parent is not None and parent is not node:
        parent = parent.parent
    return parent is node


def _read_call(node: PredictTable, index: int) -> PredictCall:
    table = source_of(node)
    options = {o.name.upper(): o.expression.name.upper() if isinstance(o.expression, exp.Var) else o.expression.name for o in node.args.get("options") or []}
    for name in options:
        if name not in OPTIONS:
            close = difflib.get_close_matches(name, OPTIONS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise BindError(f"PREDICT option {name} is not one predictsql knows; {hint}the options are {', '.join(OPTIONS)}")
    runtime = options.get("RUNTIME", "ONNX")
    if runtime not in RUNTIMES:
        raise BindError(f"PREDICT RUNTIME = {runtime} is not supported; use RUNTIME = ONNX (or SPARKML on Spark)")
    alias = table.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.columns:
        renamed = ", ".join(c.name for c in alias.columns)
        raise BindError(f"PREDICT ... AS {alias.name}({renamed}): PREDICT's outputs keep their names; rename them in the select list ({alias.name}.Score AS {alias.columns[0].name})")
    data = node.args["data"]
    columns = node.args.get("columns")
    names = [c.name.lower() for c in columns or []]
    repeated = next((c.name for c in columns or [] if names.count(c.name.lower()) > 1), None)
    if repeated is not None:
        raise BindError(f"PREDICT WITH names {repeated} twice: name each output once (rename in the select list: p.{repeated} AS other)")
    pushed = list(node.args.get("pushed") or [])
    query, inherited = _data_query(data, table, pushed)
    return PredictCall(
        index=index,
        model=model_ref(node.args["model"]),
        data=query,
        data_alias=data_alias(data) or None,
        alias=table.alias or None,
        columns=tuple((c.name, type_name(c.args["kind"])) for c in columns) if columns else None,
        options=options,
        inherited_ctes=inherited,
        rereads=_rereads(node),
        filtered=_filtered(node),
        pushed=tuple(to_sql(c) for c in pushed),
        ranges=tuple(column_ranges(pushed).items()),
    )


def _rereads(node: PredictTable) -> str:
    """Why the engine may read this PREDICT's relation more than once (a stream is read once), or ''."""
    if node.root().find(exp.Pivot):
        return "the statement uses PIVOT, which reads its source more than once"
    for child, ancestor in itertools.pairwise([node, *ancestors(node)]):
        if isinstance(ancestor, exp.CTE):
            return "it stands in a CTE, which the statement may read more than once"
        if isinstance(ancestor, exp.Subquery) and not isinstance(ancestor.parent, (exp.From, exp.Join, exp.Subquery, exp.Copy)) and ancestor.parent is not None:
            return "it stands in a subquery expression, which the engine may run once per outer row"
        if isinstance(ancestor, exp.Lateral) or (isinstance(ancestor, exp.Join) and child is not ancestor.this):
            return "it stands in a join condition or a LATERAL, which the engine may run more than once"
    return ""


def described_model(statement: exp.Expr) -> ModelRef:
    """The MODEL of a DESCRIBE MODEL statement."""
    return model_ref(statement.this)


def model_ref(model: exp.Expr) -> ModelRef:
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
    raise BindError(
        f"PREDICT MODEL = {label} is not a model: use @variable, a scalar subquery (SELECT blob FROM ...), a 0x… literal, "
        "or a string: a file path, 'models:/name@alias' (MLflow) or 'catalog:/name' (the database's model catalog)"
    )


def _data_query(data: exp.Expr, table: exp.Expr, pushed: list[exp.Expr]) -> tuple[exp.Query, int]:
    """DATA as a query of its own: SELECT * FROM <table>, or the subquery, filtered by the conjuncts pushed below the
    PREDICT (under DATA's alias, which they are written with), plus (first) the CTEs it reads; and their count."""
    if isinstance(data, exp.Subquery):
        query: exp.Query = data.this.copy()
    elif isinstance(data, exp.Table):
        source = data.copy()
        source.set("alias", None)
        query = exp.select("*").from_(source)
    else:
        raise BindError(f"PREDICT DATA = {to_sql(data)} is not a relation: use a table, view, CTE name or (SELECT ...)")
    if pushed:
        inner = exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier(data_alias(data))))
        query = exp.select("*").from_(inner).where(exp.and_(*[c.copy() for c in pushed]))
    ctes = _visible_ctes(table)
    needed = _needed_ctes(query, ctes)
    if needed:
        own = query.args.get("with_")
        existing = list(own.expressions) if own else []
        recursive = any(isinstance(c.parent, exp.With) and c.parent.args.get("recursive") for c in needed) or bool(own and own.args.get("recursive"))
        query.set("with_", exp.With(expressions=[c.copy() for c in needed] + existing, recursive=recursive))  # WITH RECURSIVE kept: a CTE may read itself
    return query, len(needed)


def _visible_ctes(node: exp.Expr) -> list[exp.CTE]:
    """CTEs `node` may read: those of enclosing queries and statements; inside CTE i, only the ones before it."""
    ctes: list[exp.CTE] = []
    child = node
    for ancestor in ancestors(node):
        with_ = ancestor.args.get("with_") if not isinstance(ancestor, exp.With) else None  # a query's, or INSERT's (WITH c AS (…) INSERT …)
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


def ancestors(node: exp.Expr) -> Iterator[exp.Expr]:
    """Parent, grandparent, … of `node`."""
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent

