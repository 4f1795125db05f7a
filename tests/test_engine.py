"""The engine without SQL: ZipMap flattening, the session cache, the exporter, raw-runtime parity."""

from __future__ import annotations

import json
import re
from typing import Any

import duckdb
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge

import predictsql
from predictsql.engine import sessions
from predictsql.engine.errors import BindError, ExportError, PredictSQLError, ScoringError
from predictsql.engine.inline import UNBOUNDED, NotInlinable, Op, bounds, compile_graph
from predictsql.engine.signature import INPUTS_KEY
from predictsql.engine.sources import resolve

from conftest import PROBA_TOLERANCE, assert_parity, not_none, numeric


def _zipmap_model(estimator, features, with_metadata: bool) -> bytes:
    """skl2onnx's default export: a ZipMap (seq(map(class, probability))) output, one [N,k] input."""
    model = to_onnx(estimator, features.values.astype(np.float32)[:1])
    if with_metadata:
        onnx.helper.set_model_props(model, {INPUTS_KEY: json.dumps({"X": list(features.columns)})})
    return model.SerializeToString()


def test_zipmap_outputs_are_flattened_per_class(dataset) -> None:
    features = numeric(dataset.features)
    estimator = LogisticRegression(max_iter=5000).fit(features, dataset.target)
    model = _zipmap_model(estimator, features, with_metadata=True)
    classes = estimator.classes_
    scored = predictsql.predict(model, features)
    assert scored.column_names[len(features.columns) :] == ["output_label", *[f"output_probability_{c}" for c in classes]]
    got = np.stack([scored[f"output_probability_{c}"].to_numpy() for c in classes], axis=1)
    assert_parity(estimator, features, scored["output_label"].to_numpy(), got)
    picked = predictsql.predict(model, features, outputs={f"output_probability_{classes[-1]}": "DOUBLE"})
    np.testing.assert_allclose(picked.column(-1).to_numpy(), estimator.predict_proba(features)[:, -1], atol=PROBA_TOLERANCE)


def test_matrix_input_without_column_names_says_both_ways_to_bind_it(breast_cancer) -> None:
    features = numeric(breast_cancer.features)
    estimator = LogisticRegression(max_iter=5000).fit(features, breast_cancer.target)
    both = r"input 'X' of shape \[N,30\] and no column names recorded.*one list column named X of 30 values.*predictsql.export\(model, columns="
    with pytest.raises(BindError, match=both):
        predictsql.predict(_zipmap_model(estimator, features, with_metadata=False), features)


def test_session_is_created_once_per_model_bytes(logreg) -> None:
    first = sessions.load(resolve(logreg.onnx, "a"))
    second = sessions.load(resolve(bytes(logreg.onnx), "b"))
    assert first.session is second.session
    assert (first.label, second.label) == ("a", "b")


def test_predict_matches_raw_onnxruntime_on_the_same_array(logreg, breast_cancer) -> None:
    features = numeric(breast_cancer.features)
    raw = ort.InferenceSession(logreg.onnx, providers=["CPUExecutionProvider"]).run(["Score"], {"X": features.values.astype(np.float32)})[0]
    scored = predictsql.predict(logreg.onnx, features, outputs=["Score"], batch_size=100)
    np.testing.assert_array_equal(scored["Score"].to_numpy(), raw)


