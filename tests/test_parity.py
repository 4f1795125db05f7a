"""PREDICT on a DuckDB file agrees with scikit-learn, model kind by model kind, on two real datasets."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, make_classification
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Binarizer, Normalizer, OneHotEncoder, StandardScaler

import predictsql
from predictsql.engine.signature import INPUTS_KEY

from conftest import MODEL_KINDS, PROBA_TOLERANCE, Dataset, assert_parity, fit, no_stream_on_spark, not_none, numeric

KINDS = (*MODEL_KINDS, "one_hot_pipeline")
INLINE_KINDS = ("logistic_regression", "scaler_pipeline", "one_hot_pipeline")  # these have an SQL form (PLAN = INLINE)


CASES = [(kind, plan) for plan in ("AUTO", "UDF") for kind in KINDS] + [(kind, "INLINE") for kind in INLINE_KINDS]
CASES += [(kind, "STREAM") for kind in ("random_forest", "gradient_boosting", "hist_gradient_boosting", "mlp", "scaler_pipeline")]


@pytest.mark.parametrize(("kind", "plan"), CASES)
def test_predict_matches_scikit_learn(kind: str, plan: str, dataset: Dataset, backend, request: pytest.FixtureRequest) -> None:
    """Every model kind under every plan, on both engines; AUTO on DuckDB scores these few hundred rows with a kept UDF,
    on Spark it runs the linear kinds (one-hot text included) INLINE."""
    no_stream_on_spark(backend, plan, request)
    fitted = fit(kind, dataset)
    backend.load("samples", dataset.table)
    query = f"SELECT d.id, p.label, p.probabilities FROM PREDICT(MODEL = @m, DATA = samples AS d, PLAN = {plan}) WITH (label BIGINT, probabilities FLOAT[]) AS p ORDER BY d.id"
    if backend.name == "duckdb":
        (bound,) = backend.con.explain(query, params={"m": fitted.onnx}).statements[0][2]
        assert bound.kind == ("UDF" if plan == "AUTO" else plan) and (plan != "AUTO" or bound.why.startswith("DATA has at most")), bound.why
    rows = backend.sql(query, params={"m": fitted.onnx})
    np.testing.assert_array_equal(rows.id.values, np.arange(len(dataset.table)))
    probabilities = np.stack(rows.probabilities.values)
    assert_parity(fitted.estimator, fitted.features, rows.label.values, probabilities)


def test_expanded_class_columns_match_scikit_learn(dataset: Dataset) -> None:
    """Without WITH, [N,C] probabilities come back as probabilities_<class> columns."""
    fitted = fit("random_forest", dataset)
    scored = predictsql.predict(fitted.onnx, fitted.features)
    classes = fitted.estimator.classes_
    probabilities = np.stack([scored[f"probabilities_{c}"].to_numpy() for c in classes], axis=1)
    assert_parity(fitted.estimator, fitted.features, scored["label"].to_numpy(), probabilities)


@pytest.mark.parametrize("scaled", [False, True])
def test_inline_regressor_matches_scikit_learn(scaled: bool) -> None:
    """LinearRegressor (after a Scaler) as SQL: the predictions agree with scikit-learn's."""
    data = load_diabetes(as_frame=True)
    estimator = (make_pipeline(StandardScaler(), Ridge()) if scaled else Ridge()).fit(data.data, data.target)
    with predictsql.connect(small_data_rows=0) as con:
        con.duckdb.register("frame", data.data)
        con.duckdb.sql("CREATE TABLE diabetes AS SELECT * FROM frame")
        query = "SELECT p.variable FROM PREDICT(MODEL = @m, DATA = diabetes, PLAN = INLINE) WITH (variable FLOAT) AS p"
        rows = not_none(con.sql(query, params={"m": predictsql.export(estimator, data.data)})).df()
    np.testing.assert_allclose(rows.variable, estimator.predict(data.data), rtol=1e-5)


