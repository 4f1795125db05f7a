"""scikit-learn exports against scikit-learn on rows the model never saw, in the library's own dtype, and the
exports predictsql refuses (each with an ExportError that says what to do)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from typing import Any

import duckdb
import numpy as np
import onnx
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import predictsql
from predictsql.engine.errors import ExportError

from conftest import PROBA_TOLERANCE, not_none

REGRESSION_RTOL = 2e-6  # float32 outputs of float64 sums (as in test_libraries)


def _split(loader: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Training rows, held-out rows and the training target of a bundled dataset, with SQL-friendly names."""
    bunch = loader(as_frame=True)
    features = bunch.data.rename(columns=lambda c: c.replace(" ", "_").replace("/", "_").replace("(", "").replace(")", ""))
    train, test, target, _ = train_test_split(features, bunch.target, random_state=0, test_size=0.4)
    return train, test, target


def _probabilities(model: bytes, rows: pd.DataFrame) -> np.ndarray:
    scored = predictsql.predict(model, rows)
    return np.column_stack([scored[name].to_numpy() for name in scored.column_names if name.startswith("probabilities_")])


def test_hist_gradient_boosting_regressor_equals_scikit_learn_on_held_out_rows() -> None:
    """HGB splits float64 values on float64 thresholds: the export takes DOUBLE inputs (FLOAT ones were 8.2 off here)."""
    train, test, target = _split(load_diabetes)
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(train, target)
    expected = model.predict(test)
    assert np.abs(model.predict(test.astype(np.float32).astype(np.float64)) - expected).max() > 1  # what FLOAT inputs give
    scored = predictsql.predict(predictsql.export(model, train), test)["variable"].to_numpy().ravel()
    np.testing.assert_allclose(scored, expected, rtol=REGRESSION_RTOL, atol=REGRESSION_RTOL * np.abs(expected).max())


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine], ids=["binary", "multiclass"])
def test_hist_gradient_boosting_classifier_equals_scikit_learn_on_held_out_rows(loader: Any) -> None:
    train, test, target = _split(loader)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(train, target)
    np.testing.assert_allclose(_probabilities(predictsql.export(model, train), test), model.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine], ids=["binary", "multiclass"])