def test_predict_on_pandas_reads_none_as_null_and_nan_as_nan(logreg, breast_cancer) -> None:
    """A NULL fails (or, with nulls='propagate', is NULL) and says how to ask for that; NaN is a value, as scikit-learn
    reads it (here it propagates through the linear model); a bad argument is a PredictSQLError."""
    from predictsql.engine.errors import NullInputError

    features = numeric(breast_cancer.features).iloc[:6].copy()
    features["mean_texture"] = pd.array([None, 1.0, 2.0, 3.0, 4.0, 5.0], dtype="Float64")
    with pytest.raises(NullInputError, match=r"'mean_texture'.*or pass nulls='propagate' to score them as NULL$"):
        predictsql.predict(logreg.onnx, features)
    scored = predictsql.predict(logreg.onnx, features, outputs=["Score"], nulls="propagate")["Score"].to_pylist()
    assert scored[0] is None
    np.testing.assert_allclose(scored[1:], logreg.estimator.predict_proba(features.iloc[1:].astype(float))[:, 1], atol=PROBA_TOLERANCE)
    features["mean_texture"] = [np.nan, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert np.isnan(predictsql.predict(logreg.onnx, features, outputs=["Score"])["Score"].to_numpy()[0])
    with pytest.raises(PredictSQLError, match=r"predict\(batch_size=0\) must be a positive whole number"):
        predictsql.predict(logreg.onnx, features, batch_size=0)
    with pytest.raises(PredictSQLError, match="cannot read column 'mean_texture' \\(object\\) as one Arrow type"):
        predictsql.predict(logreg.onnx, features.assign(mean_texture=[1.0, "x"] * 3))
    with pytest.raises(PredictSQLError, match="cannot read column 'z' \\(complex128\\): Arrow has no such type .*; drop the column"):
        predictsql.predict(logreg.onnx, features.assign(z=features.mean_area + 0j))
    with pytest.raises(PredictSQLError, match=r"predict\(\) needs distinct column names; the frame has \[.*'mean_area', .*'mean_area'\]"):
        predictsql.predict(logreg.onnx, pd.concat([features, features[["mean_area"]]], axis=1))
    with pytest.raises(PredictSQLError, match="register\\(\\) takes a predictsql connection, a duckdb connection or a SparkSession, not object"):
        predictsql.register(object(), "f", logreg.onnx)


def test_regressor_score_output() -> None:
    data = load_diabetes(as_frame=True)
    estimator = Ridge().fit(data.data, data.target)
    scored = predictsql.predict(predictsql.export(estimator, data.data, outputs={"score": "prediction"}), data.data, outputs=["prediction"])
    np.testing.assert_allclose(scored["prediction"].to_numpy(), estimator.predict(data.data), rtol=1e-5)


def test_export_errors_teach(logreg, breast_cancer) -> None:
    features = numeric(breast_cancer.features)
    with pytest.raises(ExportError, match="sample with column names"):
        predictsql.export(logreg.estimator, features.values)
    with pytest.raises(ExportError, match="does not have; its outputs are \\['label', 'probabilities'\\]"):
        predictsql.export(logreg.estimator, features, outputs={"proba": "p"})
    for outputs, refusal in [({"label": 3}, "outputs gives 3 as an output's name: each name is a non-empty string"), ("Score", "outputs is 'Score': give {old: new} names")]:
        with pytest.raises(ExportError, match=re.escape(refusal)):
            predictsql.export(logreg.estimator, features, outputs=outputs)  # type: ignore[arg-type]
    for outputs, clash in [({"label": "p", "probabilities": "p"}, "p"), ({"label": "Probabilities"}, "Probabilities"), ({"score": "label"}, "label"), ({"label": "X"}, "X")]:
        with pytest.raises(ExportError, match=rf"outputs names '{clash}' for two tensors of the model \(its outputs are \['label', 'probabilities'\]; output names match"):
            predictsql.export(logreg.estimator, features, outputs=outputs)
    with pytest.raises(ExportError, match=r"outputs names \[3\], which the model does not have"):
        predictsql.export(logreg.estimator, features, outputs={3: "x"})  # type: ignore[dict-item]


def test_an_output_that_is_the_input_passed_through_keeps_its_name() -> None:
    """Renaming it would rename the graph's input under the nodes that read it (onnx.checker: not topologically sorted)."""
    model = _graph([onnx.helper.make_node("Neg", ["X"], ["y"])], [_out("y", [None, 2]), _out("X", [None, 2])])
    with pytest.raises(ExportError, match="output 'X' is the model's input of that name, passed through: it keeps its name"):
        predictsql.export(model, columns=["a", "b"], outputs=["p", "q"])
    renamed = predictsql.export(model, columns=["a", "b"], outputs={"y": "negated"})
    scored = predictsql.predict(renamed, pa.table({"a": [1.5], "b": [-2.0]}), outputs={"negated": "FLOAT[]"})
    assert scored["negated"].to_pylist() == [[-1.5, 2.0]]


def test_export_outputs_may_swap_names(logreg, breast_cancer) -> None:
    """Renamed all at once: one at a time, the first rename made two tensors 'probabilities' (not valid ONNX)."""
    features = numeric(breast_cancer.features)
    model = predictsql.export(logreg.estimator, features, outputs={"label": "probabilities", "probabilities": "label"})
    swapped = predictsql.predict(model, features, outputs={"probabilities": "BIGINT", "label": "FLOAT[]"})
    np.testing.assert_array_equal(swapped["probabilities"].to_numpy(), logreg.estimator.predict(features))
    np.testing.assert_allclose(np.stack(swapped["label"].to_numpy(zero_copy_only=False)), logreg.estimator.predict_proba(features), atol=PROBA_TOLERANCE)


def test_predict_outputs_read_as_with_reads_them(logreg, breast_cancer) -> None:
    """One name is one output (not its letters), a type in any case is SQL's type, a repeat is refused as in WITH."""
    features = numeric(breast_cancer.features)
    expected = logreg.estimator.predict_proba(features)[:, 1]
    np.testing.assert_allclose(predictsql.predict(logreg.onnx, features, outputs="Score")["Score"].to_numpy(), expected, atol=PROBA_TOLERANCE)
    assert predictsql.predict(logreg.onnx, features, outputs={"Score": "double"}).schema.field("Score").type == pa.float64()
    with pytest.raises(BindError, match=r"^predict\(\) outputs names Score twice: name each output once$"):
        predictsql.predict(logreg.onnx, features, outputs=["Score", "score"])
    for outputs, refusal in [([3], "outputs has 3: names and SQL types are strings"), ({"Score": 3}, "outputs has 'Score': 3: names"), (3, "outputs=3: give an output's name")]:
        with pytest.raises(BindError, match=re.escape(f"predict() {refusal}")):
            predictsql.predict(logreg.onnx, features, outputs=outputs)  # type: ignore[arg-type]
    con = duckdb.connect()
    predictsql.register(con, "score", logreg.onnx, outputs="Score")  # one name: a scalar function
    con.register("features", features)
    scored = con.sql(f"SELECT score({', '.join(predictsql.argument_names(logreg.onnx))}) AS s FROM features").df().s.to_numpy()
    np.testing.assert_allclose(scored, expected, atol=PROBA_TOLERANCE)
    with pytest.raises(PredictSQLError, match=r"MODEL argument is a ModelProto; .*: give its bytes, model.SerializeToString\(\)$"):
        predictsql.predict(onnx.load_from_string(logreg.onnx), features)  # type: ignore[arg-type]


def _graph(nodes: list, outputs: list, initializers: tuple = ()) -> onnx.ModelProto:
    """A hand-made model over one [N,2] FLOAT input X."""
    graph = onnx.helper.make_graph(nodes, "g", [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [None, 2])], outputs, list(initializers))
    return onnx.helper.make_model(graph, ir_version=10, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("ai.onnx.ml", 3)])


