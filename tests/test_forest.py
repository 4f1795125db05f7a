"""The compiled tree plan (engine/forest.py): a model whose tree ensemble compiles gives what raw onnxruntime gives on
the same array (the sums bit for bit, labels equal, probabilities within float32 rounding of onnxruntime's exp),
at every branch mode and threshold, one float32 step either side and on NaN and ±inf; graphs it does not compile are
scored by onnxruntime, and EXPLAIN names which ran; a PREDICT over such a model agrees with scikit-learn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pytest
from onnx import TensorProto, helper

import predictsql
from predictsql.engine import sessions
from predictsql.engine.forest import Bitvectors, ForestRunner, compile_forest
from predictsql.engine.sources import ModelSource

from conftest import Fitted, assert_parity, no_stream_on_spark, not_none

COLUMNS = [f"x{i}" for i in range(6)]


def _training(rows: int = 1500) -> tuple[pd.DataFrame, pd.Series, pd.Series, pd.Series]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(rows, len(COLUMNS))).astype(np.float32), columns=COLUMNS)
    binary = (x.x0 + 0.5 * x.x1 * x.x2 > 0).astype(int)
    classes = pd.cut(x.x0 + x.x3, [-np.inf, -0.5, 0.5, np.inf], labels=False).astype(int)
    return x, binary, classes, x.x0 * 3 + x.x1**2


def _sklearn(kind: str) -> Callable[[], object]:
    from sklearn import ensemble, pipeline, preprocessing, tree

    return {
        "forest": lambda: ensemble.RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0),
        "extra_trees": lambda: ensemble.ExtraTreesClassifier(n_estimators=20, max_depth=6, random_state=0),
        "boosting": lambda: ensemble.GradientBoostingClassifier(n_estimators=30, random_state=0),
        "hist_boosting": lambda: ensemble.HistGradientBoostingClassifier(max_iter=20, max_depth=5, random_state=0),  # leaf-wise, depth 5: complete trees (unlimited: bitvectors)
        "tree": lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0),
        "forest_regressor": lambda: ensemble.RandomForestRegressor(n_estimators=20, max_depth=7, random_state=0),
        "boosting_regressor": lambda: ensemble.GradientBoostingRegressor(n_estimators=30, random_state=0),
        "scaled_forest": lambda: pipeline.make_pipeline(preprocessing.StandardScaler(), ensemble.RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
    }[kind]


CASES = [
    ("forest", "binary"), ("forest", "classes"), ("extra_trees", "binary"), ("boosting", "binary"), ("boosting", "classes"),
    ("hist_boosting", "binary"), ("hist_boosting", "classes"), ("tree", "classes"), ("forest_regressor", "values"),
    ("boosting_regressor", "values"), ("scaled_forest", "binary"), ("xgboost", "binary"), ("xgboost", "classes"),
    ("lightgbm", "binary"), ("lightgbm", "classes"), ("lightgbm", "values"), ("forest", "text"),
]  # fmt: skip


def _fitted(kind: str, target: str) -> tuple[object, bytes]:
    x, binary, classes, values = _training()
    y = {"binary": binary, "classes": classes, "values": values, "text": binary.map({0: "no", 1: "yes"})}[target]
    if kind == "xgboost":  # BRANCH_LT, and a Cast before the trees
        import xgboost

        make: Callable[[], object] = lambda: xgboost.XGBClassifier(n_estimators=20, max_depth=4, random_state=0)  # noqa: E731
    elif kind == "lightgbm":  # DOUBLE input and thresholds, compared and added in DOUBLE; missing values tracking true
        import lightgbm

        x = x.astype(np.float64)
        make = lambda: (lightgbm.LGBMRegressor if target == "values" else lightgbm.LGBMClassifier)(n_estimators=20, max_depth=5, random_state=0, verbose=-1)  # noqa: E731
    else:
        make = _sklearn(kind)
    estimator = make().fit(x, y)  # type: ignore[attr-defined]
    return estimator, predictsql.export(estimator, x, outputs={"score": "Score"} if target == "binary" else None)


def _session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _compiled(model: bytes) -> ForestRunner:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    runner, why = compile_forest(onnx.load_from_string(model), options)
    assert runner is not None, why
    return runner


def _assert_as_onnxruntime(model: bytes, rows: np.ndarray) -> None:
    """The compiled runner's outputs against raw onnxruntime's on the same rows."""
    session = _session(model)
    spec = session.get_inputs()[0]
    feeds = {spec.name: rows.astype(np.float64 if "double" in spec.type else np.float32)}
    names = [o.name for o in session.get_outputs()]
    for name, expected, got in zip(names, session.run(names, feeds), _compiled(model).run(names, feeds), strict=True):
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(got, expected, rtol=0, atol=2.4e-7, err_msg=name)  # onnxruntime's float32 exp, one or two ulps
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.parametrize(("kind", "target"), CASES)
def test_a_compiled_ensemble_scores_as_onnxruntime(kind: str, target: str) -> None:
    _, model = _fitted(kind, target)
    x, *_ = _training(4000)
    rows = x.to_numpy().astype(np.float64)
    rows[::7, 0], rows[::11, 1], rows[::13, 2], rows[::17, 3] = np.nan, np.inf, -np.inf, np.nan  # where NaN and ±inf go
    _assert_as_onnxruntime(model, rows)


def test_sums_of_leaves_are_bit_for_bit_onnxruntime_s() -> None:
    """Scores under no transform are onnxruntime's float32 sums in tree order exactly, whatever the batch."""
    _, model = _fitted("forest", "classes")
    x, *_ = _training(3001)
    session, runner = _session(model), _compiled(model)
    feeds = {"X": x.to_numpy()}
    expected = session.run(["probabilities"], feeds)[0]
    np.testing.assert_array_equal(runner.run(["probabilities"], feeds)[0], expected)
    np.testing.assert_array_equal(runner.run(["probabilities"], {"X": x.to_numpy()[1000:1001]})[0], expected[1000:1001])