def test_linear_discriminant_analysis_equals_scikit_learn(loader: Any) -> None:
    """skl2onnx writes a binary LDA's probability as sigmoid(2·decision); scikit-learn's is sigmoid(decision)."""
    train, test, target = _split(loader)
    model = LinearDiscriminantAnalysis().fit(train, target)
    np.testing.assert_allclose(_probabilities(predictsql.export(model, train), test), model.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", ["RandomForestClassifier", "GradientBoostingRegressor", "DecisionTreeRegressor"])
def test_a_tree_after_a_scaler_equals_scikit_learn_on_held_out_rows(name: str) -> None:
    """scikit-learn scales in float64 and its trees split the float32 rounding of that: the export takes DOUBLE and
    casts to FLOAT before the trees, where a FLOAT scaler's rounding moved a breast-cancer row across a split (0.05 off)."""
    from sklearn import ensemble, tree

    cls = getattr(ensemble, name, None) or getattr(tree, name)
    train, test, target = _split(load_diabetes if name.endswith("Regressor") else load_breast_cancer)
    model = make_pipeline(StandardScaler(), cls(random_state=0, **({"n_estimators": 20} if name != "DecisionTreeRegressor" else {}))).fit(train, target)
    scored = predictsql.predict(predictsql.export(model, train), test)
    if name.endswith("Classifier"):
        np.testing.assert_allclose(_probabilities(predictsql.export(model, train), test), model.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)
        return
    expected = model.predict(test)
    np.testing.assert_allclose(scored["variable"].to_numpy().ravel(), expected, rtol=REGRESSION_RTOL, atol=REGRESSION_RTOL * np.abs(expected).max())


def test_a_tree_pipeline_skl2onnx_cannot_write_in_double_exports_in_float() -> None:
    """PolynomialFeatures in DOUBLE mixes FLOAT into a DOUBLE Concat (a model onnxruntime cannot load): such a pipeline
    is exported in FLOAT, as before, and still scores as scikit-learn does on these rows."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import PolynomialFeatures

    train, test, target = _split(load_breast_cancer)
    model = make_pipeline(PolynomialFeatures(2), RandomForestClassifier(n_estimators=10, random_state=0)).fit(train, target)
    exported = predictsql.export(model, train)
    assert onnx.load_from_string(exported).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    np.testing.assert_allclose(_probabilities(exported, test), model.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", ["DecisionTreeRegressor", "RandomForestRegressor"])
def test_a_multi_output_tree_regressor_scores_every_target_under_every_plan(name: str) -> None:
    """skl2onnx declares a multi-output forest's values [N,1]: it failed to score (2 values per row where 1 was
    declared). The export declares [N,2]; every plan returns scikit-learn's two targets (within FLOAT sums)."""
    from sklearn import ensemble, tree

    train, test, target = _split(load_diabetes)
    targets = np.column_stack([target, np.log1p(target)])
    kind = getattr(tree, name, None) or getattr(ensemble, name)
    model = kind(random_state=0, max_depth=4, **({"n_estimators": 5} if name.startswith("Random") else {})).fit(train, targets)
    exported = predictsql.export(model, train)
    expected = model.predict(test)
    with predictsql.connect(small_data_rows=0) as con:
        con.duckdb.register("frame", test.assign(id=range(len(test))))
        con.duckdb.sql("CREATE TABLE held_out AS SELECT * FROM frame")
        for plan in ("AUTO", "UDF", "STREAM"):
            query = f"SELECT p.variable FROM PREDICT(MODEL = @m, DATA = held_out AS d, PLAN = {plan}) WITH (variable FLOAT[]) AS p ORDER BY d.id"
            rows = not_none(con.sql(query, params={"m": exported})).df()
            np.testing.assert_allclose(np.stack(rows.variable.to_numpy()), expected, rtol=REGRESSION_RTOL, atol=REGRESSION_RTOL * np.abs(expected).max(), err_msg=plan)


def _nan_cases() -> dict[str, tuple[Any, bool]]:
    """scikit-learn tree models that read NaN, each with whether it is fitted on NaN."""
    from sklearn.ensemble import ExtraTreesClassifier, IsolationForest, RandomForestClassifier, RandomForestRegressor
    from sklearn.tree import DecisionTreeClassifier

    return {
        "tree fitted without NaN": (DecisionTreeClassifier(max_depth=5, random_state=0), False),
        "forest fitted on NaN": (RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0), True),
        "extra trees fitted on NaN": (ExtraTreesClassifier(n_estimators=10, max_depth=6, random_state=0), True),
        "forest regressor fitted on NaN": (RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0), True),
        "scaler and forest fitted on NaN": (make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)), True),
        "isolation forest fitted without NaN": (IsolationForest(n_estimators=10, random_state=0), False),
    }


@pytest.mark.parametrize("case", list(_nan_cases()))
def test_a_scikit_learn_tree_sends_nan_where_scikit_learn_does(case: str) -> None:
    """A split sends NaN to the side it took in fitting, else to the child with more samples (missing_go_to_left);
    skl2onnx sent it to the false side: 0.30 off in probability fitted without NaN, 0.47 fitted on NaN, 0.41 in an
    isolation forest's score. Held-out rows with 20% NaN score as scikit-learn does."""
    model, fitted_on_nan = _nan_cases()[case]
    train, test, target = _split(load_breast_cancer)
    holes = np.random.default_rng(0)
    test = test.mask(holes.random(test.shape) < 0.2)
    model.fit(train.mask(holes.random(train.shape) < 0.2) if fitted_on_nan else train, target)
    exported = predictsql.export(model, train)
    if hasattr(model, "predict_proba"):
        np.testing.assert_allclose(_probabilities(exported, test), model.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)
    else:
        scored = predictsql.predict(exported, test)
        name, expected = ("scores", model.decision_function(test)) if case.startswith("isolation") else ("variable", model.predict(test))
        np.testing.assert_allclose(scored[name].to_numpy().ravel(), expected, rtol=REGRESSION_RTOL, atol=REGRESSION_RTOL * np.abs(expected).max())


