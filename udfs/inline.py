"""The INLINE plan: a PREDICT over a linear model or small tree ensemble as a SQL relation the engine computes itself.

    SELECT <DATA columns>, CAST(__predictsql_o0_0 AS FLOAT) AS <output>, ...        -- outputs, typed
    FROM (SELECT *, <output value over named values> AS __predictsql_o0_0, ...      -- outputs, DOUBLE
          FROM (SELECT *, <value over features and earlier values> AS __predictsql_v0, ...  -- one layer per depth
                FROM (SELECT *, CAST(COALESCE(CAST(<input> AS FLOAT), <NULL error>) AS DOUBLE) AS __predictsql_x0_0, ...
                      FROM (<DATA>))))

`inline_query` decides, per PREDICT, whether the model's Program (engine/inline.py) may stand in for
onnxruntime; `relation` renders it as a sqlglot tree, the same for DuckDB and Spark but for the
function that fails the query (a NULL input, an integer FLOAT cannot hold). Arithmetic runs in
DOUBLE on the inputs rounded to the model's FLOAT (a linear score over FLOAT inputs in FLOAT, as
onnxruntime computes it), and each output is rounded to its ONNX type, so INLINE differs from
STREAM by onnxruntime's float32 rounding.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
from sqlglot import exp

from predictsql.engine.binding import NULLS_ERROR, InputFeed, OutputColumn, ScoringPlan
from predictsql.engine.errors import BindError, NullInputError, PredictSQLError, ScoringError
from predictsql.engine.inline import EXACT_DOUBLE, FLOAT_LOWEST, Case, Const, Expr, Feature, NotInlinable, Op, Program, Ref, bounds
from predictsql.engine.types import ONNX_TO_ARROW, Cast, sql_name
from predictsql.sql.plan import PredictCall, in_place

Fail = Callable[[PredictSQLError], str]
FEATURE, VALUE, OUTPUT = "__predictsql_x", "__predictsql_v", "__predictsql_o"
EXACT_INTEGER = {pa.float32(): 2**24, pa.float64(): EXACT_DOUBLE}  # beyond, STREAM's safe cast refuses integers
FLOAT_RANGE = (FLOAT_LOWEST, -FLOAT_LOWEST)  # FLOAT's largest finite values: a DOUBLE inside casts without overflow
RAISE = {"duckdb": "error", "spark": "raise_error"}  # the function that fails a query with a message
_BINARY = {"sub": exp.Sub, "div": exp.Div, "lt": exp.LT, "le": exp.LTE, "gt": exp.GT, "ge": exp.GTE, "eq": exp.EQ, "ne": exp.NEQ}
CHAIN = 64  # the terms of one left-to-right chain: a longer sum is a chain of such chains
_CHAINED = {"add": exp.Add, "mul": exp.Mul, "and": exp.And, "or": exp.Or}
_UNARY = {"exp": exp.Exp, "sqrt": exp.Sqrt, "abs": exp.Abs, "isnan": exp.IsNan}  # with greatest, round32, float32 and fail, the rest of engine/inline's Op names


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
    """The scored relation, DATA's columns then the plan's outputs: one subquery layer for the features read more than
    once (each DATA input cast and checked once), one per dependency depth of the values read more than once, then the
    outputs. What is read once is written where it is read, so a linear model is one expression over its inputs."""
    raw = [program.outputs[plan.model.signature.outputs[o.source].name] for o in plan.outputs]
    chosen = [{o.pick: values[o.pick]} if isinstance(o.pick, int) else dict(enumerate(values)) for values, o in zip(raw, plan.outputs, strict=True)]
    needed = _needed(program, [v for values in chosen for v in values.values()])
    pick = plan.outputs[0].pick if raw else None
    checked = raw[0][pick or 0] if plan.nulls == NULLS_ERROR and raw and not isinstance(pick, str) else None
    bounded = bounds(program)
    fused = (  # one output (a query that reads none scores nothing), no CHECKED cast (a NULL's error comes first), every input read
        checked is not None
        and len(plan.outputs) == 1
        and Cast.CHECKED not in {c for feed in plan.inputs for c in feed.casts}
        and _strict_features(program, checked, bounded) == {Feature(f.name, j) for f in plan.inputs for j in range(len(f.columns))}
    )
    anchor = _anchor(program, list(chosen[0].values())) if plan.nulls == NULLS_ERROR and raw and not fused else None
    read = [program.values[i] for i in needed] + [v for values in chosen for v in values.values()]
    uses = Counter(leaf for node in read for leaf in _leaves(node)) + Counter(ref for node in read for ref in _rounded_refs(node))
    render = _Renderer(plan, dialect, fail, program, {i for i in needed if uses[Ref(i)] == 1}, fused)
    features = [(feed, j) for feed in plan.inputs for j in range(len(feed.columns))]
    for feed, j in features:
        feature = Feature(feed.name, j)
        if uses[feature] == 1 and feature != anchor and feed.casts[j] != Cast.CHECKED:  # a CHECKED cast's error, and the anchor, must run on every row
            render.inlined_features[feature] = render.feature(feed, j, anchor)
    layers = [[_alias(render.double(feed, render.feature(feed, j, anchor)), render.names[(feed.name, j)]) for feed, j in features if Feature(feed.name, j) not in render.inlined_features]]
    depths: dict[int, int] = {}
    for i in sorted(needed - render.inlined):
        depths[i] = depth = 1 + max((depths[ref.index] for ref in render.named_refs(program.values[i])), default=0)
        layers += [[] for _ in range(depth + 1 - len(layers))]
        layers[depth].append(_alias(render(program.values[i]), f"{VALUE}{i}"))
    layers.append([_alias(render(v), f"{OUTPUT}{k}_{i}") for k, values in enumerate(chosen) for i, v in values.items()])
    source: exp.Query = data
    for n, columns in enumerate(c for c in layers if c):
        source = _select([exp.Star(), *columns], source, n)
    in_range = [all(FLOAT_RANGE[0] <= b <= FLOAT_RANGE[1] for v in values.values() for b in bounded(v)) for values in chosen]
    outputs = [render.output(k, len(values), o, fits) for k, (values, o, fits) in enumerate(zip(raw, plan.outputs, in_range, strict=True))]
    if plan.nulls != NULLS_ERROR:  # a row with a NULL input is not scored, as under STREAM, whichever inputs its outputs read
        outputs = [_unless_unscored(plan, o) for o in outputs]
    outputs = [_alias(o, out.field) for o, out in zip(outputs, plan.outputs, strict=True)]
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


def _anchor(program: Program, values: Sequence[Expr]) -> Feature | None:
    """A feature the first output reads, whose column checks every input for NULL at once (see _Renderer.feature)."""
    queue, seen = list(values), set()
    while queue:
        for leaf in _leaves(queue.pop(0)):
            if isinstance(leaf, Feature):
                return leaf
            if leaf.index not in seen:
                seen.add(leaf.index)
                queue.append(program.values[leaf.index])
    return None


def _strict_features(program: Program, node: Expr, bounded: Callable[[Expr], tuple[float, float]]) -> set[Feature] | None:
    """The features an expression of only +, -, ×, exp (in FLOAT or DOUBLE) and division by a positive value reads, or None if it has another
    operator: such an expression is NULL exactly where one of those features is (both engines give exp's overflow as inf,
    and no division is by zero, which Spark makes NULL), so one IS NULL test of its value checks them all (_Renderer.output)."""
    if isinstance(node, Feature):
        return {node}
    if isinstance(node, Ref):
        return _strict_features(program, program.values[node.index], bounded)
    if isinstance(node, Const):
        return set()
    if isinstance(node, Op) and (node.fn in ("add", "sub", "mul", "exp", "float32") or (node.fn == "div" and bounded(node.args[1])[0] > 0)):
        found: set[Feature] = set()
        for arg in node.args:
            features = _strict_features(program, arg, bounded)
            if features is None:
                return None
            found |= features
        return found
    return None


def _refs(node: Expr) -> Iterator[Ref]:
    return (leaf for leaf in _leaves(node) if isinstance(leaf, Ref))


def _rounded_refs(node: Expr) -> Iterator[Ref]:
    """The values an expression reads inside a round32, whose DuckDB cast writes its argument thrice: counted once more,
    each is named rather than written in place, where nested rounds would triple the SQL at each level."""
    if isinstance(node, Op):
        for arg in node.args:
            yield from _refs(arg) if node.fn == "round32" else _rounded_refs(arg)
    elif isinstance(node, Case):
        for part in [value for when in node.whens for value in when] + ([node.default] if node.default is not None else []):
            yield from _rounded_refs(part)


def _leaves(node: Expr) -> Iterator[Ref | Feature]:
    """The values and features an expression reads (not through the values it reads)."""
    if isinstance(node, Ref | Feature):
        yield node
    elif isinstance(node, Op):
        for arg in node.args:
            yield from _leaves(arg)
    elif isinstance(node, Case):
        for condition, value in node.whens:
            yield from _leaves(condition)
            yield from _leaves(value)
        if node.default is not None:
            yield from _leaves(node.default)


def _select(columns: Sequence[exp.Expr], source: exp.Query, layer: int) -> exp.Select:
    """SELECT columns FROM (source) AS __predictsql_<layer>; built in place (no copies: the trees are large)."""
    subquery = exp.Subquery(this=source, alias=exp.TableAlias(this=exp.to_identifier(f"__predictsql_{layer}")))
    return exp.Select(expressions=columns).from_(subquery, copy=False)


def _alias(value: exp.Expr, name: str) -> exp.Alias:
    return exp.Alias(this=value, alias=exp.to_identifier(name, quoted=True))


class _Renderer:
    """Program expressions → sqlglot expressions over the feature and value columns."""

    def __init__(self, plan: ScoringPlan, dialect: str, fail: Fail, program: Program, inlined: set[int], fused: bool) -> None:
        self.plan = plan
        self.dialect = dialect
        self.fail = fail
        self.program = program
        self.inlined = inlined  # values written where they are read
        self.fused = fused  # the first output's value tests every input for NULL (NULLS = ERROR), not the features
        self.inlined_features: dict[Feature, exp.Expr] = {}  # as the model sees them (FLOAT, DOUBLE or text)
        self.feeds = {feed.name: feed for feed in plan.inputs}
        self.names = {(feed.name, j): f"{FEATURE}{n}_{j}" for n, feed in enumerate(plan.inputs) for j in range(len(feed.columns))}

    def __call__(self, node: Expr) -> exp.Expr:
        if isinstance(node, Feature):
            written = self.inlined_features.get(node)
            return self.double(self.feeds[node.input], written) if written is not None else _column(self.names[(node.input, node.index)])
        if isinstance(node, Ref):
            return exp.paren(self(self.program.values[node.index]), copy=False) if node.index in self.inlined else _column(f"{VALUE}{node.index}")
        if isinstance(node, Const):
            return _constant(node.value)
        if isinstance(node, Case):
            case = exp.Case(ifs=[exp.If(this=self(c), true=self(v)) for c, v in node.whens])
            return case.else_(self(node.default)) if node.default is not None else case
        if node.fn == "float32":
            return self._float32(node.args[0])
        args = [self(a) for a in node.args]
        if node.fn in _CHAINED:
            return _chained(node.fn, args)
        if node.fn in _BINARY:
            return exp.paren(_BINARY[node.fn](this=args[0], expression=args[1]), copy=False)
        if node.fn == "round32":
            return _cast(self.to_float(args[0]), pa.float64())
        if node.fn == "greatest":
            return exp.Greatest(this=args[0], expressions=args[1:])
        if node.fn == "fail":  # a row not scored (NULLS = PROPAGATE) does not fail, as onnxruntime never sees it
            failed = self._fail(exp.Literal.string(self.fail(ScoringError(f"PREDICT ({self.plan.model.display}): {args[0].name}"))))
            return failed if self.plan.nulls == NULLS_ERROR else _unless_unscored(self.plan, failed)
        return _UNARY[node.fn](this=args[0])

    def _float32(self, node: Expr) -> exp.Expr:
        """A float32 score's sum of products in FLOAT: its (FLOAT-exact) constants and features as FLOAT values."""
        if isinstance(node, Const):
            return _cast(_constant(node.value), pa.float32())
        if isinstance(node, Feature):
            written = self.inlined_features.get(node)
            return written if written is not None else _cast(_column(self.names[(node.input, node.index)]), pa.float32())
        assert isinstance(node, Op), node  # engine/inline's _linear builds adds of products
        return _chained(node.fn, [self._float32(a) for a in node.args])

    def double(self, feed: InputFeed, value: exp.Expr) -> exp.Expr:
        """A feature's value as the arithmetic reads it: numbers in DOUBLE, text as it is."""
        return value if feed.arrow_type == pa.string() else _cast(value, pa.float64())

    def named_refs(self, node: Expr) -> Iterator[Ref]:
        """The named values an expression reads, through the ones written in place."""
        for ref in _refs(node):
            if ref.index in self.inlined:
                yield from self.named_refs(self.program.values[ref.index])
            else:
                yield ref

    def output(self, k: int, width: int, out: OutputColumn, in_range: bool) -> exp.Expr:
        """Output column k from its values' DOUBLE columns: one value or (FLOAT[]) all, in the ONNX type, then the WITH
        type (`in_range`: the values cannot leave FLOAT's range). A row not scored (NULLS = PROPAGATE) is NULL by relation()'s
        guard; the checked value of a fused NULL check (relation()) fails the query where it is NULL."""
        natural = ONNX_TO_ARROW[self.plan.model.signature.outputs[out.source].elem_type]

        def typed(i: int | str, target: pa.DataType) -> exp.Expr:
            column = _column(f"{OUTPUT}{k}_{i}")
            failed = exp.If(this=_is_null(column.name), true=self._null_error()) if self.fused and i == (out.pick or 0) else None
            value = self._natural(column, natural, in_range, failed)
            return value if target == natural else _cast(value, target)

        if not out.as_list:
            return typed(out.pick or 0, out.arrow_type)
        return exp.Array(expressions=[typed(i, out.arrow_type.value_type) for i in range(width)])

    def _natural(self, value: exp.Expr, natural: pa.DataType, in_range: bool, failed: exp.If | None = None) -> exp.Expr:
        """A DOUBLE result as the ONNX output type: FLOAT rounds (to ±inf beyond its range, as onnxruntime does); `failed`
        (a fused NULL check: this value is NULL exactly where an input is, _strict_features) fails the query first."""
        if natural == pa.float32() and not in_range:
            return self.to_float(value, failed)
        return _unless(failed, _cast(value, natural))

    def to_float(self, value: exp.Expr, failed: exp.If | None = None) -> exp.Expr:
        """CAST(value AS FLOAT), ±inf where rounding overflows: Spark's cast does that itself; DuckDB's raises instead,
        so there a TRY_CAST's NULL (never NaN's: NaN casts) becomes the infinity of the value's sign. A `failed` WHEN is
        tested after DuckDB's common case, a value within FLOAT's range, so such a row costs one test for both."""
        if self.dialect == "spark":
            return _unless(failed, _cast(value, pa.float32()))
        infinity = [_cast(exp.Literal.string(text), pa.float32()) for text in ("inf", "-inf")]
        zero = exp.Literal.number(0)
        overflow = exp.Case(ifs=[exp.If(this=exp.GT(this=value.copy(), expression=zero), true=infinity[0]), exp.If(this=exp.LT(this=value.copy(), expression=zero.copy()), true=infinity[1])])
        rounded = exp.Coalesce(this=exp.TryCast(this=value.copy(), to=_sql_type(pa.float32()).copy()), expressions=[overflow])
        if failed is None:
            return rounded
        fits = exp.LTE(this=exp.Abs(this=value.copy()), expression=_constant(-FLOAT_LOWEST))
        return exp.Case(ifs=[exp.If(this=fits, true=_cast(value, pa.float32())), failed]).else_(rounded)

    def feature(self, feed: InputFeed, j: int, anchor: Feature | None) -> exp.Expr:
        """DATA column j of an input as the model sees it (FLOAT, DOUBLE or text), failing the query as STREAM
        would on an integer beyond its exact range (±2^24, ±2^53) or, under NULLS = ERROR, on a NULL. One CASE on the
        `anchor` feature (one the first output reads, so it is always computed) tests every input column for NULL;
        without an anchor each column tests its own."""
        field = self.plan.data_schema.field(feed.columns[j])
        name, column = field.name, _column(field.name)
        display = self.plan.model.display
        value = self.to_float(column) if feed.casts[j] == Cast.ROUNDING and feed.arrow_type == pa.float32() else _cast(column, feed.arrow_type)
        if feed.casts[j] == Cast.CHECKED:
            limit = exp.Literal.number(EXACT_INTEGER[feed.arrow_type])
            beyond = exp.or_(exp.GT(this=column.copy(), expression=limit), exp.LT(this=column.copy(), expression=exp.Neg(this=limit.copy())), copy=False)
            fix = f"write CAST({name} AS {sql_name(feed.arrow_type)}) in the DATA query to accept rounding"
            fail = self._fail(exp.Literal.string(self.fail(ScoringError(f"PREDICT input '{name}' ({display}) has a value that {feed.arrow_type} cannot hold exactly: {fix}"))))
            value = exp.Case(ifs=[exp.If(this=beyond, true=fail)]).else_(value)
        if self.plan.nulls == NULLS_ERROR and anchor is None and not self.fused:
            value = exp.Coalesce(this=value, expressions=[self._fail(exp.Literal.string(self._null(name)))])
        if self.plan.nulls == NULLS_ERROR and anchor == Feature(feed.name, j):
            names = _input_names(self.plan)
            value = exp.Case(ifs=[exp.If(this=exp.or_(*(_is_null(n) for n in names), copy=False), true=self._null_error())]).else_(value)
        return value

    def _null_error(self) -> exp.Expr:
        """The call that fails the query with the NULL error of the first input column that is NULL (a NULL check's)."""
        return self._fail(exp.Case(ifs=[exp.If(this=_is_null(n), true=exp.Literal.string(self._null(n))) for n in _input_names(self.plan)]))

    def _null(self, name: str) -> str:
        """The error text for a NULL in input column `name`."""
        fix = f"filter the rows (WHERE {name} IS NOT NULL), fill them (COALESCE({name}, ...)) in the DATA query, or add NULLS = PROPAGATE to score them as NULL"
        return self.fail(NullInputError(f"PREDICT input '{name}' ({self.plan.model.display}) is NULL: {fix}"))

    def _fail(self, message: exp.Expr) -> exp.Expr:
        """A call that fails the query with `message` (a fail() text), which the adapter raises again as its error."""
        return exp.Anonymous(this=RAISE[self.dialect], expressions=[message])