def _out(name: str, shape: list) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def _const(name: str, value) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.array(value, dtype=np.int64 if isinstance(value, int) else np.float32), name)


def _one_hot_nodes(x: str, y: str, categories: list[int]) -> list:
    """OneHotEncoder of integer categories ([N,k] → [N,k,c]) and the Reshape to [N,k·c] that skl2onnx adds (its shape is _shape's)."""
    return [onnx.helper.make_node("OneHotEncoder", [x], [f"{y}_3d"], domain="ai.onnx.ml", cats_int64s=categories, zeros=1), onnx.helper.make_node("Reshape", [f"{y}_3d", "shape"], [y])]


def _shape(width: int) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.array([-1, width], np.int64), "shape")


@pytest.mark.parametrize(
    ("nodes", "outputs", "initializers", "reason"),
    [
        ([onnx.helper.make_node("Relu", ["X"], ["y"])], [_out("y", [None, 2])], (), r"operator Relu .* has no SQL form; INLINE covers Scaler"),
        ([onnx.helper.make_node("Identity", ["X"], ["y"])], [_out("y", [None, 2]), _out("c", [1])], (_const("c", [1.0]),), r"outputs \['c'\] are not computed"),
        ([onnx.helper.make_node("Scaler", ["X"], ["y"], domain="ai.onnx.ml", offset=[float("inf"), 0.0], scale=[1.0, 1.0])], [_out("y", [None, 2])], (), "the constant inf has no SQL literal"),
        ([onnx.helper.make_node("Gather", ["X", "i"], ["y"], axis=1)], [_out("y", [None])], (_const("i", 5),), "constant columns in range"),
        (
            [onnx.helper.make_node("Cast", ["X"], ["i"], to=onnx.TensorProto.INT64), onnx.helper.make_node("Cast", ["i"], ["y"], to=onnx.TensorProto.FLOAT)],
            [_out("y", [None, 2])],
            (),
            "reads numbers cast to INT64, which INLINE passes only to Identity, Gather, Reshape, Concat, OneHotEncoder",
        ),
        (_one_hot_nodes("X", "y", [1, 2**53]), [_out("y", [None, 4])], (_shape(4),), r"OneHotEncoder category 9007199254740992 is beyond ±2\^53"),
        (
            [onnx.helper.make_node("LinearRegressor", ["X"], ["y"], domain="ai.onnx.ml", coefficients=[0.5, -0.25], intercepts=[0.1], post_transform="PROBIT")],
            [_out("y", [None, 1])],
            (),
            "PROBIT has no SQL form within tolerance",
        ),
    ],
    ids=["operator", "initializer output", "infinite constant", "gather out of range", "cast to int64", "one-hot category beyond 2^53", "probit"],
)
def test_inline_compiler_refuses_what_it_cannot_render(nodes, outputs, initializers, reason: str) -> None:
    """Each refusal names its reason, and the model still loads for STREAM (the out-of-range Gather then fails in onnxruntime)."""
    model = _graph(nodes, outputs, initializers)
    with pytest.raises(NotInlinable, match=reason):
        compile_graph(model)
    loaded = sessions.load(resolve(model.SerializeToString(), "hand-made"))
    assert loaded.inline is None and re.search(reason, loaded.inline_blocker)
    onnx.helper.set_model_props(model, {INPUTS_KEY: json.dumps({"X": ["a", "b"]})})
    features = pd.DataFrame({"a": [1.5, -2.0], "b": [0.25, 4.0]}, dtype=np.float32)
    if "Gather" in str(nodes):
        with pytest.raises(ScoringError, match="indices element out of data bounds"):
            predictsql.predict(model.SerializeToString(), features, outputs=["y"])
        return
    scored = predictsql.predict(model.SerializeToString(), features, outputs=["y"])
    raw = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"X": features.to_numpy()})[0]
    np.testing.assert_array_equal(np.stack(scored["y"].to_numpy(zero_copy_only=False)).reshape(raw.shape), raw)