def test_inline_sql_grows_linearly_with_classes() -> None:
    """A 12-class softmax model: each shared value (scores, their maximum, the sum) is computed once, not re-expanded."""
    features, target = make_classification(n_samples=600, n_features=10, n_informative=8, n_classes=12, n_clusters_per_class=1, random_state=0)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(10)])
    estimator = LogisticRegression(max_iter=2000).fit(frame, target)
    query = "SELECT p.label, p.probabilities FROM PREDICT(MODEL = @m, DATA = samples, PLAN = INLINE) WITH (label BIGINT, probabilities FLOAT[]) AS p"
    with predictsql.connect(small_data_rows=0) as con:
        con.duckdb.register("frame", frame)
        con.duckdb.sql("CREATE TABLE samples AS SELECT * FROM frame")
        onnx_bytes = predictsql.export(estimator, frame)
        assert len(con.explain(query, params={"m": onnx_bytes}).sql[0]) < 40_000  # 3 MB when each use re-expanded its value
        rows = not_none(con.sql(query, params={"m": onnx_bytes})).df()
    assert_parity(estimator, frame, rows.label.to_numpy(), np.stack(rows.probabilities.to_numpy()))


def test_inline_scores_a_linear_model_wider_than_the_engines_expression_depth() -> None:
    """1,500 features: the sum nests about 2·64 deep, not 1,500 (DuckDB's parser stopped at 1,000: a raw ParserException)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 1500)).astype("float32"), columns=[f"f{i}" for i in range(1500)])
    estimator = LogisticRegression(max_iter=200).fit(frame, (frame.f0 + frame.f1499 > 0).astype(int))
    with predictsql.connect() as con:
        con.duckdb.register("frame", frame)
        con.duckdb.sql("CREATE TABLE wide AS SELECT row_number() OVER () AS id, * FROM frame")
        query = "SELECT p.probabilities_1 FROM PREDICT(MODEL = @m, DATA = wide AS d, PLAN = INLINE) WITH (probabilities_1 FLOAT) AS p ORDER BY d.id"
        rows = not_none(con.sql(query, params={"m": predictsql.export(estimator, frame)})).df()
    np.testing.assert_allclose(rows.probabilities_1, estimator.predict_proba(frame)[:, 1], atol=PROBA_TOLERANCE, rtol=0)


def test_inline_computes_only_the_class_a_query_reads(breast_cancer: Dataset) -> None:
    """A binary classifier's probabilities_1 is one logistic in the SQL, not both classes' (which cost 1.6× on 10M rows),
    and equals scikit-learn's; reading both classes still writes both."""
    fitted = fit("logistic_regression", breast_cancer)
    one = "SELECT d.id, p.probabilities_1 FROM PREDICT(MODEL = @m, DATA = samples AS d, PLAN = INLINE) WITH (probabilities_1 FLOAT) AS p ORDER BY d.id"
    both = one.replace("p.probabilities_1", "p.probabilities_0, p.probabilities_1").replace("WITH (", "WITH (probabilities_0 FLOAT, ")
    with predictsql.connect(small_data_rows=0) as con:
        con.duckdb.register("frame", breast_cancer.table)
        con.duckdb.sql("CREATE TABLE samples AS SELECT * FROM frame")
        assert [con.explain(q, params={"m": fitted.onnx}).sql[0].upper().count("EXP(") for q in (one, both)] == [1, 2]
        rows = not_none(con.sql(one, params={"m": fitted.onnx})).df()
    expected = fitted.estimator.predict_proba(fitted.features)[:, 1]
    np.testing.assert_allclose(rows.probabilities_1, expected, atol=PROBA_TOLERANCE, rtol=0)


