"""The compiled tree plan: a graph's tree ensemble scored by compiled code, the rest of the graph by onnxruntime.

A TreeEnsembleClassifier / TreeEnsembleRegressor of FLOAT or DOUBLE input is laid out as complete trees, each to its
own depth (a leaf above the bottom fills the slots below it), and walked by engine/forest_kernel.py, faster than
onnxruntime's single-threaded TreeEnsemble (benchmarks/README.md, run U). Trees that would pad beyond MAX_PADDING slots
per node (deep, sparse ones: leaf-wise boosting's) are laid out as bitvectors instead where each has at most 64 leaves
(QuickScorer's exit leaves, with a table per feature: run W). The nodes before the ensemble and after it
(a Cast, a Gather of one class's probability, a ZipMap) run in onnxruntime sessions cut from the same graph (onnx's
Extractor). What onnxruntime computes is reproduced, not approximated: the same comparisons in the input's type
(x < t as x <= the number below t; x > t and x >= t as the complements with children swapped; NaN goes where
onnxruntime sends it), the scores added in that type in tree order, labels read from those sums as onnxruntime reads
them (engine/trees.py's classifier_form, which INLINE shares), and transforms in float32 on the FLOAT scores. A graph
outside those forms, or whose trees fit neither layout, is left whole to onnxruntime, and `compile_forest` says why."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnx.utils import Extractor

from predictsql.engine import trees

MAX_DEPTH = 20
MAX_PADDING = 16  # complete trees of at most this many slots per node: random forests pad 3.9×, LightGBM's leaf-wise trees 60× (run U)
MAX_SLOTS = 1 << 24  # leaf weights over all trees and targets (64 MB of float32)
MAX_TARGETS = 16  # a 40-class booster (one class per tree) ran at 0.92× onnxruntime: every tree adds every target
MAX_LEAVES = 64  # a tree's leaves as the bits of one word, for the bitvector layout
MAX_MASK_BYTES = 1 << 24  # the bitvector layout's masks over all features, bins and trees (16 MB)
BITVECTOR_COST = 0.75  # a mask AND costs 0.57 of onnxruntime's node visit, a feature's bin search two ANDs (run W); 0.75 keeps 1.3×
_ALL = (1 << 64) - 1
_DTYPES: dict[int, type[np.floating]] = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}


class NotCompiled(Exception):
    """The graph's trees stay in onnxruntime; the message says why (EXPLAIN shows it)."""


@dataclass(frozen=True)
class Layout:
    """Complete trees in flat arrays: tree t's slots start at offsets[t], its leaves' weight rows at leaf_offsets[t]."""

    offsets: np.ndarray
    depths: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    nan_left: np.ndarray
    track_nan: bool  # whether any branch sends NaN left (a padded slot's way is moot: the leaves below it are alike)
    leaf_offsets: np.ndarray
    weights: np.ndarray  # [leaf slots, targets]


@dataclass(frozen=True)
class Bitvectors:
    """Trees of at most 64 leaves as QuickScorer's bitvectors (Lucchese et al., SIGIR 2015), binned per feature. A branch
    a row fails clears the leaves of the side it does not take; a tree's exit leaf is the lowest bit left, leaves
    numbered from the x <= cut side. Which of feature f's branches x fails depends only on how many of the cuts
    they test f against lie below x (its bin; NaN is the last), so masks[f][bin] holds, per tree reading f, the AND of
    the masks of the branches failed there: a row ANDs one mask row per feature, with no branch to mispredict."""

    cuts: np.ndarray  # feature f's distinct cuts, ascending: cuts[cut_offsets[f]:cut_offsets[f + 1]]
    cut_offsets: np.ndarray
    masks: np.ndarray  # feature f's [bins + 2, readers] masks from mask_offsets[f], row by row
    mask_offsets: np.ndarray
    readers: np.ndarray  # the trees reading feature f: readers[reader_offsets[f]:reader_offsets[f + 1]]
    reader_offsets: np.ndarray
    leaf_offsets: np.ndarray
    weights: np.ndarray  # [leaves, targets]