def _chained(fn: str, args: list[exp.Expr]) -> exp.Expr:
    """(a fn b fn c ...), left to right, for add, mul, and, or; past CHAIN terms, a chain of chains of CHAIN terms each,
    so a 1,000-feature linear model nests about 2·CHAIN deep, not 1,000 (DuckDB's parser stops at 1,000)."""
    if len(args) > CHAIN:
        return _chained(fn, [_chained(fn, args[i : i + CHAIN]) for i in range(0, len(args), CHAIN)])
    result = args[0]
    for arg in args[1:]:
        result = _CHAINED[fn](this=result, expression=arg)
    return exp.paren(result, copy=False)


def _unless(failed: exp.If | None, value: exp.Expr) -> exp.Expr:
    """`value`, or CASE <failed> ELSE value END where a WHEN fails the query first."""
    return value if failed is None else exp.Case(ifs=[failed]).else_(value)


def _input_names(plan: ScoringPlan) -> list[str]:
    """The DATA columns the model reads, each once."""
    return list(dict.fromkeys(plan.data_schema.field(i).name for feed in plan.inputs for i in feed.columns))


def _unless_unscored(plan: ScoringPlan, value: exp.Expr) -> exp.Case:
    """NULL for a row with a NULL input (NULLS = PROPAGATE: not scored, as under STREAM), else `value`."""
    unscored = exp.or_(*(_is_null(n) for n in _input_names(plan)), copy=False)
    return exp.Case(ifs=[exp.If(this=unscored, true=exp.null())]).else_(value)


def _is_null(name: str) -> exp.Is:
    return exp.Is(this=_column(name), expression=exp.null())


def _column(name: str) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True))


def _cast(value: exp.Expr, arrow_type: pa.DataType) -> exp.Cast:
    return exp.Cast(this=value, to=_sql_type(arrow_type).copy())


@functools.cache
def _sql_type(arrow_type: pa.DataType) -> exp.DataType:
    """Parsed once per type: a PREDICT casts every input and output."""
    return exp.DataType.build(sql_name(arrow_type))


def _constant(value: float | int | str) -> exp.Expr:
    """A literal the engines read exactly: floats in (shortest round-trip) scientific notation are DOUBLE, not DECIMAL;
    NaN and ±inf, which have no literal, cast from the text both engines read."""
    if isinstance(value, str):
        return exp.Literal.string(value)
    if not math.isfinite(value):
        return _cast(exp.Literal.string("NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"), pa.float64())
    literal = exp.Literal.number(np.format_float_scientific(abs(value), unique=True, trim="-") if isinstance(value, float) else abs(value))
    return exp.paren(exp.Neg(this=literal), copy=False) if value < 0 else literal