def test_nan_in_a_duckdb_column_takes_scikit_learn_s_side_under_every_plan() -> None:
    """The same on a DuckDB table's NaN values (not NULLs) under the compiled walk, onnxruntime and INLINE's CASEs."""
    from sklearn.tree import DecisionTreeClassifier

    train, test, target = _split(load_breast_cancer)
    features = list(train.columns[:6])
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(train[features], target)
    test = test[features].mask(np.random.default_rng(1).random((len(test), len(features))) < 0.3)
    expected = model.predict_proba(test)[:, 1]
    with predictsql.connect() as con:
        con.duckdb.register("frame", pa.table({"id": range(len(test)), **{c: test[c].to_numpy() for c in features}}))  # numpy keeps NaN; pandas made NULLs
        con.duckdb.sql("CREATE TABLE held_out AS SELECT * FROM frame")
        assert con.duckdb.sql(f"SELECT count(*) FROM held_out WHERE isnan({features[0]})").fetchall() == [(test[features[0]].isna().sum(),)]
        for plan in ("STREAM", "UDF", "INLINE"):
            query = f"SELECT p.probabilities_1 FROM PREDICT(MODEL = @m, DATA = held_out AS d, PLAN = {plan}) WITH (probabilities_1 DOUBLE) AS p ORDER BY d.id"
            scored = not_none(con.sql(query, params={"m": predictsql.export(model, train[features])})).fetchnumpy()["probabilities_1"]
            np.testing.assert_allclose(scored, expected, atol=PROBA_TOLERANCE, rtol=0, err_msg=plan)


DECISION_ONLY = ["Perceptron", "SGDClassifier", "RidgeClassifier", "LinearSVC", "SVC", "NuSVC"]


def _decision_only(name: str) -> Any:
    from sklearn import linear_model, svm

    return make_pipeline(StandardScaler(), (getattr(linear_model, name, None) or getattr(svm, name))())


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine], ids=["binary", "multiclass"])
@pytest.mark.parametrize("name", DECISION_ONLY)
def test_a_classifier_without_probabilities_scores_its_decision_function(name: str, loader: Any) -> None:
    """Without predict_proba, skl2onnx wrote the decision function as `output_probability` (binary SVC with the
    sign reversed; LinearSVC in a pipeline did not convert; a binary RidgeClassifier did not score): the export
    names it `scores`, a binary one [-d, d] as a binary classifier's probabilities are, so scores_1 is scikit-learn's
    decision_function, and `score` is it; labels are scikit-learn's."""
    train, test, target = _split(loader)
    model = _decision_only(name).fit(train, target)
    scored = predictsql.predict(predictsql.export(model, train), test)
    decision = model.decision_function(test)
    expected = np.column_stack([-decision, decision]) if decision.ndim == 1 else decision
    scores = np.column_stack([scored[f"scores_{k}"].to_numpy() for k in range(expected.shape[1])])
    np.testing.assert_allclose(scores, expected, rtol=0, atol=REGRESSION_RTOL * np.abs(expected).max())
    np.testing.assert_array_equal(scored["label"].to_numpy().ravel(), model.predict(test))
    if decision.ndim == 1:
        score = predictsql.predict(predictsql.export(model, train, outputs={"score": "Score"}), test, outputs=["Score"])["Score"].to_numpy()
        np.testing.assert_allclose(score, decision, rtol=0, atol=REGRESSION_RTOL * np.abs(decision).max())


def test_an_svc_reads_as_synapse_users_write_it() -> None:
    """PREDICT of a scikit-learn SVC (no probability=True) on a DuckDB table: the label and its decision score."""
    train, test, target = _split(load_breast_cancer)
    model = _decision_only("SVC").fit(train, target)
    with predictsql.connect() as con:
        con.duckdb.register("frame", test.assign(id=range(len(test))))
        con.duckdb.sql("CREATE TABLE held_out AS SELECT * FROM frame")
        query = "SELECT p.label, p.scores_1 FROM PREDICT(MODEL = @m, DATA = held_out AS d) WITH (label BIGINT, scores_1 FLOAT) AS p ORDER BY d.id"
        rows = not_none(con.sql(query, params={"m": predictsql.export(model, train)})).fetchnumpy()
    np.testing.assert_array_equal(rows["label"], model.predict(test))
    np.testing.assert_allclose(rows["scores_1"], model.decision_function(test), rtol=0, atol=REGRESSION_RTOL * 10)