def test_inline_bounds_know_probabilities_and_nothing_else(dataset) -> None:
    """Logistic and softmax outputs lie in [0, 1] whatever the inputs (so their FLOAT cast needs no overflow test);
    linear scores and a regressor's value are unbounded. Checked against onnxruntime on inputs of ±1e30."""
    features = numeric(dataset.features)
    classifier = LogisticRegression(max_iter=5000).fit(features, dataset.target)
    model = onnx.load_from_string(predictsql.export(classifier, features))
    program = compile_graph(model)
    probabilities = program.outputs["probabilities"]
    assert all(bounds(program)(v) == (0.0, 1.0) for v in probabilities)
    extreme = np.where(np.arange(features.size).reshape(features.shape) % 2 == 0, 1e30, -1e30).astype(np.float32)
    scored = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["probabilities"], {"X": extreme})[0]
    assert np.nanmin(scored) >= 0.0 and np.nanmax(scored) <= 1.0
    regressor = compile_graph(onnx.load_from_string(predictsql.export(Ridge().fit(features, np.arange(len(features))), features)))
    assert all(bounds(regressor)(v) == UNBOUNDED for values in regressor.outputs.values() for v in values)


def test_inline_casts_and_imputes_as_onnxruntime_does() -> None:
    """Cast to DOUBLE and back to FLOAT, an Imputer of 0.0 (not NaN) and a LinearRegressor: INLINE (forced) equals raw
    onnxruntime on the same array, zeros replaced and NaN left as NaN."""
    nodes = [
        onnx.helper.make_node("Cast", ["X"], ["wide"], to=onnx.TensorProto.DOUBLE),
        onnx.helper.make_node("Cast", ["wide"], ["narrow"], to=onnx.TensorProto.FLOAT),
        onnx.helper.make_node("Imputer", ["narrow"], ["filled"], domain="ai.onnx.ml", imputed_value_floats=[7.0, -3.0], replaced_value_float=0.0),
        onnx.helper.make_node("LinearRegressor", ["filled"], ["y"], domain="ai.onnx.ml", coefficients=[0.5, 2.0], intercepts=[1.0]),
    ]
    model = _graph(nodes, [_out("y", [None, 1])])
    onnx.helper.set_model_props(model, {INPUTS_KEY: json.dumps({"X": ["a", "b"]})})
    compile_graph(model)
    a, b = [1.5, 0.0, -2.0, float("nan")], [0.0, 4.0, 0.25, 1.0]
    raw = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"X": np.array([a, b], np.float32).T})[0].ravel()
    with predictsql.connect() as con:
        rows = ", ".join(f"({i}, '{x}'::FLOAT, '{y}'::FLOAT)" for i, (x, y) in enumerate(zip(a, b, strict=True)))
        query = f"SELECT d.i, p.y FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM (VALUES {rows}) v(i, a, b)) AS d, PLAN = INLINE) WITH (y FLOAT) AS p ORDER BY d.i"
        scored = not_none(con.sql(query, params={"m": model.SerializeToString()})).df().y.to_numpy()
    np.testing.assert_array_equal(scored, raw)


