"""Tree plans. Pruning by what a WHERE proves (sql/ranges.py, engine/trees.py): the pruned model scores every row the
WHERE lets through exactly as the whole model does (raw onnxruntime on the same rows), at thresholds, one rounding
step either side of them, and on NaN; a PREDICT with such a WHERE returns those scores on both engines. INLINE
trees (engine/inline.py): small ensembles as nested CASEs agree with onnxruntime on both engines, NaN and NULL
included."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import sqlglot
from onnx import TensorProto, helper

import predictsql
from predictsql.engine import trees
from predictsql.engine.inline import NotInlinable, compile_graph
from predictsql.engine.sources import ModelSource
from predictsql.sql.ranges import column_ranges

from conftest import not_none

COLUMNS = ["a", "b", "c", "d"]
MAX_BYTES = 1 << 30


def _training(rows: int = 2000) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(rows, len(COLUMNS))), columns=COLUMNS)
    x.loc[rng.random(rows) < 0.1, "a"] = np.nan  # LightGBM learns where missing values go
    target = (np.nan_to_num(x.a) + x.b > 0).astype(int)
    return x, target


def _random_forest() -> bytes:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _training()
    x = x.fillna(0).astype(np.float32)
    return predictsql.export(RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(x, y), x)


def _xgboost() -> bytes:  # BRANCH_LT, a DOUBLE input cast to FLOAT before the trees
    import xgboost

    x, y = _training()
    return predictsql.export(xgboost.XGBClassifier(n_estimators=20, max_depth=5, random_state=0).fit(x, y), x)


def _lightgbm() -> bytes:  # DOUBLE thresholds, missing values tracking true
    import lightgbm

    x, y = _training()
    return predictsql.export(lightgbm.LGBMRegressor(n_estimators=20, random_state=0, verbose=-1).fit(x, x.b * 2 + y), x)


MODELS: dict[str, Callable[[], bytes]] = {"random_forest": _random_forest, "xgboost": _xgboost, "lightgbm": _lightgbm}


@pytest.fixture(scope="module", params=list(MODELS))
def tree_model(request: pytest.FixtureRequest) -> bytes:
    return MODELS[request.param]()


def _session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _thresholds(model: bytes, feature: int) -> list[float]:
    import onnx

    proto = onnx.load_from_string(model)
    node = next(n for n in proto.graph.node if n.op_type in trees.ENSEMBLES)
    ensemble = trees.read(node.op_type, {a.name: helper.get_attribute_value(a) for a in node.attribute})
    return sorted({b.threshold for t in ensemble for b in t.nodes.values() if isinstance(b, trees.Branch) and b.feature == feature})


def _near(values: list[float]) -> np.ndarray:
    """Each value and its float32 and float64 neighbours: where a rounding could cross a threshold."""
    out = []
    for v in values:
        f = np.float32(v)
        out += [v, float(np.nextafter(f, np.float32(-np.inf))), float(np.nextafter(f, np.float32(np.inf))), math.nextafter(v, -math.inf), math.nextafter(v, math.inf)]
    return np.array(out)


def _rows(model: bytes, interval: tuple[float, float]) -> np.ndarray:
    """Rows whose column a lies in `interval`: thresholds of a and their neighbours, NaN when the interval admits it,
    and random values for the other columns."""
    low, high = interval
    a = _near(_thresholds(model, 0) + [v for v in interval if math.isfinite(v)])
    a = a[(a >= low) & (a <= high)]
    if high == math.inf:
        a = np.append(a, np.nan)
    rng = np.random.default_rng(1)
    others = rng.normal(size=(len(a), len(COLUMNS) - 1))
    return np.column_stack([a, others])


def _scores(model: bytes, rows: np.ndarray) -> list[np.ndarray]:
    session = _session(model)
    spec = session.get_inputs()[0]
    return session.run(None, {spec.name: rows.astype(np.float64 if "double" in spec.type else np.float32)})


def test_a_pruned_model_scores_each_row_its_interval_admits_as_the_whole_model(tree_model: bytes) -> None:
    """Intervals bounded at a threshold t of a, one float32 step off it, by a DOUBLE next to t that rounds to it,
    and lower bounds alone (NaN passes): the pruned model's outputs equal the model's, bit for bit."""
    name = _session(tree_model).get_inputs()[0].name
    cuts = _thresholds(tree_model, 0)
    t = cuts[len(cuts) // 2]
    step = float(np.spacing(np.float32(t)))
    below, above = math.nextafter(t, -math.inf), math.nextafter(t, math.inf)  # DOUBLE bounds that round to t in FLOAT
    intervals = [(-math.inf, t), (t, math.inf), (-math.inf, t - step), (t + step, math.inf), (-math.inf, below), (above, math.inf), (cuts[1], cuts[-2]), (t, t)]
    shrank = 0
    for interval in intervals:
        pruned = trees.prune(ModelSource(tree_model, "m"), {(name, 0): interval}, MAX_BYTES)
        if pruned is None:
            continue
        shrank += 1
        assert pruned.after < pruned.before
        rows = _rows(tree_model, interval)
        for whole, part in zip(_scores(tree_model, rows), _scores(pruned.source.data, rows), strict=True):
            np.testing.assert_array_equal(part, whole, err_msg=str(interval))
    assert shrank >= len(intervals) - 1  # (t, t) may leave a tree whole


def test_bounds_on_columns_the_trees_never_test_prune_nothing(tree_model: bytes) -> None:
    name = _session(tree_model).get_inputs()[0].name
    assert trees.prune(ModelSource(tree_model, "m"), {(name, 9): (0.0, 1.0)}, MAX_BYTES) is None


def _stump(weights: tuple[float, float]) -> bytes:
    """A binary classifier of one tree, x <= 0 to a leaf of weights[0] else of weights[1], both for class 0 (the
    one-score form onnxruntime reads with its binary rule)."""
    node = helper.make_node(
        "TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml",
        nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0], nodes_values=[0.0, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
        class_treeids=[0, 0], class_nodeids=[1, 2], class_ids=[0, 0], class_weights=list(weights),
        classlabels_int64s=[0, 1], post_transform="LOGISTIC",
    )  # fmt: skip
    graph = helper.make_graph([node], "stump", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])], [
        helper.make_tensor_value_info("label", TensorProto.INT64, [None]), helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()


def test_pruning_that_would_change_how_onnxruntime_reads_the_weights_is_refused() -> None:
    """Pruning the negative leaf would leave only positive weights, which onnxruntime's binary rule reads
    differently (label by p > 0.5 of the raw score, not by its sign): the model is kept whole."""
    mixed = _stump((-1.0, 0.3))
    assert trees.prune(ModelSource(mixed, "stump"), {("X", 0): (1.0, 2.0)}, MAX_BYTES) is None
    same_sign = _stump((0.2, 0.3))
    pruned = not_none(trees.prune(ModelSource(same_sign, "stump"), {("X", 0): (1.0, 2.0)}, MAX_BYTES))
    rows = np.array([[1.0], [1.5], [2.0]])
    for whole, part in zip(_scores(same_sign, rows), _scores(pruned.source.data, rows), strict=True):
        np.testing.assert_array_equal(part, whole)
    assert (pruned.before, pruned.after) == (3, 1)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("d.a < 5 AND d.a >= -1", {"a": (-1.0, 5.0)}),
        ("d.a BETWEEN 1 AND 2 AND d.a > 1.5", {"a": (1.5, 2.0)}),
        ("3 > d.b AND d.c = -2.5", {"b": (-math.inf, 3.0), "c": (-2.5, -2.5)}),
        ("d.a IN (4, -1, 2) AND d.b <= (1)", {"a": (-1.0, 4.0), "b": (-math.inf, 1.0)}),
        ("d.a > d.b AND d.c <> 1 AND d.d < 'x' AND d.a IN (1, NULL) AND d.b IS NOT NULL", {}),
    ],
)
def test_column_ranges_read_comparisons_with_numbers(where: str, expected: dict) -> None:
    conjuncts = list(sqlglot.parse_one(f"SELECT 1 WHERE {where}").args["where"].this.flatten())
    assert column_ranges(conjuncts) == expected


@pytest.mark.parametrize("library", ["random_forest", "lightgbm"])
def test_a_predict_filtered_on_model_inputs_scores_as_the_whole_model(backend, library: str) -> None:
    """PREDICT with a WHERE on model inputs (pushed, then pruned; EXPLAIN on DuckDB says by how much) returns what
    raw onnxruntime gives the whole model for the rows the engine kept, NaN rows included where a lower bound
    alone lets them through."""
    model = MODELS[library]()
    x, _ = _training(400)
    backend.load("points", x.fillna(0).assign(id=np.arange(len(x))))
    data = "(SELECT id, CASE WHEN id % 9 = 0 THEN CAST('NaN' AS DOUBLE) ELSE a END AS a, b, c, d FROM points)"
    output = "variable" if library == "lightgbm" else "probabilities_1"
    query = f"SELECT d.id, d.a, d.b, d.c, d.d, p.{output} AS score FROM PREDICT(MODEL = @m, DATA = {data} AS d) WITH ({output} FLOAT) AS p WHERE d.a > 0.25 AND d.b <= 0.5 ORDER BY d.id"
    rows = not_none(backend.sql(query, params={"m": model}))
    assert rows.a.isna().any() and len(rows) > 20
    whole = _scores(model, rows[COLUMNS].to_numpy(np.float64))
    score = whole[-1] if library == "lightgbm" else whole[1][:, 1]
    np.testing.assert_array_equal(rows.score.to_numpy(np.float32), np.ravel(score))
    if backend.name == "duckdb":
        assert "trees pruned by what it proves" in str(backend.target.explain(query, {"m": model}))


# --- INLINE: small tree ensembles as SQL ---


def _inline_cases() -> dict[str, tuple[object, str]]:
    """Small ensembles of each kind onnxruntime reads differently (estimator, target kind)."""
    import lightgbm
    import xgboost
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeRegressor

    return {
        "decision tree regressor": (DecisionTreeRegressor(max_depth=5, random_state=0), "regression"),
        "gradient boosting regressor": (GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0), "regression"),
        "random forest regressor": (RandomForestRegressor(n_estimators=4, max_depth=4, random_state=0), "regression"),
        "random forest, 2 classes (one score, positive weights)": (RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0), "binary"),
        "gradient boosting, 2 classes (one score, LOGISTIC)": (GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0), "binary"),
        "gradient boosting, 3 classes (SOFTMAX)": (GradientBoostingClassifier(n_estimators=3, max_depth=3, random_state=0), "classes"),
        "random forest, 3 classes": (RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0), "classes"),
        "lightgbm regressor (missing values track true)": (lightgbm.LGBMRegressor(n_estimators=8, num_leaves=8, max_depth=4, random_state=0, verbose=-1), "regression"),
        "xgboost, 2 classes (DOUBLE input cast to FLOAT, x < t)": (xgboost.XGBClassifier(n_estimators=6, max_depth=3, random_state=0), "binary"),
        "scaler + gradient boosting (DOUBLE Sub and Div, Cast to FLOAT)": (make_pipeline(StandardScaler(), GradientBoostingClassifier(n_estimators=5, max_depth=3, random_state=0)), "binary"),
    }


INLINE_CASES = list(_inline_cases())


@pytest.mark.parametrize("case", INLINE_CASES)
def test_small_tree_ensembles_run_inline_as_onnxruntime_scores_them(backend, case: str) -> None:
    """AUTO runs each as SQL, and its outputs agree with raw onnxruntime on the same rows: labels equal, probabilities
    within 1.5e-5, regression within onnxruntime's FLOAT sums; on NaN inputs too (false side, or LightGBM's learnt one)."""
    estimator, kind = _inline_cases()[case]
    x, binary = _training(600)
    x = x.astype(np.float32)
    target = {"regression": x.b.fillna(0) * 2 + binary, "binary": binary, "classes": binary + (x.c > 0.5)}[kind]
    fitted = estimator.fit(x if case.startswith(("lightgbm", "xgboost")) else x.fillna(0), target)  # type: ignore[attr-defined]
    model = predictsql.export(fitted, x.fillna(0))
    backend.load("points", x.fillna(0).assign(id=np.arange(len(x))))
    data = "(SELECT id, CASE WHEN id % 7 = 0 THEN CAST('NaN' AS FLOAT) ELSE a END AS a, b, c, d FROM points)"
    outputs = "variable" if kind == "regression" else "label, probabilities"
    typed = "variable FLOAT" if kind == "regression" else "label BIGINT, probabilities FLOAT[]"
    query = f"SELECT d.a, d.b, d.c, d.d, {', '.join('p.' + o.strip() for o in outputs.split(','))} FROM PREDICT(MODEL = @m, DATA = {data} AS d) WITH ({typed}) AS p ORDER BY d.id"
    if backend.name == "duckdb":  # as DATA of many rows would be: 600 rows are small DATA, which AUTO scores with a kept UDF
        with predictsql.connect(str(backend.path), small_data_rows=0) as planning:
            (bound,) = planning.explain(query, params={"m": model}).statements[0][2]
        assert bound.kind == "INLINE", bound.why
        query = query.replace(" AS d)", " AS d, PLAN = INLINE)")
    rows = not_none(backend.sql(query, params={"m": model}))
    expected = _scores(model, rows[COLUMNS].to_numpy(np.float32))
    if kind == "regression":
        np.testing.assert_allclose(rows.variable.to_numpy(np.float32), np.ravel(expected[0]), rtol=1e-6, atol=1e-6)
        return
    probabilities = np.stack(rows.probabilities.to_numpy())
    np.testing.assert_allclose(probabilities, expected[1], atol=1.5e-5, rtol=0)
    top2 = np.sort(expected[1], axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    np.testing.assert_array_equal(rows.label.to_numpy()[clear], expected[0][clear])


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_an_inline_tree_gives_null_for_a_null_input_under_nulls_propagate(backend, kind: str) -> None:
    """A row with a NULL input is not scored, as under UDF (onnxruntime), whether or not its path tests that column:
    a CASE with an ELSE would send NULL down the false side, and a path that never tests d would score the row."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeRegressor

    x, y = _training(300)
    x = x.fillna(0).astype(np.float32)
    estimator = DecisionTreeRegressor(max_depth=3, random_state=0) if kind == "regressor" else RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
    model = predictsql.export(estimator.fit(x, y), x)
    backend.load("points", x.assign(id=np.arange(len(x))))
    data = "(SELECT id, CASE WHEN id % 5 = 0 THEN NULL ELSE a END AS a, b, c, CASE WHEN id % 7 = 0 THEN NULL ELSE d END AS d FROM points)"
    outputs = "p.variable" if kind == "regressor" else "p.label, p.probabilities_1"
    typed = "variable FLOAT" if kind == "regressor" else "label BIGINT, probabilities_1 FLOAT"
    scored = {}
    for plan in ("INLINE", "UDF"):
        query = f"SELECT d.id, {outputs} FROM PREDICT(MODEL = @m, DATA = {data} AS d, NULLS = PROPAGATE, PLAN = {plan}) WITH ({typed}) AS p ORDER BY d.id"
        scored[plan] = not_none(backend.sql(query, params={"m": model}))
    unscored = (scored["INLINE"].id % 5 == 0) | (scored["INLINE"].id % 7 == 0)
    assert scored["INLINE"].drop(columns="id")[unscored].isna().all().all()
    pd.testing.assert_frame_equal(scored["INLINE"], scored["UDF"], check_dtype=False)