def test_decision_scores_unlike_the_library_s_are_refused() -> None:
    """The export check compares a classifier without probabilities by its decision function: another SVC's export
    (another C) checked against this one is refused, naming the row."""
    from predictsql.engine import export_check

    train, _, target = _split(load_breast_cancer)
    model = _decision_only("SVC").fit(train, target)
    other = predictsql.export(make_pipeline(StandardScaler(), __import__("sklearn.svm", fromlist=["SVC"]).SVC(C=0.01)).fit(train, target), train)
    with pytest.raises(ExportError, match=r"gives decision score \S+ for sample row \d+ where the library gives"):
        export_check.check(model, train, other, "SVC")


@pytest.mark.parametrize("labels", ["integers", "strings"])
def test_quadratic_discriminant_analysis_equals_scikit_learn(labels: str) -> None:
    """skl2onnx takes QDA's label from its classes as a [1,N] tensor, which failed to score (1 label row for N rows): the
    export reshapes it to [N]."""
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

    train, test, target = _split(load_wine)
    target = target if labels == "integers" else target.map({0: "barolo", 1: "grignolino", 2: "barbera"})
    model = QuadraticDiscriminantAnalysis(reg_param=0.01).fit(train, target)
    exported = predictsql.export(model, train)
    np.testing.assert_allclose(_probabilities(exported, test), model.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)
    assert predictsql.predict(exported, test)["label"].to_pylist() == model.predict(test).tolist()


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_an_imputer_in_front_of_a_booster_fills_nan_as_scikit_learn_does(library: str) -> None:
    """The boosters' DOUBLE inputs reach the imputer in double, which onnxruntime's Imputer cannot take; predict() on a
    pandas frame keeps NaN as NaN, as the pipeline reads it."""
    booster = importlib.import_module(library)
    train, test, target = _split(load_breast_cancer)
    rng = np.random.default_rng(0)
    train, test = train.mask(rng.random(train.shape) < 0.1), test.mask(rng.random(test.shape) < 0.1)
    final = booster.XGBClassifier(n_estimators=20) if library == "xgboost" else booster.LGBMClassifier(n_estimators=20, verbose=-1)
    model = make_pipeline(SimpleImputer(strategy="median"), final).fit(train, target)
    assert test.isna().to_numpy().sum() > 100
    np.testing.assert_allclose(_probabilities(predictsql.export(model, train), test), model.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)