def test_inline_one_hot_encodes_text_as_onnxruntime_does(backend, breast_cancer: Dataset) -> None:
    """The one-hot pipeline as SQL on text it never saw (all zeros: handle_unknown='ignore') and on NULL (NULL under
    NULLS = PROPAGATE): the same rows as the UDF plan, which runs onnxruntime."""
    fitted = fit("one_hot_pipeline", breast_cancer)
    table = breast_cancer.table.head(60).copy()
    table.loc[table.id % 3 == 0, "band"] = "unseen"
    table.loc[table.id % 5 == 0, "band"] = None
    backend.load("samples", table)
    scored = {}
    for plan in ("INLINE", "UDF"):
        query = f"SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = samples AS d, NULLS = PROPAGATE, PLAN = {plan}) WITH (Score FLOAT) AS p ORDER BY d.id"
        scored[plan] = not_none(backend.sql(query, params={"m": fitted.onnx}))
    assert scored["UDF"].Score[table.id % 5 == 0].isna().all() and scored["UDF"].Score.notna().sum() == 48
    pd.testing.assert_frame_equal(scored["INLINE"], scored["UDF"], check_dtype=False, atol=1.5e-5, rtol=0)


@pytest.mark.parametrize("kind", ["binarizer", "normalizer_max", "one_hot_integers"])
def test_inline_preprocessors_match_scikit_learn(kind: str, breast_cancer: Dataset) -> None:
    """skl2onnx's Binarizer, Normalizer(norm='max') and OneHotEncoder of BIGINT columns (fitted on the first 300 rows, so
    later rows hold unseen integers): AUTO runs each INLINE (beyond small DATA), and the SQL's values equal scikit-learn's transform. The
    features are non-negative: skl2onnx converts scikit-learn's maximum of |x| to ONNX's signed maximum."""
    features = numeric(breast_cancer.features)[["mean_radius", "mean_texture", "mean_smoothness"]]
    if kind == "one_hot_integers":
        features = features.round().astype(np.int64)
    estimator = {"binarizer": Binarizer(threshold=15.0), "normalizer_max": Normalizer(norm="max"), "one_hot_integers": OneHotEncoder(handle_unknown="ignore", sparse_output=False)}[kind]
    estimator.fit(features.head(300))
    model = to_onnx(estimator, features.to_numpy(np.int64 if kind == "one_hot_integers" else np.float32)[:1])
    onnx.helper.set_model_props(model, {INPUTS_KEY: json.dumps({"X": list(features.columns)})})
    query = "SELECT p.variable FROM PREDICT(MODEL = @m, DATA = samples AS d) WITH (variable FLOAT[]) AS p ORDER BY d.id"
    with predictsql.connect(small_data_rows=0) as con:
        con.duckdb.register("frame", features.assign(id=np.arange(len(features))))
        con.duckdb.sql("CREATE TABLE samples AS SELECT * FROM frame")
        assert "INLINE model @m" in str(con.explain(query, params={"m": model.SerializeToString()}))
        rows = not_none(con.sql(query, params={"m": model.SerializeToString()})).df()
    np.testing.assert_allclose(np.stack(rows.variable.to_numpy()), estimator.transform(features), rtol=0, atol=PROBA_TOLERANCE)


def test_a_one_hot_of_integer_columns_from_export_runs_inline() -> None:
    """predictsql.export of a one-hot of integer columns (skl2onnx casts each to INT64 first) then LogisticRegression: AUTO
    runs it INLINE (beyond small DATA), and its outputs equal scikit-learn's, on rows with integers unseen in training."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.integers(0, 5, 400), "b": rng.integers(-2, 3, 400)})
    pipeline = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression()).fit(frame.head(300), (frame.a + frame.b > 2).head(300))
    frame.loc[300:, "a"] = rng.integers(-3, 9, 100)
    query = "SELECT p.label, p.probabilities FROM PREDICT(MODEL = @m, DATA = samples AS d) WITH (label BIGINT, probabilities FLOAT[]) AS p ORDER BY d.id"
    model = predictsql.export(pipeline, frame)
    with predictsql.connect(small_data_rows=0) as con:
        con.duckdb.register("frame", frame.assign(id=np.arange(len(frame))))
        con.duckdb.sql("CREATE TABLE samples AS SELECT * FROM frame")
        assert "INLINE model @m" in str(con.explain(query, params={"m": model}))
        rows = not_none(con.sql(query, params={"m": model})).df()
    assert_parity(pipeline, frame, rows.label.to_numpy(), np.stack(rows.probabilities.to_numpy()))
