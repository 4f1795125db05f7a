"""Tree ensembles pruned by what a query proves about their inputs (Raven's predicate-based model pruning).

A WHERE on DATA columns pushed below a PREDICT bounds what the model sees of each (sql/ranges.py). In each tree
of an ai.onnx.ml TreeEnsembleClassifier / TreeEnsembleRegressor (what every converter writes), a branch whose
test every such value passes, or every one fails, is replaced by the child they all reach: onnxruntime walks
shorter paths, and a smaller model may compile to SQL. The pruned model means exactly what the model meant on
those rows:
- a bound is widened by one float32 step, so no rounding of an input on its way to the trees crosses it;
- where an interval admits NaN (no upper bound: DuckDB and Spark order NaN above every number), a branch is
  decided only if NaN goes the same way (onnxruntime sends NaN true when missing values track true, and
  otherwise where the test itself holds, i.e. only for BRANCH_NEQ);
- the weights keep what onnxruntime infers from them: every tree still scores the classes it scored, and
  whether all weights are positive (a binary classifier's label rule) does not change, else nothing is pruned.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from predictsql.engine.sources import ModelSource
from predictsql.engine.validate import load_model

ML_DOMAIN = "ai.onnx.ml"
ENSEMBLES = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
Interval = tuple[float, float]
FeatureKey = tuple[str, int]  # (ONNX input, column): a model input value, as engine/inline's Feature
CACHE_SIZE = 32
_PER_NODE_HINTS = ("nodes_hitrates", "nodes_hitrates_as_tensor")  # optional, unused in scoring: dropped, not remapped


@dataclass(frozen=True)
class Branch:
    feature: int
    mode: str
    threshold: float
    true: int
    false: int
    missing_true: bool


@dataclass(frozen=True)
class Leaf:
    weights: tuple[tuple[int, float], ...]  # (class or target id, weight)


TreeNode = Branch | Leaf


@dataclass(frozen=True)
class Tree:
    id: int
    root: int
    nodes: dict[int, TreeNode]  # by node id


@dataclass(frozen=True)
class Pruned:
    """A pruned model's bytes, and the size of its trees before and after (EXPLAIN reports both)."""

    source: ModelSource
    before: int
    after: int


def node_count(model: onnx.ModelProto) -> int:
    """The nodes of the model's tree ensembles, 0 when it has none (then there is nothing to prune)."""
    return sum(len(a.ints) for n in model.graph.node if n.domain == ML_DOMAIN and n.op_type in ENSEMBLES for a in n.attribute if a.name == "nodes_treeids")


_cache: OrderedDict[tuple[str, tuple], Pruned | None] = OrderedDict()
_lock = threading.Lock()


def prune(source: ModelSource, ranges: Mapping[FeatureKey, Interval], max_bytes: int) -> Pruned | None:
    """The model with the branches no row in `ranges` can take removed, or None when none can be; kept per
    (model, ranges) so a statement run again pays nothing."""
    key = (source.sha256, tuple(sorted(ranges.items())))
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    model = load_model(source.data, source.label, source.base_dir, max_bytes)
    before, after = node_count(model), _prune_model(model, ranges)
    result = Pruned(ModelSource(model.SerializeToString(), source.label, source.base_dir), before, after) if after < before else None
    with _lock:
        _cache[key] = result
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result


def _prune_model(model: onnx.ModelProto, ranges: Mapping[FeatureKey, Interval]) -> int:
    """Prune each ensemble of `model` in place; the tree nodes left."""
    features = _features(model.graph)
    left = 0
    for i, node in enumerate(model.graph.node):
        if node.domain != ML_DOMAIN or node.op_type not in ENSEMBLES:
            continue
        keys = features.get(node.input[0], ())
        bounds = {f: _widened(ranges[key]) for f, key in enumerate(keys) if key in ranges}
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        trees = read(node.op_type, attributes)
        pruned = [_prune_tree(t, _decider(bounds)) for t in trees] if bounds and not oddities(attributes, trees) else trees
        if pruned is not trees and _keeps_meaning(trees, pruned):
            model.graph.node[i].CopyFrom(write(node, pruned))
            trees = pruned
        left += sum(len(t.nodes) for t in trees)
    return left