def _stump(weights: tuple[float, float], transform: str) -> bytes:
    """A binary classifier of one tree on x0 <= 0, both leaves weighting class 0: onnxruntime's one-score binary form."""
    node = helper.make_node(
        "TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml",
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0], nodes_values=[0.0, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
        class_treeids=[0, 0], class_nodeids=[1, 2], class_ids=[0, 0], class_weights=list(weights),
        classlabels_int64s=[3, 7], post_transform=transform,
    )  # fmt: skip
    outputs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None]), helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])]
    graph = helper.make_graph([node], "stump", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)], ir_version=8).SerializeToString()


@pytest.mark.parametrize(("weights", "transform"), [((0.5, 0.75), "NONE"), ((0.25, 0.5), "NONE"), ((0.0, -0.5), "LOGISTIC"), ((-0.5, 0.0), "LOGISTIC")])
def test_a_binary_score_on_its_cut_takes_onnxruntime_s_label(weights: tuple[float, float], transform: str) -> None:
    """A score exactly at the binary rule's cut (0.5 for positive weights, 0 under LOGISTIC) is the negative label."""
    _assert_as_onnxruntime(_stump(weights, transform), np.array([[-1.0], [1.0], [np.nan]]))


def _regressor(modes: list[str], thresholds: list[float], missing: list[int]) -> bytes:
    """A regressor of one tree per branch: x_j against its threshold, a leaf of 1 on the true side and 2 on the false,
    the tree scoring target j; a deeper tree on x0 too, so trees differ in depth."""
    nodes: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "featureids", "values", "modes", "truenodeids", "falsenodeids", "missing_value_tracks_true")}
    leaves: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}

    def add(tree: int, node: int, feature: int, value: float, mode: str, true: int = 0, false: int = 0, track: int = 0) -> None:
        for key, v in zip(nodes, (tree, node, feature, value, mode, true, false, track), strict=True):
            nodes[key].append(v)

    def leaf(tree: int, node: int, target: int, weight: float) -> None:
        add(tree, node, 0, 0.0, "LEAF")
        for key, v in zip(leaves, (tree, node, target, weight), strict=True):
            leaves[key].append(v)

    for j, (mode, t, track) in enumerate(zip(modes, thresholds, missing, strict=True)):
        add(j, 0, j, t, mode, 1, 2, track)
        leaf(j, 1, j, 1.0)
        leaf(j, 2, j, 2.0)
    deep = len(modes)
    add(deep, 0, 0, 0.0, "BRANCH_LEQ", 1, 2)
    leaf(deep, 1, 0, 10.0)
    add(deep, 2, 0, 1.0, "BRANCH_LT", 3, 4)
    leaf(deep, 3, 0, 20.0)
    add(deep, 4, 1, 0.5, "BRANCH_GTE", 5, 6, 1)
    leaf(deep, 5, 0, 40.0)
    leaf(deep, 6, 0, 80.0)
    attributes: dict[str, Any] = {f"nodes_{k}": v for k, v in nodes.items()} | {f"target_{k}": v for k, v in leaves.items()}
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["variable"], domain="ai.onnx.ml", n_targets=len(modes), **attributes)
    width = len(modes)
    graph = helper.make_graph([node], "modes", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])], [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, width])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)], ir_version=8).SerializeToString()


