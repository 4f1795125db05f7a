"""Models by name: a real MLflow registry (sqlite in a temp folder), the catalog in a DuckDB file, DESCRIBE MODEL."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import duckdb
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import predictsql
from predictsql.engine.errors import BindError, ModelSourceError

from conftest import PROBA_TOLERANCE, Dataset, Fitted, assert_scores, expected_scores, not_none

SCORES = "SELECT d.id, p.Score FROM PREDICT(MODEL = '{model}', DATA = patients AS d) WITH (Score FLOAT) AS p ORDER BY d.id"


def unique(prefix: str) -> str:
    """Registered names are per test: the registry lives for the whole session."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def scores(con: predictsql.Connection, model: str) -> np.ndarray:
    return np.array([score for _, score in not_none(con.sql(SCORES.format(model=model))).fetchall()])


# --- MLflow ---


@pytest.fixture(scope="module")
def logged(mlflow_uri: str, logreg: Fitted) -> str:
    """A registered name whose version 1 (alias prod) is the logistic regression."""
    name = unique("logged")
    predictsql.log_model(logreg.onnx, name, alias="prod", registry_uri=mlflow_uri)
    return name


def test_log_model_then_predict_by_alias_matches_scikit_learn(db_path: Path, mlflow_uri: str, logreg: Fitted, breast_cancer: Dataset) -> None:
    name = unique("churn")
    uri = predictsql.log_model(logreg.estimator, name, sample=logreg.features.head(), outputs={"score": "Score"}, alias="champion", registry_uri=mlflow_uri)
    assert uri == f"models:/{name}/1"
    with predictsql.connect(str(db_path), registry_uri=mlflow_uri) as con:
        rows = not_none(con.sql(SCORES.format(model=f"models:/{name}@champion"))).fetchall()
        assert "(version 1)" in str(con.explain(SCORES.format(model=f"models:/{name}@champion")))
    assert_scores(logreg, breast_cancer, [i for i, _ in rows], [s for _, s in rows])


def test_the_onnx_flavour_and_signature_are_what_mlflow_stores(mlflow_uri: str, logreg: Fitted) -> None:
    import mlflow

    name = unique("flavour")
    predictsql.log_model(logreg.onnx, name, registry_uri=mlflow_uri)
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    run_id = client.get_model_version(name, "1").run_id
    folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model", tracking_uri=mlflow_uri)
    info = mlflow.models.Model.load(folder)
    assert "onnx" in info.flavors
    session = ort.InferenceSession(logreg.onnx, providers=["CPUExecutionProvider"])
    assert [spec.name for spec in info.signature.inputs.inputs] == [i.name for i in session.get_inputs()]
    assert [spec.name for spec in info.signature.outputs.inputs] == [o.name for o in session.get_outputs()]
    assert (Path(folder) / info.flavors["onnx"]["data"]).read_bytes() == logreg.onnx


def test_version_number_latest_and_runs_uri(db_path: Path, mlflow_uri: str, logreg: Fitted, forest: Fitted) -> None:
    import mlflow

    name = unique("versions")
    predictsql.log_model(logreg.onnx, name, registry_uri=mlflow_uri)
    predictsql.log_model(forest.onnx, name, registry_uri=mlflow_uri)
    run_id = mlflow.MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri).get_model_version(name, "1").run_id
    with predictsql.connect(str(db_path), registry_uri=mlflow_uri) as con:
        np.testing.assert_allclose(scores(con, f"models:/{name}/1"), expected_scores(logreg), atol=1.5e-5)
        np.testing.assert_allclose(scores(con, f"models:/{name}"), expected_scores(forest), atol=1.5e-5)  # latest = 2
        np.testing.assert_allclose(scores(con, f"runs:/{run_id}/model"), expected_scores(logreg), atol=1.5e-5)


def test_an_alias_is_pinned_per_query_and_the_next_query_sees_it_move(db_path: Path, mlflow_uri: str, logreg: Fitted, forest: Fitted) -> None:
    from predictsql.engine.mlflow_registry import MlflowRegistry

    name = unique("moving")
    predictsql.log_model(logreg.onnx, name, alias="prod", registry_uri=mlflow_uri)
    predictsql.log_model(forest.onnx, name, registry_uri=mlflow_uri)
    both = f"""SELECT a.Score AS a, b.Score AS b
               FROM PREDICT(MODEL = 'models:/{name}@prod', DATA = patients AS d) WITH (Score FLOAT) AS a
               JOIN PREDICT(MODEL = 'models:/{name}@prod', DATA = patients AS e) WITH (Score FLOAT) AS b ON a.id = b.id"""
    with predictsql.connect(str(db_path), registry_uri=mlflow_uri) as con:
        np.testing.assert_allclose(scores(con, f"models:/{name}@prod"), expected_scores(logreg), atol=1.5e-5)
        pairs = np.array(not_none(con.sql(both)).fetchall())
        np.testing.assert_array_equal(pairs[:, 0], pairs[:, 1])  # one statement, one version
        MlflowRegistry(mlflow_uri).client().set_registered_model_alias(name, "prod", "2")
        np.testing.assert_allclose(scores(con, f"models:/{name}@prod"), expected_scores(forest), atol=1.5e-5)


