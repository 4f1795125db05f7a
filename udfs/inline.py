"""The INLINE plan: a PREDICT over a linear model as a SQL relation the engine computes itself.

    SELECT <DATA columns>, CAST(<output> AS <type>) AS <field>, ...
    FROM (SELECT *, <linear score over the features> AS __predictsql_score_0, ...
          FROM (SELECT *, CAST(COALESCE(CAST(<input> AS FLOAT), <NULL error>) AS DOUBLE) AS __predictsql_x0_0, ...
                FROM (<DATA>)))

`choose` decides, per PREDICT, whether the model's Program (engine/inline.py) may stand in for
onnxruntime; `relation` renders it as a sqlglot tree, the same for DuckDB and Spark but for the
function that fails the query on a NULL input. Arithmetic runs in DOUBLE on the inputs rounded to
the model's float32, and each output is cast to its ONNX type, so INLINE differs from STREAM only
by onnxruntime's float32 rounding.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
from sqlglot import exp

from predictsql.engine.binding import NULLS_ERROR, InputFeed, OutputColumn, ScoringPlan
from predictsql.engine.errors import BindError, NullInputError, PredictSQLError, ScoringError, as_text
from predictsql.engine.inline import Case, Const, Expr, Feature, NotInlinable, Op, Program, Score
from predictsql.engine.types import ONNX_TO_ARROW, Cast, sql_name
from predictsql.sql.plan import PredictCall

STREAM, INLINE, AUTO = "STREAM", "INLINE", "AUTO"
FEATURE, SCORE = "__predictsql_x", "__predictsql_score_"
RAISE = {"duckdb": "error", "spark": "raise_error"}  # the function that fails a query with a message
_BINARY = {"sub": exp.Sub, "div": exp.Div, "lt": exp.LT, "ge": exp.GTE, "eq": exp.EQ}
_CHAINED = {"add": exp.Add, "mul": exp.Mul}
_UNARY = {"exp": exp.Exp, "abs": exp.Abs}


def choose(call: PredictCall, plan: ScoringPlan) -> tuple[Program | None, str]:
    """The Program to inline (None: STREAM) and why not, for EXPLAIN. PLAN = AUTO, the default, inlines when it can."""
    choice = call.options.get("PLAN", AUTO)
    if choice not in (STREAM, INLINE, AUTO):
        raise BindError(f"PREDICT PLAN = {choice} ({call.label}) is not a plan; use PLAN = AUTO, STREAM or INLINE")
    if choice == STREAM:
        return None, "PLAN = STREAM"
    try:
        return _program(plan), ""
    except NotInlinable as e:
        if choice == INLINE:
            raise BindError(f"PREDICT PLAN = INLINE ({plan.model.display}): {e}; use PLAN = STREAM or AUTO") from None
        return None, str(e)


def _program(plan: ScoringPlan) -> Program:
    """The model's Program if, for this plan, INLINE returns what STREAM would; else NotInlinable saying why."""
    model = plan.model
    if model.inline is None:
        raise NotInlinable(model.inline_blocker)
    for out in plan.outputs:
        natural = ONNX_TO_ARROW[model.signature.outputs[out.source].elem_type]
        target = out.arrow_type.value_type if out.as_list else out.arrow_type
        if target != natural and (natural, target) != (pa.float32(), pa.float64()):
            raise NotInlinable(f"WITH column {out.name} asks for {sql_name(target)} of a {sql_name(natural)} output; INLINE casts outputs only to DOUBLE")
    return model.inline


def relation(data: exp.Query, plan: ScoringPlan, program: Program, dialect: str) -> exp.Select:
    """The scored relation, DATA's columns then the plan's outputs, in three layers: features
    (each DATA input cast and NULL-checked once), linear scores, outputs."""
    render = _Renderer(plan, dialect)
    layers = [
        [_alias(render.feature(feed, j), render.names[(feed.name, j)]) for feed in plan.inputs for j in range(len(feed.columns))],
        [_alias(render(s), f"{SCORE}{i}") for i, s in enumerate(program.scores)],
    ]
    source: exp.Query = data
    for n, columns in enumerate(layers):
        source = _select([exp.Star(), *columns], source, n)
    outputs = [_alias(render.output(program, o), o.field) for o in plan.outputs]
    return _select([_column(name) for name in plan.data_schema.names] + outputs, source, len(layers))


def _select(columns: list[exp.Expression], source: exp.Query, layer: int) -> exp.Select:
    """SELECT columns FROM (source) AS __predictsql_<layer>; built in place (no copies: the trees are large)."""
    subquery = exp.Subquery(this=source, alias=exp.TableAlias(this=exp.to_identifier(f"__predictsql_{layer}")))
    return exp.Select(expressions=columns).from_(subquery, copy=False)