def _features(graph: onnx.GraphProto) -> dict[str, tuple[FeatureKey, ...]]:
    """For each tensor that is the graph's inputs passed on unchanged but for type (Identity, Cast to a float type,
    Concat along columns), which input value each of its columns is; a cast rounds monotonically, which the
    widened bounds allow for."""
    known: dict[str, tuple[FeatureKey, ...]] = {}
    for spec in graph.input:
        dims = spec.type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].dim_value > 0:
            known[spec.name] = tuple((spec.name, j) for j in range(dims[1].dim_value))
    for node in graph.node:
        parts = [known[name] for name in node.input if name in known]
        if not parts or len(parts) != len(node.input):
            continue
        if node.op_type == "Identity" or (node.op_type == "Cast" and _attribute(node, "to") in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)):
            known[node.output[0]] = parts[0]
        elif node.op_type == "Concat" and _attribute(node, "axis") in (1, -1):
            known[node.output[0]] = tuple(key for part in parts for key in part)
    return known


def depth(tree: Tree) -> int:
    """The longest root-to-leaf path, in branches."""
    return max(leaf_depths(tree))


def leaf_depths(tree: Tree) -> list[int]:
    """Each leaf's path from the root, in branches."""
    depths, stack = [], [(tree.root, 0)]
    while stack:
        node_id, d = stack.pop()
        node = tree.nodes[node_id]
        if isinstance(node, Branch):
            stack += [(node.true, d + 1), (node.false, d + 1)]
        else:
            depths.append(d)
    return depths


def _widened(interval: Interval) -> Interval:
    """The interval one float32 step wider at each finite end: it then holds every rounding of its values."""
    low, high = (np.float32(v) for v in interval)
    return float(np.nextafter(low, np.float32(-np.inf))), float(np.nextafter(high, np.float32(np.inf)))


def _decider(bounds: Mapping[int, Interval]) -> Callable[[Branch], bool | None]:
    def decide(branch: Branch) -> bool | None:
        """True or False when every value the bounds allow takes that side of `branch`, else None."""
        interval = bounds.get(branch.feature)
        if interval is None:
            return None
        low, high = interval
        t = branch.threshold
        side = _SIDES[branch.mode](low, high, t)
        if side is not None and high == math.inf and side != (branch.missing_true or branch.mode == "BRANCH_NEQ"):
            return None  # NaN is possible and goes the other way
        return side

    return decide


def _side(always: bool, never: bool) -> bool | None:
    return True if always else False if never else None


_SIDES: dict[str, Callable[[float, float, float], bool | None]] = {
    "BRANCH_LEQ": lambda low, high, t: _side(high <= t, low > t),
    "BRANCH_LT": lambda low, high, t: _side(high < t, low >= t),
    "BRANCH_GTE": lambda low, high, t: _side(low >= t, high < t),
    "BRANCH_GT": lambda low, high, t: _side(low > t, high <= t),
    "BRANCH_EQ": lambda low, high, t: _side(low == high == t, t < low or t > high),
    "BRANCH_NEQ": lambda low, high, t: _side(t < low or t > high, low == high == t),
}


def _prune_tree(tree: Tree, decide: Callable[[Branch], bool | None]) -> Tree:
    """The tree with each decided branch replaced by the child its rows reach; node ids renumbered from the root."""

    def reached(node_id: int) -> int:
        node = tree.nodes[node_id]
        while isinstance(node, Branch) and (side := decide(node)) is not None:
            node_id = node.true if side else node.false
            node = tree.nodes[node_id]
        return node_id

    order, children = [reached(tree.root)], {}
    for node_id in order:  # grows as it is walked: breadth first
        node = tree.nodes[node_id]
        if isinstance(node, Branch):
            children[node_id] = (reached(node.true), reached(node.false))
            order += children[node_id]
    new = {old: i for i, old in enumerate(order)}
    nodes: dict[int, TreeNode] = {}
    for old in order:
        node = tree.nodes[old]
        if isinstance(node, Branch):
            true, false = children[old]
            node = Branch(node.feature, node.mode, node.threshold, new[true], new[false], node.missing_true)
        nodes[new[old]] = node
    return Tree(tree.id, 0, nodes)