def test_every_branch_mode_compares_as_onnxruntime_at_its_threshold() -> None:
    """x < t, x > t and x >= t, compiled as x <= t (or the float below t) with the children swapped, go where onnxruntime
    sends them at t, one float32 step either side, ±inf and NaN, with missing values tracking true or not."""
    modes = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT", "BRANCH_GTE"] * 2
    thresholds = [0.3, 0.3, -1.5, 2.0, 1e-30, -7.0, 0.0, 3.4e38]
    model = _regressor(modes, thresholds, [0, 0, 0, 0, 1, 1, 1, 1])
    values = []
    for t in np.array(thresholds, np.float32):
        values += [t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))]
    values += [np.nan, np.inf, -np.inf, 0.0, -0.0]
    column = np.array(values, np.float32)
    rows = np.column_stack([np.roll(column, j) for j in range(len(modes))])
    _assert_as_onnxruntime(model, rows)
    scores = _compiled(model).run(["variable"], {"X": rows})[0]
    assert set(np.unique(scores[:, 1:])) == {1.0, 2.0}  # both sides of every branch are reached


def _with(model: bytes, **changes: object) -> bytes:
    """The model with its ensemble's attributes changed."""
    proto = onnx.load_from_string(model)
    node = proto.graph.node[0]
    kept = [a for a in node.attribute if a.name not in changes]
    del node.attribute[:]
    node.attribute.extend([*kept, *(helper.make_attribute(name, value) for name, value in changes.items())])
    return proto.SerializeToString()