def test_a_lazy_spark_query_keeps_the_version_bound_when_it_was_planned(spark, db_path: Path, mlflow_uri: str, logreg: Fitted, forest: Fitted, breast_cancer: Dataset) -> None:
    from predictsql.engine.mlflow_registry import MlflowRegistry
    from predictsql.udfs import spark as ps

    name = unique("lazy")
    predictsql.log_model(logreg.onnx, name, alias="prod", registry_uri=mlflow_uri)
    predictsql.log_model(forest.onnx, name, registry_uri=mlflow_uri)
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("lazy_patients")
    frame = not_none(ps.sql(spark, SCORES.format(model=f"models:/{name}@prod").replace("patients", "lazy_patients"), registry_uri=mlflow_uri))
    described = not_none(ps.sql(spark, f"DESCRIBE MODEL 'models:/{name}@prod'", registry_uri=mlflow_uri)).toArrow()
    with predictsql.connect(str(db_path), registry_uri=mlflow_uri) as con:
        assert described.equals(not_none(con.sql(f"DESCRIBE MODEL 'models:/{name}/1'")).arrow().set_column(1, "name", described.column("name")))
    MlflowRegistry(mlflow_uri).client().set_registered_model_alias(name, "prod", "2")  # moves before any row is read
    rows = frame.collect()
    np.testing.assert_allclose([r.Score for r in rows], expected_scores(logreg), atol=1.5e-5)
    function = ps.register(spark, "lazy_score", f"models:/{name}@prod", outputs=["Score"], registry_uri=mlflow_uri)  # now version 2
    scored = spark.table("lazy_patients").select(function(*[spark.table("lazy_patients")[c] for c in forest.features.columns]).alias("s")).toPandas()
    np.testing.assert_allclose(scored.s, expected_scores(forest), atol=1.5e-5)


def test_an_mlmodel_without_onnx_is_refused_without_loading_it(db_path: Path, mlflow_uri: str, logreg: Fitted) -> None:
    import mlflow
    import mlflow.sklearn

    name = unique("pickled")
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        with mlflow.start_run():
            mlflow.sklearn.log_model(logreg.estimator, name="model", registered_model_name=name, serialization_format="cloudpickle")
    finally:
        mlflow.set_tracking_uri(None)
    with predictsql.connect(str(db_path), registry_uri=mlflow_uri) as con:
        with pytest.raises(ModelSourceError, match=rf"MLflow model 'models:/{name}/1' has the flavours .*sklearn.* but no onnx flavour.*predictsql.log_model\(estimator, name, sample=X\)"):
            con.sql(SCORES.format(model=f"models:/{name}/1"))
        assert not_none(con.sql("SELECT count(*) FROM patients")).fetchall() == [(569,)]


@pytest.mark.parametrize(
    "suffix, message",
    [("/9", r"Model Version \(name=\w+, version=9\) not found"), ("@nope", "alias nope not found"), ("/1/extra", "is not a model reference")],
)
def test_registry_errors_name_the_model(db_path: Path, mlflow_uri: str, logged: str, suffix: str, message: str) -> None:
    with predictsql.connect(str(db_path), registry_uri=mlflow_uri) as con:
        with pytest.raises(ModelSourceError, match=message) as raised:
            con.sql(SCORES.format(model=f"models:/{logged}{suffix}"))
    assert f"models:/{logged}" in str(raised.value)


