"""Compile an ONNX graph into an engine-neutral expression tree (the INLINE plan).

Linear models, scalers and small tree ensembles are cheaper to run as SQL expressions in the engine's own
vectorised, parallel execution than to ship rows to onnxruntime (DESIGN.md, Raven's MLtoSQL). A graph compiles
when every node is one of the supported operators below and its inputs are FLOAT or DOUBLE tensors, or text and INT64
ones that reach only a one-hot encoder (through structural operators); anything
else raises NotInlinable with the reason, and the STREAM plan scores it. A tree ensemble compiles to nested
CASEs only within MAX_TREE_NODES and MAX_TREE_DEPTH: beyond them the compiled trees (engine/forest.py) were measured faster.

Expressions read DATA's columns (`Feature`) and named intermediate values (`Ref` into
`Program.values`). A value that later expressions read more than once (a linear score, a
softmax's sum) is named rather than repeated, so the SQL grows linearly with the model, and an
adapter computes each value once (one subquery layer per dependency depth). Arithmetic is meant
to run in DOUBLE, but for a linear score over FLOAT inputs (`float32`), which runs in FLOAT as onnxruntime's float
kernel does and as the engines compute FLOAT fastest; it follows onnxruntime's kernels (first maximum wins in argmax,
softmax less its maximum), so results differ from onnxruntime by float32 rounding (a tree ensemble's sum included). `bounds`
tells an adapter which values cannot leave FLOAT's range (probabilities), so their cast to FLOAT needs no
overflow test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from predictsql.engine import trees
from predictsql.engine.errors import ModelError

ML_DOMAIN = trees.ML_DOMAIN


class NotInlinable(ModelError):
    """The model cannot run as SQL expressions; the message says which part."""


@dataclass(frozen=True)
class Feature:
    """Column `index` of ONNX input `input`, as the model sees it (cast to its input type)."""

    input: str
    index: int


@dataclass(frozen=True)
class Ref:
    """The named value `index` of Program.values."""

    index: int


@dataclass(frozen=True)
class Const:
    """A number (NaN and ±inf included: the renderer casts them from text) or a text."""

    value: float | int | str


@dataclass(frozen=True)
class Op:
    """add, mul, and, or (any number of args, left to right); sub, div, lt, le, gt, ge, eq, ne (two); exp, sqrt, abs,
    isnan, round32 (one; round32: to FLOAT and back); float32 (one: an add of Const·Feature products and a Const, all FLOAT,
    computed in FLOAT); greatest (any); fail (a Const message: the query fails, as onnxruntime would)."""

    fn: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Case:
    """The value of the first true condition, else `default` (NULL when None)."""

    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None = None


Expr = Feature | Ref | Const | Op | Case


@dataclass(frozen=True)
class Program:
    """Named values (each over features and earlier values), and each ONNX output as one expression per value of a row."""

    values: tuple[Expr, ...]
    outputs: dict[str, tuple[Expr, ...]]


class _Builder:
    """The values named so far while a graph is compiled."""

    def __init__(self, floats: frozenset[str]) -> None:
        self.values: list[Expr] = []
        self.floats = floats  # the FLOAT inputs, whose linear scores run in FLOAT

    def let(self, value: Expr) -> Ref:
        self.values.append(value)
        return Ref(len(self.values) - 1)

    def let_all(self, values: Sequence[Expr]) -> tuple[Ref, ...]:
        return tuple(self.let(v) for v in values)

    def refer_all(self, values: Sequence[Expr]) -> tuple[Expr, ...]:
        """Each value as a feature or named value, naming those that are expressions: a rule reads them more than once."""
        return tuple(v if isinstance(v, Feature | Ref) else self.let(v) for v in values)


Rule = Callable[[list, dict, _Builder, dict], list[tuple[Expr, ...]]]


def compile_graph(model: onnx.ModelProto) -> Program:
    """The model as a Program, or NotInlinable naming the node or input that prevents it."""
    graph = model.graph
    constants = {i.name: i for i in graph.initializer}
    values = {spec.name: _input(spec) for spec in graph.input if spec.name not in constants}
    kinds = {spec.name: _KINDS[spec.type.tensor_type.elem_type] for spec in graph.input if spec.type.tensor_type.elem_type in _KINDS}
    builder = _Builder(frozenset(spec.name for spec in graph.input if spec.type.tensor_type.elem_type == onnx.TensorProto.FLOAT))
    for node in graph.node:
        what = f"node '{node.name or node.output[0]}' ({node.op_type})"
        rule = _RULES.get((node.domain or "", node.op_type))
        if rule is None:
            raise NotInlinable(f"operator {node.op_type} ({what}) has no SQL form; INLINE covers {', '.join(op for _, op in _RULES)}")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        _follow_kind(node, what, attrs, kinds)
        args = [values.get(name, name) for name in node.input]
        if not args or not isinstance(args[0], tuple):
            raise NotInlinable(f"{what} does not read a computed tensor")
        values.update(zip(node.output, rule(args, attrs, builder, constants), strict=False))  # a node may name fewer outputs than its rule computes
    missing = [o.name for o in graph.output if o.name not in values]
    if missing:
        raise NotInlinable(f"outputs {missing} are not computed from the inputs")
    return Program(tuple(builder.values), {o.name: values[o.name] for o in graph.output})


def _follow_kind(node: onnx.NodeProto, what: str, attrs: dict, kinds: dict[str, str]) -> None:
    """Text and integers reach only the operators that read them as onnxruntime does, and pass through the structural
    ones (integers through a Cast to INT64 too); numbers cast to INT64 (how predictsql.export feeds a one-hot of integer
    columns) reach only a one-hot encoder, which matches each to the integer it truncates to, as the Cast would (NaN and
    ±inf: INT64's minimum, no category's); a one-hot encoder's categories are of its input's kind."""
    kind = next((kinds[name] for name in node.input if name in kinds), "numbers")
    to_int64 = node.op_type == "Cast" and attrs.get("to") == onnx.TensorProto.INT64
    if kind in _READERS and node.op_type not in _READERS[kind]:
        raise NotInlinable(f"{what} reads {kind}, which INLINE passes only to {', '.join(_READERS[kind])}")
    if to_int64 and kind == "text":
        raise NotInlinable(f"{what} casts text to INT64, which has no SQL form")
    if node.op_type == "OneHotEncoder" and ("cats_strings" in attrs) != (kind == "text"):
        raise NotInlinable(f"{what} compares {kind} with {'text' if 'cats_strings' in attrs else 'integer'} categories, which onnxruntime never matches")
    if to_int64 and kind == "numbers":
        kinds.update(dict.fromkeys(node.output, TRUNCATED))
    elif kind in _READERS and (node.op_type in _STRUCTURAL or to_int64):
        kinds.update(dict.fromkeys(node.output, kind))


def _input(spec: onnx.ValueInfoProto) -> tuple[Expr, ...]:
    tensor = spec.type.tensor_type
    dims = tensor.shape.dim
    width = dims[1].dim_value if len(dims) == 2 else 0
    if tensor.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, *_KINDS) or width < 1:
        raise NotInlinable(f"input '{spec.name}' is not a FLOAT, DOUBLE, INT64 or STRING tensor of known width [N,k]")
    return tuple(Feature(spec.name, j) for j in range(width))


def _const(value: float) -> Const:
    """A model constant; inf and NaN have no literal both engines read."""
    if not math.isfinite(value):
        raise NotInlinable(f"the constant {value} has no SQL literal")
    return Const(float(value))


def _linear(x: Sequence[Expr], coefficients: Sequence[float], intercepts: Sequence[float], builder: _Builder) -> tuple[Ref, ...]:
    """score_c = intercept_c + Σ_j coef[c,j]·x_j, each named; a scaled x_j = (v - o)·s is folded in as (coef·s)·v, its
    -coef·o·s added to the intercept, so a scaler costs one multiplication per feature rather than three. Over FLOAT
    features only, none scaled, the score is a float32 one (folded in FLOAT, a sum near the columns' offsets loses
    Σ|coef·o·s|·2^-24 per addition, where onnxruntime's (v - o)·s is exact: a review found 4.4e-4)."""
    width = len(x)
    if not intercepts or len(coefficients) != len(intercepts) * width:
        raise NotInlinable(f"linear node has {len(coefficients)} coefficients for {len(intercepts)} targets and {width} features")
    scaled = [_scaled(v) for v in x]
    single = not any(scaled) and all(isinstance(v, Feature) and v.input in builder.floats for v in x)  # ONNX's coefficients are float32 already
    scores: list[Expr] = []
    for c, b in enumerate(intercepts):
        weights = [float(coefficients[c * width + j]) for j in range(width)]
        terms = [Op("mul", (_const(w * f[1]), f[0])) if f else Op("mul", (_const(w), v)) for w, v, f in zip(weights, x, scaled, strict=True)]
        intercept = float(b) - sum(w * f[1] * f[2] for w, f in zip(weights, scaled, strict=True) if f)
        score = Op("add", (_const(intercept), *terms))
        scores.append(Op("float32", (score,)) if single else score)
    return builder.let_all(scores)


def _scaled(x: Expr) -> tuple[Expr, float, float] | None:
    """(v, s, o) where x is a scaler's (v - o)·s whose offset lies within FOLDED_OFFSET of its units (|o·s|), so that
    s·v - o·s in DOUBLE stays within 2^-42 of it, absolute (the error grows with |o·s|: a column near its mean cancels); else None."""
    if isinstance(x, Op) and x.fn == "mul" and len(x.args) == 2 and isinstance(x.args[1], Const) and isinstance(x.args[0], Op) and x.args[0].fn == "sub":
        (v, offset), scale = x.args[0].args, x.args[1]
        if isinstance(offset, Const) and isinstance(offset.value, float) and isinstance(scale.value, float) and abs(offset.value * scale.value) <= FOLDED_OFFSET:
            return v, scale.value, offset.value
    return None


def _scaler(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    x = args[0]
    offset = _broadcast(attrs.get("offset", [0.0]), len(x), "Scaler offset")
    scale = _broadcast(attrs.get("scale", [1.0]), len(x), "Scaler scale")
    return [tuple(Op("mul", (Op("sub", (v, _const(o))), _const(s))) for v, o, s in zip(x, offset, scale, strict=True))]


def _broadcast(values: Sequence[float], width: int, name: str) -> Sequence[float]:
    if len(values) == 1:
        return list(values) * width
    if len(values) != width:
        raise NotInlinable(f"{name} has {len(values)} values for {width} features")
    return values


def _linear_regressor(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    intercepts = attrs.get("intercepts") or [0.0] * attrs.get("targets", 1)
    return [_regression_transform(_linear(args[0], attrs["coefficients"], intercepts, builder), trees.transform(attrs), builder)]


def _linear_classifier(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    labels = [Const(int(v)) for v in attrs.get("classlabels_ints", [])] or [Const(v.decode()) for v in attrs.get("classlabels_strings", [])]
    intercepts = attrs.get("intercepts", [])
    if len(intercepts) < 2 or len(labels) != len(intercepts):
        raise NotInlinable(f"LinearClassifier with {len(intercepts)} score(s) for {len(labels)} classes (a one-score binary model) has no SQL form")
    s = _linear(args[0], attrs["coefficients"], intercepts, builder)
    return [(_first_greatest(s, labels, builder),), _post_transform(s, trees.transform(attrs), builder)]


def _first_greatest(scores: tuple[Ref, ...], labels: Sequence[Const], builder: _Builder) -> Case:
    """The label of the first greatest score, compared in FLOAT as onnxruntime compares them (ties as it sees them)."""
    rounded = builder.let_all([Op("round32", (v,)) for v in scores])
    top = builder.let(Op("greatest", rounded))
    return Case(tuple((Op("ge", (v, top)), label) for v, label in zip(rounded, labels, strict=True)))


def _post_transform(s: tuple[Ref, ...], transform: str, builder: _Builder) -> tuple[Expr, ...]:
    if transform == "NONE":
        return s
    if transform == "LOGISTIC":
        return tuple(_logistic(v, builder) for v in s)
    if transform == "SOFTMAX":
        top = builder.let(Op("greatest", s))
        e = builder.let_all([Op("exp", (Op("sub", (v, top)),)) for v in s])
        total = builder.let(Op("add", e))
        return tuple(Op("div", (v, total)) for v in e)
    if transform == "SOFTMAX_ZERO":
        return _softmax_zero(s, builder)
    if transform == "PROBIT":  # ml_common.h's float32 ErfInv turns onnxruntime's own one-step rounding of a score near 0.5 into up to 1e-3
        raise NotInlinable("post_transform PROBIT has no SQL form within tolerance of onnxruntime's float32 ErfInv")
    raise NotInlinable(f"post_transform {transform} has no SQL form")


def _regression_transform(s: tuple[Ref, ...], transform: str, builder: _Builder) -> tuple[Expr, ...]:
    """A regressor's post_transform as onnxruntime applies it (ml_common.h's batched_update_scores_inplace, the tree
    aggregator): to several targets as to a classifier's scores; to one target only if PROBIT, the others leave it as is."""
    return s if len(s) == 1 and transform != "PROBIT" else _post_transform(s, transform, builder)


def _softmax_zero(s: tuple[Ref, ...], builder: _Builder) -> tuple[Expr, ...]:
    """onnxruntime's ComputeSoftmaxZero (ml_common.h) on the FLOAT scores: a score within ±1e-7 of zero, or NaN, is not
    exponentiated but scaled by exp(-max) and left out of the sum (so it stays about 0, and a NaN stays NaN alone); the
    maximum passes over NaN (_running_max); a row of such scores only divides by a zero sum (NaN, or ±inf)."""
    r = builder.let_all([Op("round32", (v,)) for v in s])
    top = builder.let(_running_max(r))
    skipped = [Op("or", (Op("isnan", (v,)), Op("le", (Op("abs", (v,)), Const(SOFTMAX_ZERO_EPSILON))))) for v in r]
    scale = Op("exp", (Op("sub", (Const(0.0), top)),))
    e = builder.let_all([Case(((skip, Op("mul", (v, scale))),), Op("exp", (Op("sub", (v, top)),))) for v, skip in zip(r, skipped, strict=True)])
    total = builder.let(Op("add", tuple(Case(((skip, Const(0.0)),), v) for v, skip in zip(e, skipped, strict=True))))
    return tuple(Case(((Op("eq", (total, Const(0.0))), _over_zero(v)),), Op("div", (v, total))) for v in e)


def _over_zero(v: Expr) -> Case:
    """v / 0 as IEEE and onnxruntime have it (SQL engines differ): ±inf by v's sign, NaN for 0 and for NaN."""
    return Case(((Op("isnan", (v,)), Const(math.nan)), (Op("gt", (v, Const(0.0))), Const(math.inf)), (Op("lt", (v, Const(0.0))), Const(-math.inf))), Const(math.nan))


def _logistic(v: Ref, builder: _Builder) -> Expr:
    """1 / (1 + exp(-x)) in DOUBLE: where exp overflows both engines give inf, so the result is 0. onnxruntime mirrors
    1 / (1 + exp(-|x|)) for x < 0 in float32; in DOUBLE the direct form is as exact, rounded to FLOAT, and has no CASE."""
    return Op("div", (Const(1.0), Op("add", (Const(1.0), Op("exp", (Op("sub", (Const(0.0), v)),))))))


def _normalizer(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """Each row divided by its L1 or L2 norm or its maximum (onnxruntime's running one, so a row of negatives is divided
    by a negative); a row whose divisor is 0 is left as it is, as onnxruntime leaves it."""
    norm = attrs.get("norm", b"MAX").decode()
    x = builder.let_all(args[0])
    if norm == "L1":
        divisor = builder.let(Op("add", tuple(Op("abs", (v,)) for v in x)))
    elif norm == "L2":
        divisor = builder.let(Op("sqrt", (Op("add", tuple(Op("mul", (v, v)) for v in x)),)))
    elif norm == "MAX":
        divisor = builder.let(_running_max(x))
    else:
        raise NotInlinable(f"Normalizer norm {norm} has no SQL form")
    return [tuple(Case(((Op("eq", (divisor, Const(0.0))), v),), Op("div", (v, divisor))) for v in x)]


def _running_max(values: Sequence[Expr]) -> Op:
    """onnxruntime's maximum (normalizer.cc, ml_common.h): a running std::max from FLOAT's lowest, which NaN and -inf
    never pass, so a row of them has FLOAT's lowest; SQL's greatest() would return NaN, so NaN reads as the lowest."""
    lowest = Const(FLOAT_LOWEST)
    return Op("greatest", (lowest, *(Case(((Op("isnan", (v,)), lowest),), v) for v in values)))


def _binarizer(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """Binarizer: 1.0 above the threshold, else 0.0 (-inf included); NaN fails the query, as onnxruntime fails the run
    ("Input data with index ... is NaN", binarizer.cc). Both sides are tested, so a NULL stays NULL."""
    t = _const(attrs.get("threshold", 0.0))
    nan = Op("fail", (Const("a Binarizer input is NaN, which onnxruntime refuses: fill or filter NaN in the DATA query"),))
    return [tuple(Case(((Op("isnan", (v,)), nan), (Op("gt", (v, t)), Const(1.0)), (Op("le", (v, t)), Const(0.0)))) for v in builder.refer_all(args[0]))]


def _gather(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """Gather(axis=1) of constant columns: how predictsql.export adds its `score` output (one column, [N]) and
    skl2onnx picks a ColumnTransformer's columns ([N,k])."""
    x, index = args
    picked = numpy_helper.to_array(constants[index]) if isinstance(index, str) and index in constants else None
    if attrs.get("axis", 0) != 1 or picked is None or picked.ndim > 1 or not all(-len(x) <= int(i) < len(x) for i in picked.ravel()):
        raise NotInlinable("Gather other than of constant columns in range (axis=1) has no SQL form")
    return [tuple(x[int(i)] for i in picked.ravel())]


def _identity(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    return [args[0]]


def _concat(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """Concat(axis=1) of computed tensors: how skl2onnx joins a per-column model's [N,1] inputs (the Synapse form)."""
    if attrs.get("axis") not in (1, -1) or not all(isinstance(a, tuple) for a in args):
        raise NotInlinable("Concat other than of computed tensors along axis 1 has no SQL form")
    return [tuple(value for arg in args for value in arg)]


def _reshape(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """Reshape that keeps each row's values: to [N] or [N,1] of one value (a regressor's `score`), or to [N,k] of
    k values (a one-hot encoder's [N,1,k])."""
    x, shape = args
    target = numpy_helper.to_array(constants[shape]).tolist() if isinstance(shape, str) and shape in constants else None
    if target not in ([-1], [-1, 1], [-1, len(x)]) or (target != [-1, len(x)] and len(x) != 1):
        raise NotInlinable("Reshape other than to [N] or [N,k] of each row's values has no SQL form")
    return [x]


def _one_hot(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """OneHotEncoder: per value, 1.0 for its category and 0.0 for the others; a value of no category is all zeros
    (zeros=1: scikit-learn's handle_unknown='ignore'). Text matches the category it equals; a number the integer it
    truncates to, as onnxruntime casts it to int64 (onehotencoder.cc). Both sides are tested, so a NULL stays NULL."""
    if not attrs.get("zeros", 1) or not (attrs.get("cats_strings") or attrs.get("cats_int64s")):
        raise NotInlinable("OneHotEncoder other than of text or integer categories with zeros=1 has no SQL form")
    if "cats_strings" in attrs:
        tests = [[(Op("eq", (v, Const(c))), Op("ne", (v, Const(c)))) for c in (c.decode() for c in attrs["cats_strings"])] for v in args[0]]
    else:
        tests = [[_truncates_to(v, int(c)) for c in attrs["cats_int64s"]] for v in builder.refer_all(args[0])]
    return [tuple(Case(((matches, Const(1.0)), (differs, Const(0.0)))) for per_value in tests for matches, differs in per_value)]


def _truncates_to(v: Expr, c: int) -> tuple[Op, Op]:
    """Whether v truncates to the integer c, and whether it does not: c <= v < c + 1 for c > 0, c - 1 < v <= c for c < 0,
    -1 < v < 1 for 0. NaN and ±inf (INT64's minimum in onnxruntime, which no category within ±2^53 is) match none."""
    if abs(c) >= EXACT_DOUBLE:
        raise NotInlinable(f"OneHotEncoder category {c} is beyond ±2^53, where DOUBLE holds integers exactly")
    low, high = (("ge", c), ("lt", c + 1)) if c > 0 else (("gt", c - 1), ("le", c)) if c < 0 else (("gt", -1), ("lt", 1))
    above, below = Op(low[0], (v, Const(low[1]))), Op(high[0], (v, Const(high[1])))
    return Op("and", (above, below)), Op("or", (Op(_COMPLEMENT[low[0]], (v, Const(low[1]))), Op(_COMPLEMENT[high[0]], (v, Const(high[1])))))


def _imputer(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """Imputer: each value equal to replaced_value_float (NaN: scikit-learn's SimpleImputer) becomes its column's imputed
    value. A NULL is no value: it fails or propagates by the NULLS rule, as under STREAM."""
    x = args[0]
    if attrs.get("imputed_value_int64s") or "replaced_value_int64" in attrs:
        raise NotInlinable("Imputer of integers has no SQL form")
    imputed = _broadcast(attrs.get("imputed_value_floats", []), len(x), "Imputer imputed_value_floats")
    replaced = attrs.get("replaced_value_float", 0.0)
    missing = (lambda v: Op("isnan", (v,))) if math.isnan(replaced) else (lambda v: Op("eq", (v, _const(replaced))))
    return [tuple(Case(((missing(v), _const(fill)),), v) for v, fill in zip(x, imputed, strict=True))]


def _arithmetic(fn: str) -> Rule:
    """Add, Sub, Mul or Div of a computed tensor and a constant, per column (a scalar or one value per column), how
    skl2onnx writes a scaler on DOUBLE inputs. On FLOAT the result is rounded to FLOAT: the DOUBLE operation on two
    FLOAT values, rounded once, is the correctly rounded FLOAT one onnxruntime computes."""

    def rule(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
        x, operand = args
        constant = constants.get(operand) if isinstance(operand, str) else None
        if constant is None or constant.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE) or len(constant.dims) > 2 or (len(constant.dims) == 2 and constant.dims[0] != 1):
            raise NotInlinable(f"{fn} other than of a computed tensor and a FLOAT or DOUBLE constant per column has no SQL form")
        values = numpy_helper.to_array(constant)
        per_column = _broadcast([float(v) for v in values.ravel()], len(x), f"{fn} constant")
        if fn == "div" and 0.0 in per_column:
            raise NotInlinable("Div by a constant 0 has no SQL form (the engines give NULL where onnxruntime gives ±inf or NaN)")
        rounded = constant.data_type == onnx.TensorProto.FLOAT
        return [tuple(Op("round32", (Op(fn, (v, _const(c))),)) if rounded else Op(fn, (v, _const(c))) for v, c in zip(x, per_column, strict=True))]

    return rule


def _cast_node(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """Cast to FLOAT rounds each value (the arithmetic runs in DOUBLE); to DOUBLE it changes nothing, nor to INT64 (of
    integers, or of numbers only a one-hot encoder reads: compile_graph refuses the rest)."""
    to = int(attrs.get("to", 0))
    if to in (onnx.TensorProto.DOUBLE, onnx.TensorProto.INT64):
        return [args[0]]
    if to != onnx.TensorProto.FLOAT:
        raise NotInlinable(f"Cast to {onnx.TensorProto.DataType.Name(to)} has no SQL form")
    return [tuple(Op("round32", (v,)) for v in args[0])]


def _tree_value(tree: trees.Tree, x: Sequence[Expr], target: int) -> Expr:
    """What one tree adds to `target`'s score, as nested CASEs. Each branch tests both sides, with no ELSE, so a NULL
    input yields NULL (NULLS = PROPAGATE); NaN fails x <= t and x < t and passes x > t and x >= t in both engines
    (they order NaN last), so it takes the false side, as in onnxruntime, unless missing values track true."""

    def value(node_id: int) -> Expr:
        node = tree.nodes[node_id]
        if isinstance(node, trees.Leaf):
            return _const(sum(w for c, w in node.weights if c == target))
        if node.mode not in _TREE_TESTS:
            raise NotInlinable(f"tree branch mode {node.mode} has no SQL form; INLINE covers {', '.join(_TREE_TESTS)}")
        v, t = x[node.feature], _const(node.threshold)
        true, false = _TREE_TESTS[node.mode]
        passes: Expr = Op(true, (v, t))
        if node.missing_true:
            passes = Op("or", (passes, Op("isnan", (v,))))
        return Case(((passes, value(node.true)), (Op(false, (v, t)), value(node.false))))

    return value(tree.root)


_TREE_TESTS = {"BRANCH_LEQ": ("le", "gt"), "BRANCH_LT": ("lt", "ge")}  # the test, and its complement but for NaN


def _ensemble(args: list, attrs: dict, builder: _Builder, op_type: str) -> tuple[list[trees.Tree], tuple[Expr, ...], list[float]]:
    """The trees, the input values they read (each named once), and the base values, if within INLINE's size limit
    (checked before the trees are read: a large forest is read only to be refused)."""
    limit = f"{MAX_TREE_NODES:,} nodes, depth {MAX_TREE_DEPTH}: larger ones run faster as compiled trees, benchmarks/README.md"
    size = len(attrs["nodes_treeids"])
    if size > MAX_TREE_NODES:
        raise NotInlinable(f"a tree ensemble of {size:,} nodes is over INLINE's limit ({limit})")
    ensemble = trees.read(op_type, attrs)
    if odd := trees.oddities(attrs, ensemble):
        raise NotInlinable(odd)
    depth = max(trees.depth(t) for t in ensemble)
    if depth > MAX_TREE_DEPTH:
        raise NotInlinable(f"a tree ensemble of depth {depth} is over INLINE's limit ({limit})")
    if (attrs.get("aggregate_function") or b"SUM") != b"SUM":
        raise NotInlinable(f"tree aggregate_function {attrs['aggregate_function'].decode()} has no SQL form")
    return ensemble, builder.refer_all(args[0]), trees.floats(attrs, "base_values")


def _score(ensemble: list[trees.Tree], x: Sequence[Expr], target: int, base: float, builder: _Builder) -> Ref:
    """base + Σ of every tree's value for `target`, in DOUBLE (onnxruntime adds in FLOAT: they differ by its rounding)."""
    return builder.let(Op("add", (_const(base), *(_tree_value(t, x, target) for t in ensemble))))


def _tree_regressor(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    ensemble, x, base = _ensemble(args, attrs, builder, "TreeEnsembleRegressor")
    targets = int(attrs.get("n_targets", 1))
    if targets > 1 and not trees.always_scored(ensemble, targets):
        raise NotInlinable("a tree regressor whose rows leave a target unscored (onnxruntime gives it 0, base value or not) has no SQL form")
    base = base or [0.0] * targets
    return [_regression_transform(tuple(_score(ensemble, x, k, base[k], builder) for k in range(targets)), trees.transform(attrs), builder)]


def _tree_classifier(args: list, attrs: dict, builder: _Builder, constants: dict) -> list[tuple[Expr, ...]]:
    """onnxruntime's readings of a classifier's scores (trees.classifier_form): [1 - s, s] with label s > 0.5, [σ(-s),
    σ(s)] with label s > 0, or a score per class with label the first greatest; the other readings are refused."""
    labels = [Const(int(v)) for v in attrs.get("classlabels_int64s", [])] or [Const(v.decode()) for v in attrs.get("classlabels_strings", [])]
    ensemble, x, base = _ensemble(args, attrs, builder, "TreeEnsembleClassifier")
    transform = trees.transform(attrs)
    form = trees.classifier_form(len(labels), ensemble, base, transform)
    if form is None:
        raise NotInlinable(f"onnxruntime's reading of this tree classifier of {len(labels)} classes (post_transform {transform}, {len(base)} base values) has no SQL form")
    if form != trees.PER_CLASS:
        s = _score(ensemble, x, 0, base[0] if base else 0.0, builder)
        probabilities: tuple[Expr, Expr]
        if form == trees.BINARY_POSITIVE:
            cut, probabilities = 0.5, (Op("sub", (Const(1.0), s)), s)
        else:
            cut, probabilities = 0.0, (_logistic(builder.let(Op("sub", (Const(0.0), s))), builder), _logistic(s, builder))
        return [(Case(((Op("gt", (Op("round32", (s,)), Const(cut))), labels[1]),), labels[0]),), probabilities]
    base = base or [0.0] * len(labels)
    scores = tuple(_score(ensemble, x, c, base[c], builder) for c in range(len(labels)))
    return [(_first_greatest(scores, labels, builder),), _post_transform(scores, transform, builder)]


_RULES: dict[tuple[str, str], Rule] = {
    (ML_DOMAIN, "Scaler"): _scaler,
    (ML_DOMAIN, "LinearRegressor"): _linear_regressor,
    (ML_DOMAIN, "LinearClassifier"): _linear_classifier,
    (ML_DOMAIN, "Normalizer"): _normalizer,
    (ML_DOMAIN, "Imputer"): _imputer,
    (ML_DOMAIN, "Binarizer"): _binarizer,
    ("", "Cast"): _cast_node,
    ("", "Add"): _arithmetic("add"),
    ("", "Sub"): _arithmetic("sub"),
    ("", "Mul"): _arithmetic("mul"),
    ("", "Div"): _arithmetic("div"),
    ("", "Gather"): _gather,
    ("", "Identity"): _identity,
    ("", "Concat"): _concat,
    ("", "Reshape"): _reshape,
    (ML_DOMAIN, "OneHotEncoder"): _one_hot,
    (ML_DOMAIN, "TreeEnsembleRegressor"): _tree_regressor,
    (ML_DOMAIN, "TreeEnsembleClassifier"): _tree_classifier,
}
_STRUCTURAL = ("Identity", "Gather", "Reshape", "Concat")  # pass values on unchanged, so text stays text
_KINDS: dict[int, str] = {onnx.TensorProto.STRING: "text", onnx.TensorProto.INT64: "integers"}  # inputs only some operators read
TRUNCATED = "numbers cast to INT64"  # still the numbers: a one-hot encoder's range tests truncate them
_READERS = {"text": (*_STRUCTURAL, "OneHotEncoder"), "integers": (*_STRUCTURAL, "Cast", "OneHotEncoder"), TRUNCATED: (*_STRUCTURAL, "OneHotEncoder")}  # the operators INLINE lets read them
_COMPLEMENT = {"ge": "lt", "gt": "le", "le": "gt", "lt": "ge"}  # each test's complement but for NaN (which SQL orders last)
EXACT_DOUBLE = 2**53  # beyond, DOUBLE skips integers
FOLDED_OFFSET = 2.0**10  # coef·s·v - coef·o·s errs by up to |coef·o·s|·2^-52 (absolute) beyond coef·(v - o)·s: |coef|·2^-42
SOFTMAX_ZERO_EPSILON = float(np.float32(1e-7))  # ComputeSoftmaxZero's 0.0000001f: scores within it count as zero
MAX_TREE_NODES = 150  # INLINE's limit for tree ensembles: nested CASEs as fast as the compiled trees up to there (benchmarks/README.md, run U)
MAX_TREE_DEPTH = 6
FLOAT_LOWEST = -3.4028234663852886e38  # std::numeric_limits<float>::lowest(), where onnxruntime's running maxima start


UNBOUNDED = (-math.inf, math.inf)
EMPTY = (math.inf, -math.inf)  # no value: NaN's, a failed query's


Interval = tuple[float, float]


def bounds(program: Program) -> Callable[[Expr], Interval]:
    """For an expression of `program`, an interval that holds every non-NaN value it takes, whatever the inputs
    (UNBOUNDED when unknown); each named value is bounded once across calls."""
    memo: dict[int, Interval] = {}

    def of(n: Expr) -> Interval:
        if isinstance(n, Ref):
            if n.index not in memo:
                memo[n.index] = of(program.values[n.index])
            return memo[n.index]
        if isinstance(n, Const):
            return UNBOUNDED if isinstance(n.value, str) else EMPTY if math.isnan(n.value) else (n.value, n.value)
        if isinstance(n, Case):
            parts = [of(v) for _, v in n.whens] + ([of(n.default)] if n.default is not None else [])
            return min(p[0] for p in parts), max(p[1] for p in parts)
        if isinstance(n, Feature):
            return UNBOUNDED
        return _checked(_op_bounds(program, n, [of(a) for a in n.args], of))

    return of


def _op_bounds(program: Program, n: Op, args: list[Interval], of: Callable[[Expr], Interval]) -> Interval:
    """Interval arithmetic, plus the two facts softmax and L1 normalisation rest on: x - greatest(..., x, ...) <= 0,
    and x / (... + x + ...) (or x / (... + |x| + ...)) is in [0, 1] when x and every term are >= 0."""
    if n.fn == "add":
        return sum(a[0] for a in args), sum(a[1] for a in args)
    if n.fn == "sub":
        (low, high), (other_low, other_high) = args
        top = _named(program, n.args[1], "greatest")
        return low - other_high, min(high - other_low, 0.0) if top is not None and n.args[0] in top.args else high - other_low
    if n.fn == "mul":
        product = args[0]
        for factor in args[1:]:
            product = _span([a * b for a in product for b in factor])
        return product
    if n.fn == "div":
        total = _named(program, n.args[1], "add")
        terms = total.args if total is not None else ()
        if (n.args[0] in terms or Op("abs", (n.args[0],)) in terms) and args[0][0] >= 0 and all(of(t)[0] >= 0 for t in terms):
            return 0.0, 1.0
        if args[1][0] <= 0:
            return UNBOUNDED
        return _span([a / b for a in args[0] for b in args[1]])
    if n.fn == "exp":
        return tuple(math.exp(v) if v < 709 else math.inf for v in args[0])  # type: ignore[return-value]
    if n.fn == "abs":
        low, high = args[0]
        return (low, high) if low >= 0 else (-high, -low) if high <= 0 else (0.0, max(-low, high))
    if n.fn == "greatest":
        return max(a[0] for a in args), max(a[1] for a in args)
    if n.fn in ("round32", "float32"):  # rounding to FLOAT keeps a value within its FLOAT-exact bounds
        return args[0]
    if n.fn == "fail":
        return EMPTY
    if n.fn == "sqrt":
        return math.sqrt(max(args[0][0], 0.0)), math.sqrt(max(args[0][1], 0.0))
    return 0.0, 1.0  # the tests: lt, le, gt, ge, eq, ne, and, or, isnan


def _named(program: Program, node: Expr, fn: str) -> Op | None:
    """The Op a Ref names, if it is an `fn`."""
    value = program.values[node.index] if isinstance(node, Ref) else None
    return value if isinstance(value, Op) and value.fn == fn else None


def _span(ends: list[float]) -> Interval:
    return _checked((min(ends), max(ends))) if not any(math.isnan(v) for v in ends) else UNBOUNDED


def _checked(interval: Interval) -> Interval:
    """UNBOUNDED where interval arithmetic met inf - inf or 0 * inf."""
    return UNBOUNDED if any(math.isnan(v) for v in interval) else interval
