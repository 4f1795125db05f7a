"""Faults made for real: a model that cannot be read, a registry whose artefact is gone, a session onnxruntime
refuses, onnxruntime failing at batch k, on both engines (a model returning the wrong row count: test_errors.py).
Each is a PredictSQLError that leaves no rows, no partial writes, a cache that still serves good models, and a usable
connection or session."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import onnx
import pandas as pd
import pytest

import predictsql
from predictsql.engine.errors import ModelError, ModelSourceError, PredictSQLError, ScoringError
from predictsql.engine.mlflow_registry import MlflowRegistry

from backends import DuckDBBackend
from conftest import assert_scores, no_stream_on_spark, not_none, onnx_model

INSERT = "INSERT INTO scores SELECT d.id, p.y FROM PREDICT(MODEL = @m, DATA = {data} AS d{plan}) WITH (y FLOAT) AS p"


def _indexing_model() -> bytes:
    """y = table[x]: onnxruntime fails on the batch where x leaves the table's range (here only row 5000)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.INT64, [None])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None])
    table = onnx.numpy_helper.from_array(np.arange(10, dtype=np.float32) / 10, "table")
    return onnx_model([onnx.helper.make_node("Gather", ["table", "x"], ["y"])], [x], [y], [table])


def _assert_unharmed(backend, logreg, breast_cancer) -> None:
    """Nothing was written, and the same connection (session) and model cache still score."""
    assert not_none(backend.sql("SELECT count(*) AS n FROM scores")).n.tolist() == [0]
    rows = not_none(backend.sql("SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p"))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


@pytest.fixture
def scored(backend):
    """The shared suite's engine with an empty `scores` table and `positions`, whose row 5000 is out of the indexing model's range."""
    backend.execute("CREATE TABLE scores (id BIGINT, y FLOAT)")
    x = np.arange(8000) % 10
    x[5000] = 99
    backend.load("positions", pd.DataFrame({"id": np.arange(8000), "x": x}))
    return backend


@pytest.mark.parametrize("plan", ["STREAM", "UDF"])
def test_onnxruntime_failing_at_batch_k(scored, logreg, breast_cancer, plan: str, request: pytest.FixtureRequest) -> None:
    no_stream_on_spark(scored, plan, request)
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


def test_an_mlflow_artefact_that_is_gone(scored, logreg, breast_cancer, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = predictsql.log_model(logreg.onnx, "vanishing", registry_uri=mlflow_uri)
    client = MlflowRegistry(mlflow_uri).client()
    run_id = client.get_model_version("vanishing", uri.rsplit("/", 1)[1]).run_id
    artifacts = client.get_run(run_id).info.artifact_uri
    shutil.rmtree(Path(urlparse(artifacts).path if artifacts.startswith("file:") else artifacts) / "model")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)  # read when a statement is planned (Spark) or a connection opens (DuckDB)
    engine = scored if scored.name == "spark" else DuckDBBackend(scored.path)
    with pytest.raises(ModelSourceError, match=f"MODEL '{uri}'"):
        engine.sql(f"INSERT INTO scores SELECT 1, p.Score FROM PREDICT(MODEL = '{uri}', DATA = (SELECT 1.0 AS x) AS d) AS p")
    if engine is not scored:
        engine.close()
    _assert_unharmed(scored, logreg, breast_cancer)