class Forest:
    """One ensemble node's outputs as onnxruntime computes them: label and probabilities, or the regressed values."""

    def __init__(self, node: onnx.NodeProto, dtype: type[np.floating]) -> None:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        self.dtype = dtype  # the input's: onnxruntime compares and adds in it (DOUBLE: LightGBM's thresholds)
        self.classifier = node.op_type == "TreeEnsembleClassifier"
        ensemble = trees.read(node.op_type, attrs)
        if odd := trees.oddities(attrs, ensemble):
            raise NotCompiled(odd)
        self.transform = trees.transform(attrs)
        self.base = trees.floats(attrs, "base_values")
        aggregate = (attrs.get("aggregate_function") or b"SUM").decode()
        if aggregate not in ("SUM", "AVERAGE"):
            raise NotCompiled(f"aggregate_function {aggregate} is not compiled")
        self.trees = len(ensemble) if aggregate == "AVERAGE" else 0  # onnxruntime divides the sum by the tree count
        if self.classifier:
            labels = attrs.get("classlabels_int64s") or [v.decode() for v in attrs.get("classlabels_strings", [])]
            self.labels = np.array(labels, dtype=np.int64 if "classlabels_int64s" in attrs else object)
            self.form = trees.classifier_form(len(labels), ensemble, self.base, self.transform)
            if self.form is None:
                raise NotCompiled(f"onnxruntime's reading of a classifier scoring {len(labels)} classes this way (post_transform {self.transform}) is not compiled")
            if self.form == trees.PER_CLASS and self.transform not in _TRANSFORMS:
                raise NotCompiled(f"post_transform {self.transform} is not compiled")
            targets = 1 if self.form != trees.PER_CLASS else len(labels)
        else:
            targets = int(attrs.get("n_targets", 1))
            if self.transform != "NONE" and (targets == 1 or self.transform not in _TRANSFORMS):
                raise NotCompiled(f"post_transform {self.transform} of a regressor is not compiled")
            if targets > 1 and not trees.always_scored(ensemble, targets):
                raise NotCompiled("some rows leave a target unscored, which onnxruntime gives as 0, base value or not")
        self.layout = _layout(ensemble, targets, dtype)
        from predictsql.engine import forest_kernel  # numba, imported only once a model's trees compile

        if isinstance(self.layout, Bitvectors):
            self.width = len(self.layout.cut_offsets) - 1  # the features the trees read
            self.walk, self.kind = forest_kernel.bitvector_walk, "bitvectors"
        else:
            self.width = int(self.layout.feature.max(initial=0)) + 1
            self.walk, self.kind = forest_kernel.walk, "complete trees"

    def output_types(self) -> list[tuple[int, list[str | int]]]:
        """Each output's element type and shape, as onnxruntime gives them."""
        width = self.layout.weights.shape[1] if not self.classifier or self.form == trees.PER_CLASS else 2
        scores = (onnx.TensorProto.FLOAT, ["N", width])
        if not self.classifier:
            return [scores]
        return [(onnx.TensorProto.INT64 if self.labels.dtype == np.int64 else onnx.TensorProto.STRING, ["N"]), scores]

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """The node's outputs for x [rows, features] (of the input's type), in its output order."""
        layout, dtype, walk = self.layout, self.dtype, self.walk
        if x.ndim != 2 or x.shape[1] < self.width:  # onnxruntime refuses it too; the Scorer names the model and batch
            raise ValueError(f"the trees read {self.width} features of their input, which has shape {x.shape}")
        scores = np.zeros((len(x), layout.weights.shape[1]), dtype)
        if len(x):  # each layout's fields are its walk's arguments, in order
            walk(np.ascontiguousarray(x, dtype), *(getattr(layout, f.name) for f in fields(layout)), scores)
        if self.trees:
            scores /= dtype(self.trees)
        if not self.classifier:
            return [_TRANSFORMS[self.transform](_float(_based(scores, self.base)))]
        if self.form == trees.PER_CLASS:
            scores = _based(scores, self.base)
            return [self.labels[np.argmax(scores, axis=1)], _TRANSFORMS[self.transform](_float(scores))]
        s = scores[:, 0] + dtype(self.base[0]) if self.base else scores[:, 0]
        label, f = self.labels[(s > dtype(0.5 if self.form == trees.BINARY_POSITIVE else 0)).astype(np.intp)], _float(s)
        return [label, np.stack([np.float32(1) - f, f] if self.form == trees.BINARY_POSITIVE else [_logistic(-f), _logistic(f)], axis=1)]