def _inline_rows(backend, model: onnx.ModelProto, columns: dict[str, list], outputs: dict[str, str], plan: str = "INLINE", sql_type: str = "FLOAT") -> dict[str, np.ndarray]:
    """A hand-made model over columns of one type (NaN and ±inf kept: a frame would load NaN as NULL) scored by PREDICT
    (PLAN = INLINE unless told) on the backend: each output (name: WITH type) in row order, [N,k] for a list."""
    onnx.helper.set_model_props(model, {INPUTS_KEY: json.dumps({"X": list(columns)})})
    cells = [", ".join(f"CAST('{v}' AS {sql_type})" for v in row) for row in zip(*columns.values(), strict=True)]
    rows = ", ".join(f"({i}, {row})" for i, row in enumerate(cells))
    picked, typed = ", ".join(f"p.{o}" for o in outputs), ", ".join(f"{o} {t}" for o, t in outputs.items())
    data = f"(SELECT * FROM (VALUES {rows}) AS v(i, {', '.join(columns)})) AS d"
    query = f"SELECT d.i, {picked} FROM PREDICT(MODEL = @m, DATA = {data}, PLAN = {plan}) WITH ({typed}) AS p ORDER BY d.i"
    scored = not_none(backend.sql(query, params={"m": model.SerializeToString()}))
    return {o: np.stack(scored[o].to_numpy()) if t.endswith("[]") else scored[o].to_numpy() for o, t in outputs.items()}


def test_inline_folds_a_scaler_into_its_linear_model_only_where_doubles_stay_exact(backend) -> None:
    """Scaler → LinearRegressor on DOUBLE columns: INLINE folds a scaled column into the coefficients, s·v - o·s, where
    |o·s| is small (b: 1.5); a = 10^12 ± a few, scale 0.1, stays (a - o)·s, as s·a - o·s would be 6e-6 off (20 FLOAT ulps).
    Both equal raw onnxruntime on the same array to FLOAT's rounding."""
    import onnxruntime as ort

    x = onnx.helper.make_tensor_value_info("X", onnx.TensorProto.DOUBLE, [None, 2])
    nodes = [
        onnx.helper.make_node("Scaler", ["X"], ["z"], domain="ai.onnx.ml", offset=[1e12, -3.0], scale=[0.1, 0.5]),
        onnx.helper.make_node("LinearRegressor", ["z"], ["y"], domain="ai.onnx.ml", coefficients=[1.0, 2.0], intercepts=[0.25]),
    ]
    graph = onnx.helper.make_graph(nodes, "g", [x], [_out("y", [None, 1])])
    model = onnx.helper.make_model(graph, ir_version=10, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("ai.onnx.ml", 3)])
    a = [float(np.float32(1e12)) + d for d in (0.25, 1.5, -7.75, 12.0, 0.0, 1024.5)]
    b = [1.0, 2.0, -1.0, 0.5, 3.0, -2.75]
    raw = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"X": np.array([a, b]).T})[0].ravel()
    np.testing.assert_allclose(_inline_rows(backend, model, {"a": a, "b": b}, {"y": "FLOAT"}, sql_type="DOUBLE")["y"], raw, rtol=1.2e-7)


@pytest.mark.parametrize(("offset", "scale", "in_float"), [([0.5, -0.25], [1.5, 2.0], False), ([80.0, 0.0], [0.1, 1.0], False)])
def test_inline_scores_a_linear_model_over_float_in_float_where_its_fold_stays_exact(backend, offset, scale, in_float) -> None:
    """LinearRegressor on FLOAT columns: the score runs in FLOAT, as onnxruntime computes it, unless a Scaler folds into it
    (at |o·s| = 8, a = 80 + a few ulps, where (a - o)·s is a few 1e-6, FLOAT's s·a would be 5e-7 off): then it stays
    in DOUBLE, to FLOAT's rounding of onnxruntime (a review's 100-column fold in FLOAT was 4.4e-4 off)."""
    nodes = [
        onnx.helper.make_node("Scaler", ["X"], ["z"], domain="ai.onnx.ml", offset=offset, scale=scale),
        onnx.helper.make_node("LinearRegressor", ["z"], ["y"], domain="ai.onnx.ml", coefficients=[1.0, -2.0], intercepts=[0.0]),
    ]
    model = _graph(nodes, [_out("y", [None, 1])])
    assert any(isinstance(v, Op) and v.fn == "float32" for v in compile_graph(model).values) == in_float
    a = [offset[0] + d * 2.0**-16 for d in (0, 1, -3, 7, 100, -1e6)]
    b = [offset[1], 0.0, 1.0, -2.5, 1e3, 3.0]
    raw = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"X": np.array([a, b], np.float32).T})[0].ravel()
    np.testing.assert_allclose(_inline_rows(backend, model, {"a": a, "b": b}, {"y": "FLOAT"})["y"], raw, rtol=2.4e-7, atol=3 * 2.0**-23 if in_float else 0)


