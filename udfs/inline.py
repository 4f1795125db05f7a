"""The INLINE plan: a PREDICT over a linear model as a SQL relation the engine computes itself.

    SELECT <DATA columns>, CAST(__predictsql_o0_0 AS FLOAT) AS <output>, ...        -- outputs, typed
    FROM (SELECT *, <output value over named values> AS __predictsql_o0_0, ...      -- outputs, DOUBLE
          FROM (SELECT *, <value over features and earlier values> AS __predictsql_v0, ...  -- one layer per depth
                FROM (SELECT *, CAST(COALESCE(CAST(<input> AS FLOAT), <NULL error>) AS DOUBLE) AS __predictsql_x0_0, ...
                      FROM (<DATA>))))

`inline_query` decides, per PREDICT, whether the model's Program (engine/inline.py) may stand in for
onnxruntime; `relation` renders it as a sqlglot tree, the same for DuckDB and Spark but for the
function that fails the query (a NULL input, an integer FLOAT cannot hold). Arithmetic runs in
DOUBLE on the inputs rounded to the model's FLOAT, and each output is rounded to its ONNX type,
so INLINE differs from STREAM by onnxruntime's float32 rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
from sqlglot import exp

from predictsql.engine.binding import NULLS_ERROR, InputFeed, OutputColumn, ScoringPlan
from predictsql.engine.errors import BindError, NullInputError, PredictSQLError, ScoringError
from predictsql.engine.inline import Case, Const, Expr, Feature, NotInlinable, Op, Program, Ref
from predictsql.engine.types import ONNX_TO_ARROW, Cast, sql_name
from predictsql.sql.plan import PredictCall, in_place

Fail = Callable[[PredictSQLError], str]
FEATURE, VALUE, OUTPUT = "__predictsql_x", "__predictsql_v", "__predictsql_o"
EXACT_FLOAT_INTEGER = "16777216"  # 2^24: the largest integers FLOAT holds exactly (STREAM's safe cast refuses beyond)
FLOAT_OVERFLOW = "3.4028235677973366e+38"  # 2^128 - 2^103: from here up, rounding to FLOAT gives inf
RAISE = {"duckdb": "error", "spark": "raise_error"}  # the function that fails a query with a message
_BINARY = {"sub": exp.Sub, "div": exp.Div, "lt": exp.LT, "ge": exp.GTE, "eq": exp.EQ}
_CHAINED = {"add": exp.Add, "mul": exp.Mul}
_UNARY = {"exp": exp.Exp, "abs": exp.Abs}  # with greatest and round32, the rest of engine/inline's Op names


def inline_query(call: PredictCall, data: exp.Query, plan: ScoringPlan, dialect: str, fail: Fail, forced: bool = False) -> tuple[exp.Query | None, str]:
    """The PREDICT's INLINE relation over its (rewritten) DATA, or None and why not; `forced` (PLAN = INLINE) makes why-not a BindError.
    `fail` turns an error the SQL may raise into the text of the engine's error() call."""
    try:
        program = _program(plan)
    except NotInlinable as e:
        if forced:
            raise BindError(f"PREDICT PLAN = INLINE ({plan.model.display}): {e}; use PLAN = AUTO, UDF or STREAM") from None
        return None, str(e)
    return relation(in_place(data, call), plan, program, dialect, fail), ""


def _program(plan: ScoringPlan) -> Program:
    """The model's Program if, for this plan, INLINE returns what STREAM would; else NotInlinable saying why."""
    model = plan.model
    if model.inline is None:
        raise NotInlinable(model.inline_blocker)
    listed = next((feed.name for feed in plan.inputs if feed.whole), None)
    if listed is not None:
        raise NotInlinable(f"input '{listed}' is fed a list column, and INLINE reads one DATA column per value")
    for out in plan.outputs:
        natural = ONNX_TO_ARROW[model.signature.outputs[out.source].elem_type]
        target = out.arrow_type.value_type if out.as_list else out.arrow_type
        if target != natural and (natural, target) != (pa.float32(), pa.float64()):
            raise NotInlinable(f"WITH column {out.name} asks for {sql_name(target)} of a {sql_name(natural)} output; INLINE casts outputs only to DOUBLE")
    return model.inline