def test_what_does_not_compile_is_scored_by_onnxruntime_and_says_why() -> None:
    model = _regressor(["BRANCH_LEQ", "BRANCH_LT"], [0.0, 1.0], [0, 0])
    cases = {
        "BRANCH_EQ": _with(model, nodes_modes=["BRANCH_EQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF", "BRANCH_LEQ", "LEAF", "BRANCH_LT", "LEAF", "BRANCH_GTE", "LEAF", "LEAF"]),
        "aggregate_function MAX": _with(model, aggregate_function="MAX"),
        "post_transform PROBIT": _with(model, post_transform="PROBIT"),
        "a target unscored": _with(model, target_ids=[0, 0, 1, 0, 0, 0, 0, 0]),  # tree 1's right leaf now weighs target 0
        "a class weighed twice": _with(
            model,
            target_treeids=[0, *_attribute(model, "target_treeids")],
            target_nodeids=[1, *_attribute(model, "target_nodeids")],
            target_ids=[0, *_attribute(model, "target_ids")],
            target_weights=[5.0, *_attribute(model, "target_weights")],
        ),
        "nodes interleaved": _with(model, **{name: _interleaved(_attribute(model, name)) for name in _NODE_ATTRIBUTES}),
    }
    for why, broken in cases.items():
        loaded = sessions.load(ModelSource(broken, why))
        assert loaded.runner is loaded.session and why.split()[-1] in loaded.runtime, (why, loaded.runtime)
        if why != "post_transform PROBIT":  # onnxruntime's own reading of each, which compiled code would have to mimic
            _session(broken).run(None, {"X": np.zeros((3, 2), np.float32)})
    compiled = sessions.load(ModelSource(model, "modes"))
    assert isinstance(compiled.runner, ForestRunner) and compiled.runtime.startswith("compiled trees")
    off = sessions.load(ModelSource(model, "modes"), sessions.SessionOptions(compiled_trees=False))
    assert off.runner is off.session and "off" in off.runtime


def test_a_leaf_weighing_a_class_twice_is_neither_compiled_nor_inlined() -> None:
    """onnxruntime reads such a leaf its own way (a one-target regressor adds only the first weight): both refuse it."""
    from predictsql.engine.inline import NotInlinable, compile_graph

    stump = _stump((0.25, 0.75), "NONE")
    assert compile_forest(onnx.load_from_string(stump), ort.SessionOptions())[0] is not None  # the stump itself compiles
    twice = onnx.load_from_string(_with(stump, class_treeids=[0, 0, 0], class_nodeids=[1, 2, 2], class_ids=[0, 0, 0], class_weights=[0.25, 0.5, 0.25]))
    assert compile_forest(twice, ort.SessionOptions())[0] is None
    with pytest.raises(NotInlinable, match="twice"):
        compile_graph(twice)


_NODE_ATTRIBUTES = ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes", "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true")


def _attribute(model: bytes, name: str) -> list:
    node = onnx.load_from_string(model).graph.node[0]
    return list(next(helper.get_attribute_value(a) for a in node.attribute if a.name == name))


def _interleaved(values: list) -> list:
    """Node attributes with tree 1's first node listed among tree 0's (trees' roots kept first)."""
    return [values[0], values[3], values[1], values[2], *values[4:]]


def test_a_class_some_rows_leave_unscored_is_neither_compiled_nor_inlined() -> None:
    """onnxruntime's first greatest passes over a class no reached leaf weighs: here class 12 on x > 0, where its 0
    would beat class 10's -1. Neither the compiled trees nor INLINE read it so; onnxruntime scores it."""
    from predictsql.engine.inline import NotInlinable, compile_graph

    node = helper.make_node(
        "TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml",
        nodes_treeids=[0, 1, 1, 1], nodes_nodeids=[0, 0, 1, 2], nodes_featureids=[0, 0, 0, 0], nodes_values=[0.0, 0.0, 0.0, 0.0],
        nodes_modes=["LEAF", "BRANCH_LEQ", "LEAF", "LEAF"], nodes_truenodeids=[0, 1, 0, 0], nodes_falsenodeids=[0, 2, 0, 0],
        class_treeids=[0, 0, 1], class_nodeids=[0, 0, 1], class_ids=[0, 1, 2], class_weights=[-1.0, -2.0, -5.0], classlabels_int64s=[10, 11, 12],
    )  # fmt: skip
    outputs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None]), helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])]
    graph = helper.make_graph([node], "unscored", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)], ir_version=8)
    assert compile_forest(model, ort.SessionOptions())[0] is None
    with pytest.raises(NotInlinable, match="has no SQL form"):
        compile_graph(model)
    labels = _session(model.SerializeToString()).run(["label"], {"X": np.array([[-1.0], [1.0]], np.float32)})[0]
    np.testing.assert_array_equal(labels, [10, 10])  # on x > 0, not 12