@pytest.mark.parametrize("norm", ["L1", "L2", "MAX"])
def test_inline_normalizes_as_onnxruntime_does(backend, norm: str) -> None:
    """Normalizer → LinearRegressor as SQL equals raw onnxruntime on the same array: negative rows (MAX divides them by
    their negative maximum), rows of zeros and -0.0 (left as they are), NaN (MAX passes over it: the other value is
    still divided), a row of NaN, and ±inf (MAX's maximum never is -inf: it starts at FLOAT's lowest)."""
    nodes = [
        onnx.helper.make_node("Normalizer", ["X"], ["unit"], domain="ai.onnx.ml", norm=norm),
        onnx.helper.make_node("LinearRegressor", ["unit"], ["y"], domain="ai.onnx.ml", coefficients=[0.5, 2.0], intercepts=[1.0]),
    ]
    model = _graph(nodes, [_out("y", [None, 1]), _out("unit", [None, 2])])
    nan, inf = float("nan"), float("inf")
    a = [1.5, -1.0, 0.0, -2.0, 3.0, 0.0, nan, 1.0, nan, -inf, inf, -inf, -0.0, -3.0]
    b = [-4.0, -2.0, 0.0, 0.0, 0.25, 5.0, 1.0, nan, nan, -inf, 1.0, 2.0, -1.0, -3.0]
    raw = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y", "unit"], {"X": np.array([a, b], np.float32).T})
    scored = _inline_rows(backend, model, {"a": a, "b": b}, {"y": "FLOAT[]", "unit": "FLOAT[]"})
    np.testing.assert_allclose(scored["y"], raw[0], rtol=1e-6)
    np.testing.assert_allclose(scored["unit"], raw[1], rtol=1e-6)


@pytest.mark.parametrize("threshold", [None, 0.5, -1.0])
def test_inline_binarizes_as_onnxruntime_does(backend, threshold: float | None) -> None:
    """Binarizer as SQL equals raw onnxruntime on the same array (the default threshold 0.0, ties, ±inf, -0.0); a NaN fails
    the query under INLINE as onnxruntime fails it under UDF."""
    node = onnx.helper.make_node("Binarizer", ["X"], ["y"], domain="ai.onnx.ml")
    if threshold is not None:
        node.attribute.append(onnx.helper.make_attribute("threshold", threshold))
    model = _graph([node], [_out("y", [None, 2])])
    inf = float("inf")
    a, b = [0.0, 0.5, -1.0, 2.0, inf, -0.0, 1e-30], [-inf, 0.50000006, -1.0000001, -3.0, 0.0, 1.0, -1e-30]
    raw = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"X": np.array([a, b], np.float32).T})[0]
    np.testing.assert_array_equal(_inline_rows(backend, model, {"a": a, "b": b}, {"y": "FLOAT[]"})["y"], raw)
    for plan in ("INLINE", "UDF"):
        with pytest.raises(ScoringError, match="Binarizer input is NaN" if plan == "INLINE" else r"Input data with index: \d+ is NaN"):
            _inline_rows(backend, model, {"a": [1.0, 0.0], "b": [0.0, float("nan")]}, {"y": "FLOAT[]"}, plan)


def test_a_row_not_scored_fails_no_inline_binarizer(backend) -> None:
    """Under NULLS = PROPAGATE a row with a NULL input is not scored, so its NaN in another input fails nothing (onnxruntime
    never sees it): INLINE gives NULL there, as UDF does, and onnxruntime's outputs for the scored row."""
    model = _graph([onnx.helper.make_node("Binarizer", ["X"], ["y"], domain="ai.onnx.ml")], [_out("y", [None, 2])])
    onnx.helper.set_model_props(model, {INPUTS_KEY: json.dumps({"X": ["a", "b"]})})
    raw = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"X": np.array([[1.0, 0.0]], np.float32)})[0]
    data = "(SELECT * FROM (VALUES (0, CAST('1.0' AS FLOAT), CAST('0.0' AS FLOAT)), (1, CAST('NaN' AS FLOAT), CAST(NULL AS FLOAT))) AS v(i, a, b)) AS d"
    for plan in ("INLINE", "UDF"):
        query = f"SELECT d.i, p.y FROM PREDICT(MODEL = @m, DATA = {data}, PLAN = {plan}, NULLS = PROPAGATE) WITH (y FLOAT[]) AS p ORDER BY d.i"
        rows = not_none(backend.sql(query, params={"m": model.SerializeToString()}))
        np.testing.assert_array_equal(np.asarray(rows.y[0], np.float32), raw[0])
        assert rows.y[1] is None, plan