def test_one_score_classifiers_onnxruntime_reads_otherwise_are_not_inlined() -> None:
    """A one-score binary classifier that scores class 1, or has two base values, is read by onnxruntime otherwise
    than [1 - s, s] / [σ(-s), σ(s)]: INLINE refuses them, so AUTO scores them with onnxruntime."""
    import onnx

    cases = (((0.2, 0.8), {"class_ids": [1, 1], "post_transform": "NONE"}), ((-0.2, 0.8), {"class_ids": [1, 1]}), ((-0.2, 0.8), {"base_values": [0.1, 0.3]}))
    for weights, changes in cases:
        proto = onnx.load_from_string(_stump(weights))
        node = proto.graph.node[0]
        for name, value in changes.items():
            kept = [a for a in node.attribute if a.name != name]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute(name, value)])
        with pytest.raises(NotInlinable, match="has no SQL form"):
            compile_graph(proto)


def test_a_forest_over_the_size_limit_is_not_inline_and_explain_says_why(large_data_con) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = _training(2000)
    x = x.fillna(0).astype(np.float32)
    model = predictsql.export(RandomForestClassifier(n_estimators=50, random_state=0).fit(x, y), x)
    large_data_con.duckdb.register("points_frame", x)
    query = "SELECT p.label FROM PREDICT(MODEL = @m, DATA = points_frame AS d) WITH (label BIGINT) AS p"
    (bound,) = large_data_con.explain(query, params={"m": model}).statements[0][2]
    assert bound.kind != "INLINE" and "over INLINE's limit" in bound.why