def _layout(ensemble: Sequence[trees.Tree], targets: int, dtype: type[np.floating]) -> Layout | Bitvectors:
    """Complete trees where they pad to at most MAX_PADDING slots per node (their walk is the faster: run U), else
    bitvectors where each tree has at most MAX_LEAVES leaves."""
    if targets > MAX_TARGETS:
        raise NotCompiled(f"it scores {targets} targets; each row adds all of them at every tree, slower than onnxruntime beyond {MAX_TARGETS}")
    depths = [trees.depth(t) for t in ensemble]
    slots, nodes = sum(2 ** (d + 1) - 1 for d in depths), sum(len(t.nodes) for t in ensemble)
    if max(depths, default=0) <= MAX_DEPTH and slots <= MAX_PADDING * nodes and sum(2**d for d in depths) * targets <= MAX_SLOTS:
        return _complete(ensemble, depths, targets, dtype)
    leaves = max(sum(isinstance(n, trees.Leaf) for n in t.nodes.values()) for t in ensemble)
    if leaves > MAX_LEAVES:
        raise NotCompiled(
            f"its {nodes:,} nodes (depth up to {max(depths)}) would pad to {slots:,} slots, beyond {MAX_PADDING}× the nodes, and a tree has "
            f"{leaves} leaves, beyond the {MAX_LEAVES} of a bitvector"
        )
    layout = _bitvectors(ensemble, targets, dtype)
    steps = sum(np.mean(trees.leaf_depths(t)) for t in ensemble)  # onnxruntime's walk of a row, in node visits (leaves alike)
    cost = BITVECTOR_COST * (int(layout.reader_offsets[-1]) + 2 * (len(layout.cut_offsets) - 1))
    if cost > steps:
        raise NotCompiled(
            f"as bitvectors a row would AND {int(layout.reader_offsets[-1]):,} masks over {len(layout.cut_offsets) - 1} features, "
            f"costlier than onnxruntime's {steps:,.0f} node visits (wide trees over many features: run W)"
        )
    return layout


def _complete(ensemble: Sequence[trees.Tree], depths: Sequence[int], targets: int, dtype: type[np.floating]) -> Layout:
    """The trees as complete ones, children of slot j at 2j+1 (taken when x <= threshold) and 2j+2."""
    inner = np.cumsum([0] + [2**d - 1 for d in depths])
    leaves = np.cumsum([0] + [2**d for d in depths])
    feature = np.zeros(inner[-1], np.int32)
    threshold = np.full(inner[-1], np.inf, dtype)  # a padded slot: every way below it reaches its leaf's weights
    nan_left = np.zeros(inner[-1], np.uint8)
    weights = np.zeros((leaves[-1], targets), dtype)
    for t, (tree, d) in enumerate(zip(ensemble, depths, strict=True)):
        stack = [(tree.root, 0, 0)]
        while stack:
            node_id, j, level = stack.pop()
            node = tree.nodes[node_id]
            if isinstance(node, trees.Leaf):
                span = 2 ** (d - level)
                first = leaves[t] + (j - (2**level - 1)) * span
                for target, weight in node.weights:
                    weights[first : first + span, target] += dtype(weight)
                continue
            left, right, cut, nan_goes_left = _as_leq(node, dtype)
            feature[inner[t] + j], threshold[inner[t] + j], nan_left[inner[t] + j] = node.feature, cut, nan_goes_left
            stack += [(left, 2 * j + 1, level + 1), (right, 2 * j + 2, level + 1)]
    return Layout(inner[:-1].astype(np.int64), np.array(depths, np.int32), feature, threshold, nan_left, bool(nan_left.any()), leaves[:-1].astype(np.int64), weights)