def test_trees_reading_beyond_their_input_are_a_scoring_error_as_in_onnxruntime() -> None:
    """onnxruntime loads a tree testing feature 5 of a 2-column input and refuses it when run; so does the compiled walk
    (which would read past the row), naming the model."""
    from predictsql.engine.errors import ScoringError

    model = _regressor(["BRANCH_LEQ", "BRANCH_LT"], [0.0, 1.0], [0, 0])
    wide = _with(model, nodes_featureids=[5, *_attribute(model, "nodes_featureids")[1:]])
    assert isinstance(sessions.load(ModelSource(wide, "wide")).runner, ForestRunner)
    rows = pa.table({"X": pa.array([[0.5, 1.0], [2.0, -1.0]], pa.list_(pa.float32()))})  # a list column feeds X whole
    with pytest.raises(ScoringError, match=r"failed on batch 0 \(rows 0-1\): the trees read 6 features"):
        predictsql.predict(wide, rows)


def _caterpillar(modes: list[str], thresholds: list[float], features: list[int], missing: list[int]) -> onnx.ModelProto:
    """One tree splitting off one leaf per level: branch i tests x[features[i]] against thresholds[i] (its true side is
    leaf i, weight i; its false side branch i + 1, the last's a leaf of weight len(modes)). As a complete tree it pads
    to 2^(depth + 1) - 1 slots."""
    depth = len(modes)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["variable"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[0] * (2 * depth + 1), nodes_nodeids=list(range(2 * depth + 1)), nodes_featureids=features + [0] * (depth + 1),
        nodes_values=thresholds + [0.0] * (depth + 1), nodes_modes=modes + ["LEAF"] * (depth + 1),
        nodes_truenodeids=[depth + i for i in range(depth)] + [0] * (depth + 1), nodes_falsenodeids=[i + 1 for i in range(depth - 1)] + [2 * depth] + [0] * (depth + 1),
        nodes_missing_value_tracks_true=missing + [0] * (depth + 1),
        target_treeids=[0] * (depth + 1), target_nodeids=list(range(depth, 2 * depth + 1)), target_ids=[0] * (depth + 1), target_weights=[float(i) for i in range(depth + 1)],
    )  # fmt: skip
    width = max(features) + 1
    graph = helper.make_graph([node], "caterpillar", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])], [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)], ir_version=8)