def _keeps_meaning(trees: list[Tree], pruned: list[Tree]) -> bool:
    """Whether onnxruntime reads the pruned weights as it read the old: each tree scores the classes (targets) it
    scored, and whether every weight is positive is unchanged."""

    def facts(tree: Tree) -> tuple[set[int], bool]:
        weights = [w for node in tree.nodes.values() if isinstance(node, Leaf) for w in node.weights]
        return {c for c, _ in weights}, all(v >= 0 for _, v in weights)

    old, new = [facts(t) for t in trees], [facts(t) for t in pruned]
    return all(a[0] == b[0] for a, b in zip(old, new, strict=True)) and all(a[1] for a in old) == all(b[1] for b in new)


BINARY_POSITIVE, BINARY_LOGISTIC, PER_CLASS = "binary, positive weights", "binary, logistic", "a score per class"


def classifier_form(n_labels: int, ensemble: list[Tree], base: list[float], transform: str) -> str | None:
    """Which of onnxruntime's readings of a classifier's scores applies (tree_ensemble_aggregator.h), of those predictsql
    reproduces: one score, of class 0, for two classes with at most one base value: BINARY_POSITIVE (every weight >= 0,
    no transform, no base: probabilities [1 - s, s], label s > 0.5) or BINARY_LOGISTIC (mixed weights under LOGISTIC:
    [σ(-s), σ(s)], label s > 0); or PER_CLASS (three or more classes, each scored on every row: label the first
    greatest). None for the forms onnxruntime reads otherwise (class 1 scored, two base values, two classes each
    scored, a class some rows leave unscored)."""
    weights = [w for t in ensemble for node in t.nodes.values() if isinstance(node, Leaf) for w in node.weights]
    scored = sorted({c for c, _ in weights})
    if n_labels == 2 and scored == [0] and len(base) <= 1:
        positive = all(v >= 0 for _, v in weights)
        if positive and transform == "NONE" and not base:
            return BINARY_POSITIVE
        return BINARY_LOGISTIC if not positive and transform == "LOGISTIC" else None
    if n_labels < 3 or scored != list(range(n_labels)) or len(base) not in (0, n_labels):
        return None
    return PER_CLASS if base or always_scored(ensemble, n_labels) else None


def always_scored(ensemble: list[Tree], n_labels: int) -> bool:
    """Whether every row scores each of n classes (targets): onnxruntime passes over one that no reached leaf weighs (its
    has_score): a classifier's first greatest skips it, a regressor gives it 0, base value or not. So some tree must
    weigh each at every leaf."""
    weighed: set[int] = set()
    for tree in ensemble:
        leaves = [{c for c, _ in node.weights} for node in tree.nodes.values() if isinstance(node, Leaf)]
        weighed |= set.intersection(*leaves) if leaves else set()
    return weighed >= set(range(n_labels))


def oddities(attributes: Mapping[str, Any], ensemble: list[Tree]) -> str:
    """What no converter writes and onnxruntime reads its own way, else '': trees whose nodes are interleaved (it
    starts a tree at each change of tree id, so it sees more trees than there are), a leaf that weighs one class twice
    (a one-target regressor then adds only the first weight) or weighs it by NaN or ±inf."""
    ids = attributes["nodes_treeids"]
    if len(set(ids)) != 1 + sum(a != b for a, b in zip(ids, ids[1:], strict=False)):
        return "its trees' nodes are interleaved, which onnxruntime reads as more trees than there are"
    for tree in ensemble:
        for node in tree.nodes.values():
            if isinstance(node, Leaf):
                ids = [c for c, _ in node.weights]
                if len(set(ids)) != len(ids) or not all(math.isfinite(w) for _, w in node.weights):
                    return f"tree {tree.id} has a leaf weighing a class twice or by a non-finite weight"
    return ""


def transform(attributes: Mapping[str, Any]) -> str:
    """An ML operator's post_transform, NONE by default."""
    value = attributes.get("post_transform", b"NONE")
    return value.decode() if isinstance(value, bytes) else value