def relation(data: exp.Query, plan: ScoringPlan, program: Program, dialect: str, fail: Fail) -> exp.Select:
    """The scored relation, DATA's columns then the plan's outputs: one subquery layer for the features
    (each DATA input cast and checked once), one per dependency depth of the named values, then the outputs."""
    render = _Renderer(plan, dialect, fail)
    raw = [program.outputs[plan.model.signature.outputs[o.source].name] for o in plan.outputs]
    needed = _needed(program, [v for values in raw for v in values])
    layers = [[_alias(render.feature(feed, j), render.names[(feed.name, j)]) for feed in plan.inputs for j in range(len(feed.columns))]]
    depths: dict[int, int] = {}
    for i in sorted(needed):
        depths[i] = depth = 1 + max((depths[ref.index] for ref in _refs(program.values[i])), default=0)
        layers += [[] for _ in range(depth + 1 - len(layers))]
        layers[depth].append(_alias(render(program.values[i]), f"{VALUE}{i}"))
    layers.append([_alias(render(v), f"{OUTPUT}{k}_{i}") for k, values in enumerate(raw) for i, v in enumerate(values)])
    source: exp.Query = data
    for n, columns in enumerate(layers):
        source = _select([exp.Star(), *columns], source, n)
    outputs = [_alias(render.output(k, len(values), o), o.field) for k, (values, o) in enumerate(zip(raw, plan.outputs, strict=True))]
    return _select([*(_column(name) for name in plan.data_schema.names), *outputs], source, len(layers))


def _needed(program: Program, outputs: list[Expr]) -> set[int]:
    """The named values the requested outputs read, directly or through other values."""
    needed: set[int] = set()
    stack = [ref for value in outputs for ref in _refs(value)]
    while stack:
        ref = stack.pop()
        if ref.index not in needed:
            needed.add(ref.index)
            stack += _refs(program.values[ref.index])
    return needed


def _refs(node: Expr) -> Iterator[Ref]:
    if isinstance(node, Ref):
        yield node
    elif isinstance(node, Op):
        for arg in node.args:
            yield from _refs(arg)
    elif isinstance(node, Case):
        for condition, value in node.whens:
            yield from _refs(condition)
            yield from _refs(value)
        if node.default is not None:
            yield from _refs(node.default)


def _select(columns: Sequence[exp.Expr], source: exp.Query, layer: int) -> exp.Select:
    """SELECT columns FROM (source) AS __predictsql_<layer>; built in place (no copies: the trees are large)."""
    subquery = exp.Subquery(this=source, alias=exp.TableAlias(this=exp.to_identifier(f"__predictsql_{layer}")))
    return exp.Select(expressions=columns).from_(subquery, copy=False)


def _alias(value: exp.Expr, name: str) -> exp.Alias:
    return exp.Alias(this=value, alias=exp.to_identifier(name, quoted=True))