def _alias(value: exp.Expression, name: str) -> exp.Alias:
    return exp.Alias(this=value, alias=exp.to_identifier(name, quoted=True))


class _Renderer:
    """Program expressions → sqlglot expressions over the feature and score columns."""

    def __init__(self, plan: ScoringPlan, dialect: str) -> None:
        self.plan = plan
        self.dialect = dialect
        self.names = {(feed.name, j): f"{FEATURE}{n}_{j}" for n, feed in enumerate(plan.inputs) for j in range(len(feed.columns))}

    def __call__(self, node: Expr) -> exp.Expression:
        if isinstance(node, Feature):
            return _column(self.names[(node.input, node.index)])
        if isinstance(node, Score):
            return _column(f"{SCORE}{node.index}")
        if isinstance(node, Const):
            return _constant(node.value)
        if isinstance(node, Case):
            case = exp.Case(ifs=[exp.If(this=self(c), true=self(v)) for c, v in node.whens])
            return case.else_(self(node.default)) if node.default is not None else case
        args = [self(a) for a in node.args]
        if node.fn in _CHAINED:
            result = args[0]
            for arg in args[1:]:
                result = _CHAINED[node.fn](this=result, expression=arg)
            return exp.paren(result)
        if node.fn in _BINARY:
            return exp.paren(_BINARY[node.fn](this=args[0], expression=args[1]))
        if node.fn in _UNARY:
            return _UNARY[node.fn](this=args[0])
        if node.fn == "greatest":
            return exp.Greatest(this=args[0], expressions=args[1:])
        raise NotInlinable(f"no SQL for operation {node.fn}")

    def output(self, program: Program, out: OutputColumn) -> exp.Expression:
        """One output column: a value or (FLOAT[]) all values of the ONNX output, cast to the WITH type."""
        values = program.outputs[self.plan.model.signature.outputs[out.source].name]
        if out.as_list:
            return exp.Array(expressions=[_cast(self(v), out.arrow_type.value_type) for v in values])
        return _cast(self(values[out.pick or 0]), out.arrow_type)

    def feature(self, feed: InputFeed, j: int) -> exp.Expression:
        """DATA column j of an input as the model sees it (FLOAT), in DOUBLE, failing the query as STREAM
        would on a NULL (NULLS = ERROR) or on an integer FLOAT cannot hold exactly."""
        field = self.plan.data_schema.field(feed.columns[j])
        name, column = field.name, _column(field.name)
        value = _cast(column, feed.arrow_type)
        display = self.plan.model.display
        if feed.casts[j] == Cast.CHECKED:
            inexact = exp.NEQ(this=_cast(value, field.type), expression=column)
            fix = f"write CAST({name} AS {sql_name(feed.arrow_type)}) in the DATA query to accept rounding"
            value = exp.Case(ifs=[exp.If(this=inexact, true=self._fail(ScoringError(f"PREDICT input '{name}' ({display}) has a value that {feed.arrow_type} cannot hold exactly: {fix}")))]).else_(value)
        if self.plan.nulls == NULLS_ERROR:
            fix = f"filter the rows (WHERE {name} IS NOT NULL), fill them (COALESCE({name}, ...)) in the DATA query, or add NULLS = PROPAGATE to score them as NULL"
            value = exp.Coalesce(this=value, expressions=[self._fail(NullInputError(f"PREDICT input '{name}' ({display}) is NULL: {fix}"))])
        return _cast(value, pa.float64())

    def _fail(self, error: PredictSQLError) -> exp.Expression:
        """A call that fails the query with `error`, which the adapter raises again as itself."""
        return exp.Anonymous(this=RAISE[self.dialect], expressions=[exp.Literal.string(as_text(error))])


def _column(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


def _cast(value: exp.Expression, arrow_type: pa.DataType) -> exp.Cast:
    return exp.Cast(this=value, to=_sql_type(arrow_type).copy())


@functools.lru_cache(maxsize=None)
def _sql_type(arrow_type: pa.DataType) -> exp.DataType:
    """Parsed once per type: a PREDICT casts every input and output."""
    return exp.DataType.build(sql_name(arrow_type))


def _constant(value: float | int | str) -> exp.Expression:
    """A literal the engines read exactly: floats in (shortest round-trip) scientific notation are DOUBLE, not DECIMAL."""
    if isinstance(value, str):
        return exp.Literal.string(value)
    literal = exp.Literal.number(np.format_float_scientific(abs(value), unique=True, trim="-") if isinstance(value, float) else abs(value))
    return exp.paren(exp.Neg(this=literal)) if value < 0 else literal