def _bitvectors(ensemble: Sequence[trees.Tree], targets: int, dtype: type[np.floating]) -> Bitvectors:
    """The trees as bitvectors: each branch's feature, cut, tree and mask (the leaves of its x <= cut side cleared), the
    masks ANDed per feature over the bins where x fails each."""
    branches: list[tuple[int, np.floating, bool, int, int]] = []  # feature, cut, NaN goes left, tree, mask
    leaf_offsets, weight_rows = [0], list[trees.Leaf]()
    for t, tree in enumerate(ensemble):
        order, stack, ways = [], [tree.root], {}
        while stack:  # preorder, each branch's x <= cut side first: its leaves come out numbered left to right
            node_id = stack.pop()
            order.append(node_id)
            node = tree.nodes[node_id]
            if isinstance(node, trees.Branch):
                ways[node_id] = true, false, _, _ = _as_leq(node, dtype)
                stack += [false, true]
        leaves = [n for n in order if isinstance(tree.nodes[n], trees.Leaf)]
        spans = {n: (i, i + 1) for i, n in enumerate(leaves)}  # the leaves below a node: first, end
        for node_id in reversed(order):  # each branch after its subtrees
            node = tree.nodes[node_id]
            if isinstance(node, trees.Branch):
                true, false, cut, nan_left = ways[node_id]
                spans[node_id] = (spans[true][0], spans[false][1])
                low, high = spans[true]
                branches.append((node.feature, cut, nan_left, t, _ALL ^ ((1 << high) - (1 << low))))
        weight_rows += [leaf for n in leaves if isinstance(leaf := tree.nodes[n], trees.Leaf)]
        leaf_offsets.append(len(weight_rows))
    weights = np.zeros((len(weight_rows), targets), dtype)
    for row, leaf in enumerate(weight_rows):
        for target, weight in leaf.weights:
            weights[row, target] += dtype(weight)
    by_feature: dict[int, list[tuple[int, np.floating, bool, int, int]]] = {}
    for branch in branches:
        by_feature.setdefault(branch[0], []).append(branch)
    cuts, masks, readers, cut_offsets, mask_offsets, reader_offsets, size = [], [], [], [0], [0], [0], 0
    for f in range(max(by_feature, default=-1) + 1):
        mine = by_feature.get(f, [])
        distinct = np.unique(np.array([b[1] for b in mine], dtype))
        reading = sorted({b[3] for b in mine})
        size += (len(distinct) + 2) * len(reading) * 8
        if size > MAX_MASK_BYTES:
            raise NotCompiled(f"its bitvector masks would take more than {MAX_MASK_BYTES >> 20} MB")
        column = {t: j for j, t in enumerate(reading)}
        failed = np.full((len(distinct) + 2, len(reading)), np.uint64(_ALL))  # row i + 1: the branch at cut i fails
        for _, cut, nan_left, t, mask in mine:
            failed[np.searchsorted(distinct, cut) + 1, column[t]] &= np.uint64(mask)
            if not nan_left:  # NaN fails x <= cut and goes right, unless missing values track true
                failed[-1, column[t]] &= np.uint64(mask)
        failed[:-1] = np.bitwise_and.accumulate(failed[:-1], axis=0)  # bin b fails every branch whose cut is among the b below x
        cuts.append(distinct)
        masks.append(failed.ravel())
        readers.append(np.array(reading, np.int32))
        cut_offsets.append(cut_offsets[-1] + len(distinct))
        mask_offsets.append(mask_offsets[-1] + failed.size)
        reader_offsets.append(reader_offsets[-1] + len(reading))
    return Bitvectors(
        np.concatenate(cuts).astype(dtype) if cuts else np.zeros(0, dtype), np.array(cut_offsets, np.int64),
        np.concatenate(masks) if masks else np.zeros(0, np.uint64), np.array(mask_offsets, np.int64),
        np.concatenate(readers) if readers else np.zeros(0, np.int32), np.array(reader_offsets, np.int64),
        np.array(leaf_offsets[:-1], np.int64), weights,
    )  # fmt: skip


def _as_leq(branch: trees.Branch, dtype: type[np.floating]) -> tuple[int, int, np.floating, bool]:
    """The branch as `x <= cut`: (child taken when it holds or for NaN sent left, the other child, cut, NaN goes left),
    exactly onnxruntime's test of an x of `dtype`: NaN fails every comparison, so it takes the false child unless
    missing values track true."""
    t = dtype(branch.threshold)
    if not math.isfinite(branch.threshold) or branch.mode not in _MODES:
        raise NotCompiled(f"a {branch.mode} branch at {branch.threshold} is not compiled")
    below = np.nextafter(t, dtype(-np.inf))  # x < t exactly when x <= the number of dtype below t
    if branch.mode == "BRANCH_LEQ":
        return branch.true, branch.false, t, branch.missing_true
    if branch.mode == "BRANCH_LT":
        return branch.true, branch.false, below, branch.missing_true
    return branch.false, branch.true, t if branch.mode == "BRANCH_GT" else below, not branch.missing_true


def _based(scores: np.ndarray, base: Sequence[float]) -> np.ndarray:
    """Base values added as onnxruntime adds them: one for a single target, else one per target or none."""
    if len(base) == scores.shape[1] or (len(base) == 1 and scores.shape[1] == 1):
        return scores + np.asarray(base, scores.dtype)
    return scores