def test_a_boolean_column_one_hot_encoded_binds_a_boolean_data_column(tmp_path) -> None:
    """A bool column's categories are False and True: the export takes it as 0/1, which a BOOLEAN DATA column casts to
    (as strings they were 'False'/'True', which no SQL cast of a BOOLEAN writes)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"flag": rng.random(200) < 0.4, "x": rng.normal(size=200)})
    target = (frame.flag ^ (frame.x > 1)).astype(int)
    model = make_pipeline(ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), ["flag"]), ("n", "passthrough", ["x"])]), LogisticRegression()).fit(frame, target)
    onnx_bytes = predictsql.export(model, frame)
    expected = model.predict_proba(frame)
    np.testing.assert_allclose(_probabilities(onnx_bytes, frame), expected, atol=PROBA_TOLERANCE, rtol=0)
    path = tmp_path / "flags.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE flags AS SELECT row_number() OVER () - 1 AS id, flag, x FROM frame")
    with predictsql.connect(str(path)) as con:
        rows = not_none(con.sql("SELECT d.id, d.flag, p.probabilities_1 FROM PREDICT(MODEL = @m, DATA = flags AS d) AS p ORDER BY d.id", params={"m": onnx_bytes})).df()
    assert str(rows.flag.dtype) == "bool"
    np.testing.assert_allclose(rows.probabilities_1.to_numpy(), expected[:, 1], atol=PROBA_TOLERANCE, rtol=0)


@pytest.mark.parametrize("dtypes", [{"x": "Float64", "flag": "boolean", "k": "string"}, {"x": "double[pyarrow]", "flag": "bool[pyarrow]", "k": "string[pyarrow]"}])
def test_a_sample_of_pandas_nullable_or_pyarrow_dtypes_exports_as_its_numpy_twin(dtypes: dict[str, str]) -> None:
    """pandas' Float64, boolean and pyarrow-backed columns are numbers and booleans (they were read as strings, which
    skl2onnx's scaler refused), so a frame from read_csv(dtype_backend=...) exports as the numpy one does."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=200), "flag": rng.random(200) < 0.4, "k": rng.choice(["a", "b", "c"], 200)})
    target = (frame.flag ^ (frame.x > 0.5) ^ (frame.k == "b")).astype(int)
    encode = ColumnTransformer([("n", StandardScaler(), ["x"]), ("c", OneHotEncoder(), ["flag", "k"])])
    model = make_pipeline(encode, LogisticRegression()).fit(frame, target)
    onnx_bytes = predictsql.export(model, frame.astype(dtypes))
    assert predictsql.argument_names(onnx_bytes) == ["x", "flag", "k"]
    np.testing.assert_allclose(_probabilities(onnx_bytes, frame), model.predict_proba(frame), atol=PROBA_TOLERANCE, rtol=0)


def test_a_nested_pipeline_and_a_passthrough_last_step_export() -> None:
    """A ColumnTransformer first inside a nested Pipeline reads DATA columns by name; a pipeline ending in
    'passthrough' is the pipeline before it."""
    frame = pd.DataFrame({"a": np.arange(40.0), "k": ["x", "y", "z", "x"] * 10})
    target = ((frame.a > 19) ^ (frame.k == "y")).astype(int)
    encode = ColumnTransformer([("o", OneHotEncoder(), ["k"]), ("n", StandardScaler(), ["a"])])
    nested = Pipeline([("pre", Pipeline([("ct", encode)])), ("m", LogisticRegression())]).fit(frame, target)
    np.testing.assert_allclose(_probabilities(predictsql.export(nested, frame), frame), nested.predict_proba(frame), atol=PROBA_TOLERANCE, rtol=0)
    scaler = make_pipeline(StandardScaler(), "passthrough").fit(frame[["a"]])
    scored = predictsql.predict(predictsql.export(scaler, frame[["a"]]), frame[["a"]])["variable"].to_numpy()
    np.testing.assert_allclose(np.stack(scored).ravel(), scaler.transform(frame[["a"]]).ravel(), rtol=1e-6, atol=1e-6)


def _unfitted() -> dict[str, Any]:
    import catboost
    import xgboost

    return {
        "LogisticRegression": LogisticRegression(),
        "Pipeline": make_pipeline(StandardScaler(), LogisticRegression()),
        "XGBClassifier": xgboost.XGBClassifier(),
        "CatBoostClassifier": catboost.CatBoostClassifier(),
    }


@pytest.mark.parametrize("name", ["LogisticRegression", "Pipeline", "XGBClassifier", "CatBoostClassifier"])
def test_an_unfitted_model_is_refused_before_its_converter_runs(name: str) -> None:
    with pytest.raises(ExportError, match=f"{name} is not fitted: call fit"):
        predictsql.export(_unfitted()[name], pd.DataFrame({"a": [1.0, 2.0]}))


def test_columns_must_name_every_feature_a_model_was_fitted_on() -> None:
    """A model fitted on numpy knows how many columns it reads, not their names: naming fewer would bind wrong columns."""
    import catboost

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 3)), np.arange(60) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = [LogisticRegression().fit(x, y), catboost.CatBoostClassifier(iterations=3, verbose=0, allow_writing_files=False).fit(x, y)]
    for model in models:
        with pytest.raises(ExportError, match=rf"{type(model).__name__} was fitted on 3 columns but 2 are named \(\['a', 'b'\]\)"):
            predictsql.export(model, columns=["a", "b"])