def test_mlflow_tracking_uri_from_the_environment(db_path: Path, mlflow_uri: str, logreg: Fitted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    name = unique("env")
    predictsql.log_model(logreg.onnx, name)
    table = predictsql.predict(f"models:/{name}/1", logreg.features, outputs=["Score"])
    np.testing.assert_allclose(table.column("Score").to_numpy(), expected_scores(logreg), atol=1.5e-5)


def test_a_registry_uri_given_wins_over_the_environment_for_runs_too(mlflow_uri: str, logreg: Fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_TRACKING_URI named another store: log_model(registry_uri=…) put the run there and the version here,
    which then could not be read without that variable; reads failed on it. Both now use the URI given."""
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere}/mlflow.db")
    name = unique("explicit")
    predictsql.log_model(logreg.onnx, name, registry_uri=mlflow_uri)
    assert not elsewhere.exists()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    table = predictsql.predict(f"models:/{name}/1", logreg.features, outputs=["Score"], registry_uri=mlflow_uri)
    np.testing.assert_allclose(table.column("Score").to_numpy(), expected_scores(logreg), atol=1.5e-5)


# --- the in-database catalog ---


def test_catalog_versions_aliases_and_predict_by_name(db_path: Path, logreg: Fitted, forest: Fitted) -> None:
    with predictsql.connect(str(db_path)) as con:
        assert con.models.register("churn", logreg.onnx, alias="prod") == 1
        assert con.models.register("churn", forest.onnx) == 2
        np.testing.assert_allclose(scores(con, "catalog:/churn@prod"), expected_scores(logreg), atol=1.5e-5)
        np.testing.assert_allclose(scores(con, "catalog:/churn/1"), expected_scores(logreg), atol=1.5e-5)
        np.testing.assert_allclose(scores(con, "catalog:/churn"), expected_scores(forest), atol=1.5e-5)
        con.models.set_alias("churn", "prod", 2)
        np.testing.assert_allclose(scores(con, "catalog:/churn@prod"), expected_scores(forest), atol=1.5e-5)
    with predictsql.connect(str(db_path), read_only=True) as reopened:  # it lives in the file
        listed = reopened.models.list().arrow().to_pylist()
    assert [(r["name"], r["version"], r["aliases"]) for r in listed] == [("churn", 1, []), ("churn", 2, ["prod"])]
    assert listed[0]["sha256"] == hashlib.sha256(logreg.onnx).hexdigest() and listed[0]["size"] == len(logreg.onnx)
    assert [t["name"] for t in listed[0]["inputs"]] == ["X"] and listed[0]["inputs"][0]["shape"] == f"[N,{logreg.features.shape[1]}]"
    assert [t["name"] for t in listed[1]["outputs"]] == ["label", "probabilities", "Score"]


def test_catalog_remove_frees_aliases_and_never_reuses_a_number(db_path: Path, logreg: Fitted) -> None:
    with predictsql.connect(str(db_path)) as con:
        con.models.register("churn", logreg.onnx)
        con.models.register("churn", logreg.onnx, alias="prod")
        assert con.models.remove("churn", 2) == [2]
        with pytest.raises(ModelSourceError, match="catalog model 'churn' has no alias 'prod'"):
            con.sql(SCORES.format(model="catalog:/churn@prod"))
        with pytest.raises(ModelSourceError, match="version 2 of catalog model 'churn' was removed"):
            con.sql(SCORES.format(model="catalog:/churn/2"))
        assert con.models.register("churn", logreg.onnx) == 3
        assert con.models.remove("churn") == [1, 3]
        assert len(con.models.list()) == 0
        with pytest.raises(ModelSourceError, match=r"the model catalog has no model 'churn' \(the catalog holds: nothing\)"):
            con.sql(SCORES.format(model="catalog:/churn"))


@pytest.mark.parametrize("named", ["file", "attached"])
def test_catalog_and_views_work_where_a_database_is_named_predictsql(db_path: Path, logreg: Fitted, named: str) -> None:
    """A file predictsql.duckdb, or a database attached AS predictsql, makes DuckDB refuse a bare predictsql.models as ambiguous."""
    path = db_path.rename(db_path.with_name("predictsql.duckdb")) if named == "file" else db_path
    view = f"CREATE VIEW scored AS {SCORES.format(model='catalog:/churn@prod')}"
    with predictsql.connect(str(path)) as con:
        if named == "attached":
            con.sql(f"ATTACH '{path.with_name('other.duckdb')}' AS predictsql")
        assert con.models.register("churn", logreg.onnx, alias="prod") == 1
        np.testing.assert_allclose(scores(con, "catalog:/churn@prod"), expected_scores(logreg), atol=1.5e-5)
        con.sql(view)
    with predictsql.connect(str(path)) as reopened:
        if named == "attached":
            reopened.sql(f"ATTACH '{path.with_name('other.duckdb')}' AS predictsql")
        viewed = np.array([score for _, score in not_none(reopened.sql("SELECT * FROM scored ORDER BY id")).fetchall()])
        np.testing.assert_allclose(viewed, expected_scores(logreg), atol=1.5e-5)
        reopened.sql("DROP VIEW scored")
        assert reopened.models.remove("churn") == [1] and len(reopened.models.list()) == 0
        with pytest.raises(duckdb.CatalogException, match="scored does not exist"):
            reopened.sql("SELECT * FROM scored")


def test_catalog_refuses_what_is_not_onnx_and_names_it_wrongly(db_path: Path, tmp_path: Path) -> None:
    pickle = tmp_path / "model.pkl"
    pickle.write_bytes(b"\x80\x04\x95" + bytes(20))
    with predictsql.connect(str(db_path)) as con:
        with pytest.raises(predictsql.PredictSQLError, match="is a Python pickle; predictsql never unpickles"):
            con.models.register("churn", str(pickle))
        with pytest.raises(ModelSourceError, match="is not usable in a catalog:/ URI"):
            con.models.register("a/b", b"")
        assert len(con.models.list()) == 0


def test_catalog_imports_a_model_from_mlflow(db_path: Path, mlflow_uri: str, logged: str, logreg: Fitted) -> None:
    with predictsql.connect(str(db_path), registry_uri=mlflow_uri) as con:
        assert con.models.register("local", f"models:/{logged}@prod") == 1
        assert con.models.list().arrow().column("sha256").to_pylist() == [hashlib.sha256(logreg.onnx).hexdigest()]


def test_a_file_named_like_a_uri_is_not_a_catalog_model(db_path: Path) -> None:
    with predictsql.connect(str(db_path)) as con:
        with pytest.raises(predictsql.PredictSQLError, match="model file 'catalog/churn' not found"):
            con.sql(SCORES.format(model="catalog/churn"))
        with pytest.raises(ModelSourceError, match="the catalog is empty"):
            con.sql(SCORES.format(model="catalog:/churn"))


# --- DESCRIBE MODEL ---


def test_describe_model_matches_onnxruntime_and_its_with_clause_pastes(con: predictsql.Connection, logreg: Fitted) -> None:
    rows = not_none(con.sql("DESCRIBE MODEL (SELECT model FROM models WHERE id = 1)")).arrow().to_pylist()
    session = ort.InferenceSession(logreg.onnx, providers=["CPUExecutionProvider"])
    kinds = [r["kind"] for r in rows]
    assert kinds == ["model", "input"] + ["output"] * len(session.get_outputs()) + ["with"]
    assert rows[0]["detail"] == f"{len(logreg.onnx):,} bytes, sha256 {hashlib.sha256(logreg.onnx).hexdigest()}"
    inputs = [r for r in rows if r["kind"] == "input"]
    assert [(r["name"], r["shape"], r["sql_type"]) for r in inputs] == [(i.name, f"[N,{i.shape[1]}]", "FLOAT") for i in session.get_inputs()]
    assert inputs[0]["detail"] == "DATA columns: " + ", ".join(logreg.features.columns)
    outputs = {r["name"]: r for r in rows if r["kind"] == "output"}
    assert [(r["onnx_type"], r["sql_type"]) for r in outputs.values()] == [("int64", "BIGINT"), ("float", "FLOAT[]"), ("float", "FLOAT")]
    with_clause = rows[-1]["detail"]
    assert with_clause == "WITH (label BIGINT, probabilities_0 FLOAT, probabilities_1 FLOAT, Score FLOAT)"
    pasted = not_none(con.sql(f"SELECT p.* FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients) {with_clause} AS p")).arrow()
    implicit = not_none(con.sql("SELECT p.* FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients) AS p")).arrow()
    assert pasted.equals(implicit)
    raw = session.run(None, {"X": logreg.features.to_numpy(np.float32)})
    np.testing.assert_allclose(pasted.column("probabilities_1").to_numpy(), raw[1][:, 1], atol=PROBA_TOLERANCE)  # INLINE: float32 rounding apart


def test_class_labels_that_differ_only_in_case_bind_exactly_first(con: predictsql.Connection) -> None:
    """Classes 'X' and 'x': each per-class name reads its own class (as scikit-learn orders them), a name matching both
    only ignoring case is refused, and DESCRIBE's WITH, which cannot name both (SQL reads them as one), pastes."""
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)}).astype("float32")
    clf = LogisticRegression().fit(features, np.array(["x", "X", "y"])[(features.a > 0).astype(int) + (features.b > 0).astype(int)])
    m = predictsql.export(clf, features)
    con.duckdb.register("frame", features.assign(id=range(200)))
    con.sql("CREATE TABLE cases AS SELECT * FROM frame")
    expected = clf.predict_proba(features)
    predict = "PREDICT(MODEL = @m, DATA = cases AS d) {with_} AS p"
    for with_ in ('WITH ("probabilities_x" FLOAT, probabilities_y FLOAT)', "WITH (probabilities_X FLOAT)", ""):
        columns = "p.*" if with_ else "p.probabilities_X, p.probabilities_x"
        got = not_none(con.sql(f"SELECT {columns} FROM {predict.format(with_=with_)} ORDER BY d.id", params={"m": m})).df()
        for name in got.columns:
            np.testing.assert_allclose(got[name], expected[:, list(clf.classes_).index(name.rsplit("_", 1)[1])], atol=PROBA_TOLERANCE, err_msg=f"{with_} {name}")
    with pytest.raises(BindError, match="matches probabilities_X and probabilities_x, which differ only in case"):
        con.sql(f"SELECT p.* FROM {predict.format(with_='WITH (PROBABILITIES_X FLOAT)')}", params={"m": m})
    with_clause = not_none(con.sql("DESCRIBE MODEL @m", params={"m": m})).fetchall()[-1][-1]
    assert with_clause == "WITH (label VARCHAR, probabilities FLOAT[])"
    pasted = not_none(con.sql(f"SELECT p.probabilities FROM {predict.format(with_=with_clause)} ORDER BY d.id", params={"m": m})).df()
    np.testing.assert_allclose(np.stack(pasted.probabilities), expected, atol=PROBA_TOLERANCE)