@pytest.mark.parametrize("sql_type", ["BIGINT", "FLOAT"])
def test_inline_one_hot_encodes_integers_as_onnxruntime_does(backend, sql_type: str) -> None:
    """OneHotEncoder of integer categories (negative, zero, 2^40, 2^53 - 1) as SQL equals raw onnxruntime on the same array:
    INT64 values beyond DOUBLE's exact integers match nothing they should not; FLOAT values truncate toward zero as
    onnxruntime's cast to int64 does (1.9 is 1, -0.5 is 0), whether a Cast or the encoder truncates them, and NaN, ±inf and 2^63 match no category. Integers read by
    anything else than a Cast, a structural operator or a one-hot encoder are refused."""
    categories = [1, 3, -2, 0, 2**40, 2**53 - 1]
    elem, dtype = (onnx.TensorProto.INT64, np.int64) if sql_type == "BIGINT" else (onnx.TensorProto.FLOAT, np.float32)
    cast = [onnx.helper.make_node("Cast", ["X"], ["i"], to=onnx.TensorProto.INT64), *_one_hot_nodes("i", "y", categories)]
    direct = [onnx.helper.make_node("OneHotEncoder", ["X"], ["y_3d"], domain="ai.onnx.ml", cats_int64s=categories, zeros=1), cast[-1]]
    x = [onnx.helper.make_tensor_value_info("X", elem, [None, 2])]
    a: list[float]
    b: list[float]
    if sql_type == "BIGINT":
        a, b = [1, 3, -2, 0, 5, 2**40, 2**53 - 1, 2**53 + 1], [-1, 2**40 + 1, -(2**63) + 1, 2**63 - 1, 7, 2**53, 2**53 - 2, 0]
    else:
        a = [1.0, 1.9, -1.9, -2.5, 0.5, -0.5, 3.0, 2.0**40, 2.0**40 + 2**17, float("nan"), -0.0, 2.0**63]
        b = [float("inf"), float("-inf"), -2.0, 3.999, -1.0, 0.999, -3.0, 1e30, -2.0000002, 0.0, 4.0, -(2.0**63)]
    for nodes in (cast, direct) if sql_type == "FLOAT" else (cast,):  # FLOAT: cast to INT64 first (predictsql.export's form), or truncated by the encoder
        graph = onnx.helper.make_graph(nodes, "g", x, [_out("y", [None, 2 * len(categories)])], [_shape(2 * len(categories))])
        model = onnx.helper.make_model(graph, ir_version=10, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("ai.onnx.ml", 3)])
        raw = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"X": np.array([a, b], dtype).T})[0]
        np.testing.assert_array_equal(_inline_rows(backend, model, {"a": a, "b": b}, {"y": "FLOAT[]"}, sql_type=sql_type)["y"], raw)
    scaled = onnx.helper.make_graph([onnx.helper.make_node("Scaler", ["X"], ["y"], domain="ai.onnx.ml", scale=[2.0])], "g", x, [_out("y", [None, 2])])
    if sql_type == "BIGINT":
        with pytest.raises(NotInlinable, match=r"reads integers, which INLINE passes only to Identity, Gather, Reshape, Concat, Cast, OneHotEncoder"):
            compile_graph(onnx.helper.make_model(scaled, opset_imports=[onnx.helper.make_opsetid("ai.onnx.ml", 3)]))