def test_columns_must_name_each_data_column_once() -> None:
    """A repeated name would feed one column to two features; names that differ in case are two columns of a pyarrow table."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 3)), np.arange(60) % 2
    model = LogisticRegression().fit(x, y)
    with pytest.raises(ExportError, match=r"LogisticRegression: columns name DATA column 'a' twice: name each input column once"):
        predictsql.export(model, columns=["a", "a", "b"])
    cased = predictsql.export(model, columns=["a", "b", "A"])
    scored = predictsql.predict(cased, pa.table({"a": x[:, 0], "b": x[:, 1], "A": x[:, 2]}), outputs=["probabilities_1"])
    np.testing.assert_allclose(scored["probabilities_1"].to_numpy(), model.predict_proba(x)[:, 1], atol=PROBA_TOLERANCE, rtol=0)
    onnx_model = predictsql.export(model, columns=["a", "b", "c"])
    with pytest.raises(ExportError, match=r"the ONNX model's input 'input': columns name DATA column 'b' twice"):
        predictsql.export(onnx_model, columns={"input": ["a", "b", "b"]})


@pytest.mark.parametrize("name", ["MultinomialNB", "ComplementNB"])
def test_count_naive_bayes_equals_scikit_learn_in_double(name: str) -> None:
    """On unscaled counts-like features their log-probability sums lose 1.4e-4 in FLOAT: the export takes DOUBLE."""
    from sklearn import naive_bayes

    train, test, target = _split(load_breast_cancer)
    model = getattr(naive_bayes, name)().fit(train, target)
    np.testing.assert_allclose(_probabilities(predictsql.export(model, train), test), model.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)


def test_what_the_converters_cannot_convert_is_an_export_error() -> None:
    """skl2onnx's and CatBoost's own refusals (NotImplementedError, RuntimeError, CatBoostError, …) as ExportErrors."""
    import catboost
    from sklearn.ensemble import VotingClassifier
    from sklearn.preprocessing import FunctionTransformer

    train, _, target = _split(load_breast_cancer)
    voting = VotingClassifier([("a", LogisticRegression(max_iter=3000)), ("b", LogisticRegression(C=0.1, max_iter=3000))], voting="soft").fit(train, target)
    with pytest.raises(ExportError, match=r"skl2onnx cannot convert VotingClassifier \(NotImplementedError"):
        predictsql.export(voting, train)
    with pytest.raises(ExportError, match=r"skl2onnx cannot convert Pipeline \(RuntimeError: FunctionTransformer is not supported"):
        predictsql.export(make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=3000)).fit(train, target), train)
    frame = pd.DataFrame({"k": ["a", "b", "c", "a"] * 10, "x": np.arange(40.0)})
    cat = catboost.CatBoostClassifier(iterations=3, verbose=0, allow_writing_files=False, cat_features=["k"]).fit(frame, np.arange(40) % 2)
    with pytest.raises(ExportError, match="CatBoost cannot export CatBoostClassifier as ONNX: .*categorical features"):
        predictsql.export(cat, frame)


def test_a_model_whose_outputs_do_not_match_its_graph_is_refused_at_export() -> None:
    """skl2onnx's own binary RidgeClassifier declares its scores [N,2] and writes [N,1] (an IndexError reached the user,
    then a ScoringError at the first PREDICT; predictsql's export now writes [-d, d]): the check scores the sample
    and refuses such a graph."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import RidgeClassifier

    from predictsql.engine import export_check

    train, _, target = _split(load_breast_cancer)
    model = RidgeClassifier().fit(train, target)
    converted = predictsql.export(to_onnx(model, train.to_numpy(np.float32)[:1], target_opset={"": 18, "ai.onnx.ml": 3}), columns=list(train.columns))
    with pytest.raises(ExportError, match="does not score its sample: .*returned 1 values per row of output 'probabilities', which its graph declares to have 2"):
        export_check.check(model, train, converted, "RidgeClassifier")