def test_deep_sparse_trees_are_bitvectors_that_compare_as_onnxruntime_at_every_threshold() -> None:
    """A tree that would pad beyond MAX_PADDING slots per node is laid out as bitvectors: every branch mode, at its
    threshold and one float32 step either side, ±inf and NaN (tracked or not) exits where onnxruntime's walk does."""
    modes = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT", "BRANCH_GTE"] * 2
    thresholds = [0.3, -7.0, 2.0, 3.4e38, 1.0, 1e-30, 1.5, 0.5]  # x0 and x1 by turns, each branch's both sides reachable
    model = _caterpillar(modes, thresholds, [0, 1] * 4, [0, 1, 0, 1, 1, 0, 1, 0])
    runner, why = compile_forest(model, ort.SessionOptions())
    assert runner is not None and isinstance(runner.forest.layout, Bitvectors), why
    values = [v for t in np.array(thresholds, np.float32) for v in (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf)))]
    column = np.array([*values, np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    rows = np.array([[a, b] for a in column for b in column], np.float32)
    _assert_as_onnxruntime(model.SerializeToString(), rows)
    assert len(np.unique(runner.run(["variable"], {"X": rows})[0])) == len(modes) + 1  # every leaf is reached


def test_trees_fitting_no_layout_stay_in_onnxruntime_and_say_why() -> None:
    """A tree of more than 64 leaves fits no bitvector; one whose bitvectors would cost more than onnxruntime's walk
    (each of its 20 branches on its own feature: 20 masks and 20 bin searches a row, against 11 node visits) stays too."""
    deep = _caterpillar(["BRANCH_LEQ"] * 70, [float(i) for i in range(70)], [0] * 70, [0] * 70)
    runner, why = compile_forest(deep, ort.SessionOptions())
    assert runner is None and "a tree has 71 leaves, beyond the 64 of a bitvector" in why
    scores = _session(deep.SerializeToString()).run(None, {"X": np.array([[-1.0], [35.5], [100.0]], np.float32)})[0]
    np.testing.assert_array_equal(scores.ravel(), [0, 36, 70])  # onnxruntime scores it
    wide = _caterpillar(["BRANCH_LEQ"] * 20, [0.0] * 20, list(range(20)), [0] * 20)
    runner, why = compile_forest(wide, ort.SessionOptions())
    assert runner is None and "AND 20 masks over 20 features, costlier than onnxruntime's 11 node visits" in why


@pytest.mark.parametrize("kind", ["lightgbm", "hist_boosting"])
def test_leaf_wise_boosters_are_bitvectors_scoring_as_onnxruntime(kind: str) -> None:
    """Leaf-wise boosting's trees as grown by default (31 leaves, no depth limit; here one tree per class of three) pad
    beyond MAX_PADDING: bitvectors score them as onnxruntime does, on NaN and ±inf too (LightGBM in DOUBLE, its missing
    values tracking true)."""
    x, _, classes, _ = _training(3000)
    if kind == "lightgbm":
        import lightgbm

        x = x.astype(np.float64)
        estimator: Any = lightgbm.LGBMClassifier(n_estimators=30, random_state=0, verbose=-1)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        estimator = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    model = predictsql.export(estimator.fit(x, classes), x)
    assert isinstance(_compiled(model).forest.layout, Bitvectors)
    rows = _training(4000)[0].to_numpy().astype(np.float64)
    rows[::7, 0], rows[::11, 1], rows[::13, 2], rows[::17, 3] = np.nan, np.inf, -np.inf, np.nan
    _assert_as_onnxruntime(model, rows)


def test_a_walk_numba_cannot_cache_is_compiled_in_the_process() -> None:
    """Where numba finds nowhere to write its cache (here: code with no file), the walk is still compiled."""
    from predictsql.engine.forest_kernel import _compiled

    namespace: dict[str, Any] = {}
    exec("def double(x, out):\n    for i in range(x.shape[0]):\n        out[i] = 2 * x[i]", namespace)
    out = np.zeros(3)
    _compiled(namespace["double"])(np.arange(3.0), out)
    np.testing.assert_array_equal(out, [0.0, 2.0, 4.0])


@pytest.mark.parametrize("plan", ["UDF", "STREAM"])
def test_a_predict_over_a_compiled_forest_agrees_with_scikit_learn(backend, forest: Fitted, plan: str, request: pytest.FixtureRequest) -> None:
    """The session's random forest, scored by its compiled trees inside the engine's query (UDF) and beside it
    (STREAM): scikit-learn's probabilities and labels."""
    no_stream_on_spark(backend, plan, request)
    query = f"SELECT d.id, p.label, p.probabilities FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (label BIGINT, probabilities FLOAT[]) AS p ORDER BY d.id"
    rows = not_none(backend.sql(query, {"m": forest.onnx}))
    assert_parity(forest.estimator, forest.features, rows.label.to_numpy(), np.stack(rows.probabilities.to_numpy()))


@pytest.mark.parametrize(("compiled", "runtime"), [(True, "scored by compiled trees"), (False, "scored by onnxruntime (compiled trees off)")])
def test_explain_names_the_runtime_that_scores_a_forest(db_path: Path, forest: Fitted, compiled: bool, runtime: str) -> None:
    query = "SELECT p.label FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = STREAM) WITH (label BIGINT) AS p"
    with predictsql.connect(str(db_path), compiled_trees=compiled) as con:
        (bound,) = con.explain(query, params={"m": forest.onnx}).statements[0][2]
    assert runtime in "\n".join(bound.describe())