def _tree(op: str, transform: str) -> onnx.NodeProto:
    """One tree over X's two columns (a <= 0.5, then b <= 0), with leaves that give scores of zero, within 1e-7 of it,
    negative and above 1: a 3-class TreeEnsembleClassifier (label, probabilities) or a one-target regressor (y)."""
    nodes: dict[str, Any] = {"nodes_treeids": [0] * 5, "nodes_nodeids": [0, 1, 2, 3, 4], "nodes_featureids": [0, 1, 0, 0, 0], "nodes_values": [0.5, 0.0, 0.0, 0.0, 0.0]}
    nodes |= {"nodes_modes": ["BRANCH_LEQ", "BRANCH_LEQ", "LEAF", "LEAF", "LEAF"], "nodes_truenodeids": [1, 3, 0, 0, 0], "nodes_falsenodeids": [2, 4, 0, 0, 0]}
    if op == "TreeEnsembleRegressor":
        leaves: dict[str, Any] = {"target_treeids": [0] * 3, "target_nodeids": [2, 3, 4], "target_ids": [0] * 3, "target_weights": [1.5, 0.25, 0.0]}
        return onnx.helper.make_node(op, ["X"], ["y"], domain="ai.onnx.ml", n_targets=1, post_transform=transform, **nodes, **leaves)
    weights = [(2, 0, 0.8), (2, 1, 0.0), (2, 2, 5e-8), (3, 1, 0.3), (3, 0, 0.0), (3, 2, 0.0), (4, 0, -0.4), (4, 1, 0.0), (4, 2, 0.6)]  # every leaf weighs every class
    leaves = {"class_treeids": [0] * len(weights), "class_nodeids": [n for n, _, _ in weights], "class_ids": [c for _, c, _ in weights], "class_weights": [w for _, _, w in weights]}
    return onnx.helper.make_node(op, ["X"], ["label", "probabilities"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2], post_transform=transform, **nodes, **leaves)


def _linear(op: str, transform: str) -> onnx.NodeProto:
    """Scores (a, b, 0): a 3-class LinearClassifier, or a LinearRegressor of those 3 targets or of a alone."""
    coefficients = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    if op == "LinearClassifier":
        return onnx.helper.make_node(op, ["X"], ["label", "probabilities"], domain="ai.onnx.ml", coefficients=coefficients, intercepts=[0.0] * 3, classlabels_ints=[0, 1, 2], post_transform=transform)
    n = 3 if op == "LinearRegressor3" else 1
    return onnx.helper.make_node("LinearRegressor", ["X"], ["y"], domain="ai.onnx.ml", coefficients=coefficients[: 2 * n], intercepts=[0.0] * n, targets=n, post_transform=transform)


TRANSFORMED = [("LinearClassifier", "SOFTMAX_ZERO"), ("TreeEnsembleClassifier", "SOFTMAX_ZERO")]
TRANSFORMED += [(op, t) for op in ("LinearRegressor1", "LinearRegressor3", "TreeEnsembleRegressor") for t in ("SOFTMAX_ZERO", "LOGISTIC", "SOFTMAX")]


@pytest.mark.parametrize(("op", "transform"), TRANSFORMED)
def test_inline_post_transforms_as_onnxruntime_does(backend, op: str, transform: str) -> None:
    """SOFTMAX_ZERO (and a regressor's other transforms: they leave one target's score as it is) as SQL equal raw
    onnxruntime on the same array within PROBA_TOLERANCE, labels exactly: rows of zero scores (NaN), of one within 1e-7
    of zero (±inf), NaN and inf inputs, ties and negatives."""
    node = _tree(op, transform) if op.startswith("Tree") else _linear(op, transform)
    classifier = "Classifier" in op
    width = 3 if op in ("LinearClassifier", "LinearRegressor3", "TreeEnsembleClassifier") else 1
    outputs = [onnx.helper.make_tensor_value_info("label", onnx.TensorProto.INT64, [None]), _out("probabilities", [None, 3])] if classifier else [_out("y", [None, width])]
    model = _graph([node], outputs)
    nan, inf = float("nan"), float("inf")
    a = [0.0, 5e-8, 0.3, 0.4999, 0.5, 0.5001, 1.0, 1.5, -0.2, 0.7, 0.25, 0.25, nan, inf, 2.0, 0.999999]
    b = [0.0, 0.0, 0.3, -1.0, 0.5, 0.2, 0.0, -3.0, -0.4, 0.9, 0.25, 1e-30, 0.1, 0.0, 2.0, 0.3]
    names = ["label", "probabilities"] if classifier else ["y"]
    raw = dict(zip(names, ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, {"X": np.array([a, b], np.float32).T}), strict=True))
    scored = _inline_rows(backend, model, {"a": a, "b": b}, {"label": "BIGINT", "probabilities": "FLOAT[]"} if classifier else {"y": "FLOAT[]"})
    values = "probabilities" if classifier else "y"
    np.testing.assert_allclose(scored[values], raw[values], rtol=0, atol=PROBA_TOLERANCE)
    if classifier:  # onnxruntime's argmax passes over a NaN score (NaN, or 0·inf), SQL's greatest() returns it: compared where a is finite
        numbers = np.isfinite(np.array(a))
        np.testing.assert_array_equal(scored["label"][numbers], raw["label"][numbers])
