"""Faults made for real: a model that cannot be read, a registry whose artefact is gone, a session onnxruntime
refuses, onnxruntime failing at batch k, a model returning the wrong row count. Each is a PredictSQLError that
leaves no rows, no partial writes, a cache that still serves good models, and a usable connection."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import onnx
import pytest

import predictsql
from predictsql.engine.errors import ModelError, ModelSourceError, PredictSQLError, ScoringError
from predictsql.engine.mlflow_registry import MlflowRegistry

from conftest import assert_scores, not_none

INSERT = "INSERT INTO scores SELECT d.id, p.y FROM PREDICT(MODEL = @m, DATA = {data} AS d{plan}) WITH (y FLOAT) AS p"


def _indexing_model() -> bytes:
    """y = table[x]: onnxruntime fails on the batch where x leaves the table's range (here only row 5000)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.INT64, [None])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None])
    table = onnx.numpy_helper.from_array(np.arange(10, dtype=np.float32) / 10, "table")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Gather", ["table", "x"], ["y"])], "indexing", [x], [y], [table])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def _assert_unharmed(con, logreg, breast_cancer) -> None:
    """Nothing was written, and the same connection and model cache still score."""
    assert not_none(con.sql("SELECT count(*) FROM scores")).fetchall() == [(0,)]
    rows = not_none(con.sql("SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p")).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


@pytest.fixture
def scored(con):
    con.duckdb.sql("CREATE TABLE scores (id BIGINT, y FLOAT)")
    con.duckdb.sql("CREATE TABLE positions AS SELECT i AS id, CASE WHEN i = 5000 THEN 99 ELSE i % 10 END AS x FROM range(8000) r(i)")
    return con


@pytest.mark.parametrize("plan", ["STREAM", "UDF"])
def test_onnxruntime_failing_at_batch_k(scored, logreg, breast_cancer, plan: str) -> None:
    model = _indexing_model()
    with predictsql.connect(":memory:") as probe:
        assert len(not_none(probe.sql("SELECT p.y FROM PREDICT(MODEL = @m, DATA = (SELECT 3::BIGINT AS x) AS d) WITH (y FLOAT) AS p", params={"m": model}))) == 1
    with pytest.raises(ScoringError, match=r"model @m, sha \w+ failed on batch \d+ \(rows \d+-\d+\)"):
        scored.sql(INSERT.format(data="positions", plan=f", PLAN = {plan}, BATCH_SIZE = 1000"), params={"m": model})
    _assert_unharmed(scored, logreg, breast_cancer)
    good = not_none(scored.sql(f"SELECT p.y FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM positions WHERE x < 10) AS d, PLAN = {plan}) WITH (y FLOAT) AS p", params={"m": model}))
    assert len(good) == 7999  # the same model, from the cache, scores the good rows


def test_a_model_that_cannot_be_read(scored, logreg, breast_cancer, tmp_path: Path) -> None:
    folder = tmp_path / "model.onnx"
    folder.mkdir()  # a path that exists but is no file
    with pytest.raises(ModelError, match="model.onnx"):
        scored.sql(INSERT.format(data="patients", plan=""), params={"m": str(folder)})
    _assert_unharmed(scored, logreg, breast_cancer)


def test_a_session_onnxruntime_refuses(scored, logreg, breast_cancer) -> None:
    """Valid to onnx.checker, refused by onnxruntime: an operator from a future opset of the default domain."""
    proto = onnx.load_from_string(logreg.onnx)
    for opset in proto.opset_import:
        if opset.domain == "":
            opset.version = 99
    with pytest.raises(PredictSQLError, match="model @m"):
        scored.sql(INSERT.format(data="patients", plan=""), params={"m": proto.SerializeToString()})
    _assert_unharmed(scored, logreg, breast_cancer)


def test_an_mlflow_artefact_that_is_gone(scored, logreg, breast_cancer, mlflow_uri: str) -> None:
    uri = predictsql.log_model(logreg.onnx, "vanishing", registry_uri=mlflow_uri)
    client = MlflowRegistry(mlflow_uri).client()
    run_id = client.get_model_version("vanishing", uri.rsplit("/", 1)[1]).run_id
    artifacts = client.get_run(run_id).info.artifact_uri
    shutil.rmtree(Path(urlparse(artifacts).path if artifacts.startswith("file:") else artifacts) / "model")
    with predictsql.connect(registry_uri=mlflow_uri) as con:
        con.duckdb.sql("CREATE TABLE scores (id BIGINT, y FLOAT)")
        with pytest.raises(ModelSourceError, match=f"MODEL '{uri}'"):
            con.sql(f"INSERT INTO scores SELECT 1, p.Score FROM PREDICT(MODEL = '{uri}', DATA = (SELECT 1.0 AS x) AS d) AS p")
        assert not_none(con.sql("SELECT count(*) FROM scores")).fetchall() == [(0,)]
    _assert_unharmed(scored, logreg, breast_cancer)