def read(op_type: str, a: Mapping[str, Any]) -> list[Tree]:
    """An ensemble's trees from its operator and attributes, in their order; each tree's first node is its root, as
    onnxruntime reads it."""
    weights_of = "class" if op_type == "TreeEnsembleClassifier" else "target"
    values = floats(a, "nodes_values")
    modes = [m.decode() for m in a["nodes_modes"]]
    missing = a.get("nodes_missing_value_tracks_true") or [0] * len(modes)
    weights: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for tree_id, node_id, target, weight in zip(a[f"{weights_of}_treeids"], a[f"{weights_of}_nodeids"], a[f"{weights_of}_ids"], floats(a, f"{weights_of}_weights"), strict=True):
        weights.setdefault((tree_id, node_id), []).append((target, weight))
    trees: dict[int, Tree] = {}
    for k, (tree_id, node_id) in enumerate(zip(a["nodes_treeids"], a["nodes_nodeids"], strict=True)):
        tree = trees.setdefault(tree_id, Tree(tree_id, node_id, {}))
        if modes[k] == "LEAF":
            tree.nodes[node_id] = Leaf(tuple(weights.get((tree_id, node_id), ())))
        else:
            tree.nodes[node_id] = Branch(a["nodes_featureids"][k], modes[k], values[k], a["nodes_truenodeids"][k], a["nodes_falsenodeids"][k], bool(missing[k]))
    return list(trees.values())


def write(node: onnx.NodeProto, trees: list[Tree]) -> onnx.NodeProto:
    """`node` with its trees replaced by `trees`: the same operator, inputs, outputs and other attributes; values and
    weights stored as the node stored them (floats, or double tensors)."""
    weights_of = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
    old = {x.name: x for x in node.attribute}
    columns: dict[str, list] = {name: [] for name in ("treeids", "nodeids", "featureids", "modes", "values", "truenodeids", "falsenodeids", "missing_value_tracks_true")}
    leaves: dict[str, list] = {name: [] for name in ("treeids", "nodeids", "ids", "weights")}
    for tree in trees:
        for node_id, item in sorted(tree.nodes.items()):
            if isinstance(item, Branch):
                row = (tree.id, node_id, item.feature, item.mode, item.threshold, item.true, item.false, int(item.missing_true))
            else:
                row = (tree.id, node_id, 0, "LEAF", 0.0, 0, 0, 0)
                for vote in item.weights:
                    for name, part in zip(leaves, (tree.id, node_id, *vote), strict=True):
                        leaves[name].append(part)
            for name, field in zip(columns, row, strict=True):
                columns[name].append(field)
    replaced = {f"nodes_{name}": values for name, values in columns.items()} | {f"{weights_of}_{name}": values for name, values in leaves.items()}
    replaced["nodes_modes"] = [m.encode() for m in replaced["nodes_modes"]]
    rewritten = {*replaced, *(f"{name}_as_tensor" for name in replaced), *_PER_NODE_HINTS}
    attributes = [x for name, x in old.items() if name not in rewritten]
    for name, values in replaced.items():
        if f"{name}_as_tensor" in old:
            dtype = numpy_helper.to_array(helper.get_attribute_value(old[f"{name}_as_tensor"])).dtype
            attributes.append(helper.make_attribute(f"{name}_as_tensor", numpy_helper.from_array(np.asarray(values, dtype=dtype))))
        elif name in old:
            attributes.append(helper.make_attribute(name, values))
    written = helper.make_node(node.op_type, list(node.input), list(node.output), name=node.name, domain=node.domain)
    written.attribute.extend(attributes)
    return written


def floats(attributes: Mapping[str, Any], name: str) -> list[float]:
    """A float attribute, or its `_as_tensor` double form, as Python floats."""
    if f"{name}_as_tensor" in attributes:
        return numpy_helper.to_array(attributes[f"{name}_as_tensor"]).astype(float).tolist()
    return [float(v) for v in attributes.get(name, [])]


def _attribute(node: onnx.NodeProto, name: str) -> object:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)