def _lightgbm_forest() -> tuple[Any, pd.DataFrame, Any]:
    import lightgbm

    train, _, target = _split(load_breast_cancer)
    return lightgbm.LGBMClassifier(n_estimators=20, boosting_type="rf", bagging_freq=1, bagging_fraction=0.7, verbose=-1), train, target


def _isotonic() -> tuple[Any, pd.DataFrame, Any]:
    from sklearn.calibration import CalibratedClassifierCV

    train, _, target = _split(load_breast_cancer)
    return CalibratedClassifierCV(make_pipeline(StandardScaler(), LogisticRegression()), method="isotonic"), train, target


def _xgboost_logistic_regression() -> tuple[Any, pd.DataFrame, Any]:
    import xgboost

    train, _, target = _split(load_breast_cancer)
    return xgboost.XGBRegressor(n_estimators=20, objective="reg:logistic"), train, target


@pytest.mark.parametrize("make", [_lightgbm_forest, _isotonic, _xgboost_logistic_regression], ids=lambda f: f.__name__.strip("_"))
def test_an_export_its_converter_gets_wrong_is_refused(make: Any) -> None:
    """Converters that are wrong without a warning (measured on held-out rows: LightGBM's random forest 0.88 off in
    probability, isotonic calibration 0.74, XGBoost's reg:logistic without its sigmoid 6.6 in value): export scores
    the sample, compares with the library and refuses, naming the row."""
    estimator, train, target = make()
    estimator.fit(train, target)
    with pytest.raises(ExportError, match=r"gives (probability|value) \S+ for sample row \d+ where the library gives \S+: .*convert the model yourself"):
        predictsql.export(estimator, train)


def test_a_booster_inside_a_voting_ensemble_exports_in_a_fresh_process() -> None:
    """onnxmltools' converters were registered only once a model ending in a booster had been exported: in a fresh
    process a voting ensemble holding LightGBM failed (KeyError), after one the same call passed."""
    script = """
import numpy as np, pandas as pd, lightgbm, predictsql
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
data = load_breast_cancer(as_frame=True)
frame = data.data.rename(columns=lambda c: c.replace(" ", "_"))
members = [("rf", RandomForestClassifier(n_estimators=10, random_state=0)), ("lgbm", lightgbm.LGBMClassifier(n_estimators=10, verbose=-1))]
model = VotingClassifier(members, voting="soft", flatten_transform=False).fit(frame, data.target)
scored = predictsql.predict(predictsql.export(model, frame), frame)
print(np.abs(np.column_stack([scored["probabilities_0"], scored["probabilities_1"]]) - model.predict_proba(frame)).max())
"""
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert float(ran.stdout.split()[-1]) < PROBA_TOLERANCE


def test_an_export_that_cannot_read_its_own_sample_is_refused() -> None:
    """CatBoost's cat_features export as FLOAT inputs, which the string column it was fitted on cannot feed."""
    from catboost import CatBoostClassifier

    train, _, target = _split(load_breast_cancer)
    train = train.assign(grade=np.where(train.mean_radius > 14, "high", "low"))
    model = CatBoostClassifier(iterations=10, verbose=False, cat_features=["grade"]).fit(train, target)
    with pytest.raises(ExportError, match="cannot read its own sample as DATA: PREDICT input 'grade'"):
        predictsql.export(model, train)


@pytest.mark.parametrize("name", ["KNeighborsClassifier", "KNeighborsRegressor"])
def test_distance_weighted_neighbours_are_refused_where_the_converter_is_wrong(name: str) -> None:
    """skl2onnx's converter with weights='distance' was 0.088 off in probability and 12% off in value; uniform is exact."""
    from sklearn import neighbors

    train, test, target = _split(load_breast_cancer)
    with pytest.raises(ExportError, match=f"skl2onnx's {name} with weights='distance' does not compute what scikit-learn does"):
        predictsql.export(getattr(neighbors, name)(weights="distance").fit(train, target), train)
    uniform = neighbors.KNeighborsClassifier().fit(train, target)
    np.testing.assert_allclose(_probabilities(predictsql.export(uniform, train), test), uniform.predict_proba(test), atol=PROBA_TOLERANCE, rtol=0)