class _Renderer:
    """Program expressions → sqlglot expressions over the feature and value columns."""

    def __init__(self, plan: ScoringPlan, dialect: str, fail: Fail) -> None:
        self.plan = plan
        self.dialect = dialect
        self.fail = fail
        self.names = {(feed.name, j): f"{FEATURE}{n}_{j}" for n, feed in enumerate(plan.inputs) for j in range(len(feed.columns))}

    def __call__(self, node: Expr) -> exp.Expr:
        if isinstance(node, Feature):
            return _column(self.names[(node.input, node.index)])
        if isinstance(node, Ref):
            return _column(f"{VALUE}{node.index}")
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
        if node.fn == "round32":
            return _cast(_to_float(args[0]), pa.float64())
        if node.fn == "greatest":
            return exp.Greatest(this=args[0], expressions=args[1:])
        return _UNARY[node.fn](this=args[0])

    def output(self, k: int, width: int, out: OutputColumn) -> exp.Expr:
        """Output column k from its values' DOUBLE columns: one value or (FLOAT[]) all, in the ONNX type, then the WITH
        type. A list is NULL, not a list of NULLs, when the row was not scored (NULLS = PROPAGATE), as under STREAM."""
        natural = ONNX_TO_ARROW[self.plan.model.signature.outputs[out.source].elem_type]
        if not out.as_list:
            return _cast(self._natural(_column(f"{OUTPUT}{k}_{out.pick or 0}"), natural), out.arrow_type)
        items = [_cast(self._natural(_column(f"{OUTPUT}{k}_{i}"), natural), out.arrow_type.value_type) for i in range(width)]
        unscored = exp.Is(this=_column(f"{OUTPUT}{k}_0"), expression=exp.null())
        return exp.Case(ifs=[exp.If(this=unscored, true=exp.null())]).else_(exp.Array(expressions=items))

    @staticmethod
    def _natural(value: exp.Expr, natural: pa.DataType) -> exp.Expr:
        """A DOUBLE result as the ONNX output type: FLOAT rounds (to ±inf beyond its range, as onnxruntime does)."""
        return _to_float(value) if natural == pa.float32() else _cast(value, natural)

    def feature(self, feed: InputFeed, j: int) -> exp.Expr:
        """DATA column j of an input as the model sees it (FLOAT), in DOUBLE, failing the query as STREAM
        would on a NULL (NULLS = ERROR) or on an integer beyond FLOAT's exact range (±2^24)."""
        field = self.plan.data_schema.field(feed.columns[j])
        name, column = field.name, _column(field.name)
        display = self.plan.model.display
        value = _to_float(column) if feed.casts[j] == Cast.ROUNDING else _cast(column, feed.arrow_type)
        if feed.casts[j] == Cast.CHECKED:
            limit = exp.Literal.number(EXACT_FLOAT_INTEGER)
            beyond = exp.or_(exp.GT(this=column.copy(), expression=limit), exp.LT(this=column.copy(), expression=exp.Neg(this=limit.copy())))
            fix = f"write CAST({name} AS {sql_name(feed.arrow_type)}) in the DATA query to accept rounding"
            fail = self._fail(ScoringError(f"PREDICT input '{name}' ({display}) has a value that {feed.arrow_type} cannot hold exactly: {fix}"))
            value = exp.Case(ifs=[exp.If(this=beyond, true=fail)]).else_(value)
        if self.plan.nulls == NULLS_ERROR:
            fix = f"filter the rows (WHERE {name} IS NOT NULL), fill them (COALESCE({name}, ...)) in the DATA query, or add NULLS = PROPAGATE to score them as NULL"
            value = exp.Coalesce(this=value, expressions=[self._fail(NullInputError(f"PREDICT input '{name}' ({display}) is NULL: {fix}"))])
        return _cast(value, pa.float64())

    def _fail(self, error: PredictSQLError) -> exp.Expr:
        """A call that fails the query with `error`, which the adapter raises again as itself."""
        return exp.Anonymous(this=RAISE[self.dialect], expressions=[exp.Literal.string(self.fail(error))])


def _column(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


def _cast(value: exp.Expr, arrow_type: pa.DataType) -> exp.Cast:
    return exp.Cast(this=value, to=_sql_type(arrow_type).copy())


def _to_float(value: exp.Expr) -> exp.Expr:
    """CAST(value AS FLOAT), but ±inf where rounding overflows (DuckDB would raise instead). Both engines order NaN
    above every number, so NaN is kept apart before the overflow tests; NULL falls through to the cast."""
    overflow = exp.Literal.number(FLOAT_OVERFLOW)
    infinity = [_cast(exp.Literal.string(text), pa.float32()) for text in ("inf", "-inf")]
    in_range = exp.and_(exp.LT(this=value.copy(), expression=overflow.copy()), exp.GT(this=value.copy(), expression=exp.Neg(this=overflow.copy())))
    return exp.Case(
        ifs=[
            exp.If(this=in_range, true=_cast(value.copy(), pa.float32())),
            exp.If(this=exp.IsNan(this=value.copy()), true=_cast(value.copy(), pa.float32())),
            exp.If(this=exp.GTE(this=value.copy(), expression=overflow), true=infinity[0]),
            exp.If(this=exp.LTE(this=value.copy(), expression=exp.Neg(this=overflow.copy())), true=infinity[1]),
        ]
    ).else_(_cast(value, pa.float32()))


@functools.cache
def _sql_type(arrow_type: pa.DataType) -> exp.DataType:
    """Parsed once per type: a PREDICT casts every input and output."""
    return exp.DataType.build(sql_name(arrow_type))


def _constant(value: float | int | str) -> exp.Expr:
    """A literal the engines read exactly: floats in (shortest round-trip) scientific notation are DOUBLE, not DECIMAL."""
    if isinstance(value, str):
        return exp.Literal.string(value)
    literal = exp.Literal.number(np.format_float_scientific(abs(value), unique=True, trim="-") if isinstance(value, float) else abs(value))
    return exp.paren(exp.Neg(this=literal)) if value < 0 else literal