def _float(values: np.ndarray) -> np.ndarray:
    """Scores as onnxruntime transforms and gives them: FLOAT, whatever the trees add in (labels come before: from
    the sums themselves)."""
    return values.astype(np.float32, copy=False)


def _logistic(v: np.ndarray) -> np.ndarray:
    """ml_common.h's ComputeLogistic in float32: 1 / (1 + exp(-|v|)), mirrored for v < 0."""
    p = np.float32(1) / (np.float32(1) + np.exp(-np.abs(v)))
    return np.where(v < 0, np.float32(1) - p, p)


def _softmax(scores: np.ndarray) -> np.ndarray:
    """ml_common.h's ComputeSoftmax in float32: exp(v - max), divided by their sum."""
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


_TRANSFORMS = {"NONE": lambda s: s, "LOGISTIC": _logistic, "SOFTMAX": _softmax}
_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT", "BRANCH_GTE")


class ForestRunner:
    """A model run as onnxruntime would run it, its tree ensemble compiled: `run` as InferenceSession.run."""

    def __init__(self, model: onnx.ModelProto, options: ort.SessionOptions) -> None:
        graph = model.graph
        ensembles = [n for n in graph.node if n.domain == trees.ML_DOMAIN and n.op_type in trees.ENSEMBLES]
        if len(ensembles) != 1:
            raise NotCompiled(f"it has {len(ensembles)} tree ensembles; one is compiled")
        node = ensembles[0]
        self.input, self.produced = node.input[0], list(node.output)
        inputs = [i.name for i in graph.input]
        rest = [o.name for o in graph.output if o.name not in self.produced]
        extractor = Extractor(onnx.shape_inference.infer_shapes(model))
        extractor.value_infos.setdefault(self.input, helper.make_tensor_value_info(self.input, onnx.TensorProto.FLOAT, ["N", None]))  # onnxruntime checks it
        self.forest = Forest(node, _input_dtype(extractor.value_infos[self.input]))
        for name, info in zip(self.produced, self.forest.output_types(), strict=False):  # as onnxruntime gives them, whatever the graph declares
            extractor.value_infos[name] = helper.make_tensor_value_info(name, *info)
        try:
            self.before = None if self.input in inputs else _session(extractor.extract_model(inputs, [self.input]), options)
            self.after = _session(extractor.extract_model([*self.produced, *inputs], rest), options) if rest else None
        except Exception as e:  # onnx cannot cut the graph there (a sparse initializer), or onnxruntime rejects a part
            raise NotCompiled(f"its graph cannot be cut around the ensemble ({e})") from e
        self.after_inputs = [i.name for i in self.after.get_inputs()] if self.after else []
        self.after_outputs = [o.name for o in self.after.get_outputs()] if self.after else []
        self.forest.outputs(np.zeros((2, self.forest.width), self.forest.dtype))  # compiles the walk now, not in a query

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list:
        x = feeds[self.input] if self.before is None else self.before.run([self.input], feeds)[0]
        values = dict(zip(self.produced, self.forest.outputs(x), strict=False))
        if self.after is not None:
            given = {**feeds, **values}
            values |= zip(self.after_outputs, self.after.run(self.after_outputs, {n: given[n] for n in self.after_inputs}), strict=True)
        return [values[n] for n in names]


def compile_forest(model: onnx.ModelProto, options: ort.SessionOptions) -> tuple[ForestRunner | None, str]:
    """The model's compiled runner, or None and why its trees stay in onnxruntime."""
    try:
        return ForestRunner(model, options), ""
    except NotCompiled as e:
        return None, str(e)
    except Exception as e:  # compiled trees are an optimisation: a graph they misread still scores in onnxruntime
        return None, f"the tree compiler cannot read this graph ({e!r})"


def _session(model: onnx.ModelProto, options: ort.SessionOptions) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _input_dtype(info: onnx.ValueInfoProto) -> type[np.floating]:
    """The numpy type of the ensemble's input, which must be a FLOAT or DOUBLE [N,k] tensor."""
    tensor = info.type.tensor_type
    if tensor.elem_type not in _DTYPES or len(tensor.shape.dim) != 2:
        raise NotCompiled(f"its ensemble reads '{info.name}', which is not a FLOAT or DOUBLE [N,k] tensor")
    return _DTYPES[tensor.elem_type]