def test_describe_model_takes_every_model_form(con: predictsql.Connection, tmp_path: Path, logreg: Fitted) -> None:
    (tmp_path / "m.onnx").write_bytes(logreg.onnx)
    con.models.register("churn", logreg.onnx, alias="prod")
    con.sql("DECLARE @m VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1)")
    names = [not_none(not_none(con.sql(f"DESCRIBE MODEL {form}")).fetchone())[1] for form in (f"'{tmp_path / 'm.onnx'}'", "'catalog:/churn@prod'", "@m")]
    assert names == ["'m.onnx'", "'catalog:/churn@prod' (version 1)", "@m"]
    assert con.models.describe("churn@prod").arrow().column("detail").to_pylist()[-1].startswith("WITH (label BIGINT")


def test_registry_reads_create_nothing_and_an_unnamed_registry_is_refused(tmp_path: Path, logreg: Fitted, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow would create a missing sqlite store (and its folder) on first contact, or ./mlflow.db with no URI at all."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    missing = tmp_path / "nowhere" / "m.db"
    with predictsql.connect(registry_uri=f"sqlite:///{missing}") as con:
        with pytest.raises(ModelSourceError, match=f"MLflow registry sqlite:///{missing} does not exist"):
            con.sql("SELECT * FROM PREDICT(MODEL = 'models:/churn@prod', DATA = (SELECT 1 AS x)) AS p")
    with pytest.raises(ModelSourceError, match="no MLflow registry is configured: pass registry_uri="):
        predictsql.log_model(logreg.onnx, "churn")
    with predictsql.connect() as con, pytest.raises(ModelSourceError, match="no MLflow registry is configured"):
        con.sql("SELECT * FROM PREDICT(MODEL = 'runs:/abc/model', DATA = (SELECT 1 AS x)) AS p")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_mlflow_failure_is_a_model_source_error_naming_the_registry(tmp_path: Path, logreg: Fitted) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a sqlite database, though it is named like one" * 20)
    uri = f"sqlite:///{broken}"
    with pytest.raises(ModelSourceError, match=f"MLflow registry {uri}"):
        predictsql.log_model(logreg.onnx, "churn", registry_uri=uri)
    with predictsql.connect(registry_uri=uri) as con, pytest.raises(ModelSourceError, match=f"MLflow registry {uri}"):
        con.sql("SELECT * FROM PREDICT(MODEL = 'models:/churn/1', DATA = (SELECT 1 AS x)) AS p")


def test_log_model_keeps_artefacts_beside_a_sqlite_registry(tmp_path: Path, logreg: Fitted, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's default experiment would write them to ./mlruns of the current folder; a name with '@' is refused,
    since models:/a@b reads as model a, alias b."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    logged = [predictsql.log_model(logreg.onnx, name, registry_uri=uri) for name in ("churn", "churn")]
    assert logged == ["models:/churn/1", "models:/churn/2"] and list((tmp_path / "work").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["mlartifacts", "mlflow.db"]
    scored = predictsql.predict(logged[1], logreg.features, outputs=["Score"], registry_uri=uri)["Score"].to_numpy()
    np.testing.assert_allclose(scored, expected_scores(logreg), atol=PROBA_TOLERANCE)
    with pytest.raises(ModelSourceError, match="model name 'a@b' cannot be read back as models:/a@b"):
        predictsql.log_model(logreg.onnx, "a@b", registry_uri=uri)
