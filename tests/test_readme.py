"""Every README example, run as written in a fresh folder (a churn scene): Python API, Spark SQL, Models, Command line."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import predictsql

from conftest import not_none

README = Path(__file__).resolve().parent.parent / "README.md"
BIN = Path(sys.executable).parent


def section_block(title: str, language: str, index: int = 0) -> str:
    """The `index`th ```language block under the README heading `## title`."""
    text = README.read_text()
    section = text[text.index(f"## {title}\n") :]
    section = section[: section.find("\n## ", 1)]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert len(blocks) > index, f"no {language} block {index} under {title}"
    return blocks[index]


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """shop.duckdb with `customers`, a churn pipeline trained on them, churn.onnx and score.sql, in the working folder."""
    rng = np.random.RandomState(0)
    customers = pd.DataFrame({"id": np.arange(500), "age": rng.randint(18, 80, 500), "income": rng.normal(50_000, 15_000, 500), "visits": rng.poisson(4, 500)})
    churned = ((customers.visits < 3) ^ (rng.rand(500) < 0.1)).astype(int)
    X_train = customers[["age", "income", "visits"]].astype("float32")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, churned)
    (tmp_path / "churn.onnx").write_bytes(predictsql.export(pipeline, X_train, outputs={"score": "Score"}))
    (tmp_path / "score.sql").write_text("SELECT d.id, p.Score FROM PREDICT(MODEL = 'catalog:/churn@prod', DATA = customers AS d) WITH (Score FLOAT) AS p;\n")
    with predictsql.connect(str(tmp_path / "shop.duckdb")) as con:
        con.duckdb.register("frame", customers)
        con.duckdb.sql("CREATE TABLE customers AS SELECT * FROM frame")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ['PATH']}")
    return {"pipeline": pipeline, "X_train": X_train, "folder": tmp_path, "customers": customers}


def test_python_api_example(scene: dict) -> None:
    namespace = {"pipeline": scene["pipeline"], "X_train": scene["X_train"]}
    exec(compile(section_block("Python API", "python"), "README.md", "exec"), namespace)
    expected = scene["pipeline"].predict_proba(scene["X_train"])[:, 1]
    for scores in (namespace["result"].arrow().column("Score"), namespace["scored"].column("Score"), namespace["by_function"].arrow().column("s")):
        np.testing.assert_allclose(scores.to_numpy(), expected, atol=1.5e-5)
    assert "Score" in str(namespace["result"]) and namespace["cursor"].sql("SELECT count(*) FROM models").fetchall() == [(1,)]
    namespace["cursor"].close()
    namespace["con"].close()


def test_spark_example(scene: dict, spark) -> None:
    namespace = {"customers": scene["customers"]}
    exec(compile(section_block("Spark SQL", "python"), "README.md", "exec"), namespace)
    expected = scene["pipeline"].predict_proba(scene["X_train"])[:, 1]
    likely = namespace["likely"].sort_values("id")
    assert likely.id.tolist() == list(np.flatnonzero(expected > 0.5))
    by_function = namespace["by_function"].sort_values("id")
    np.testing.assert_allclose(by_function.s, expected, atol=1.5e-5)
    spark.catalog.dropTempView("customers")


def test_models_python_example(scene: dict) -> None:
    namespace = {"pipeline": scene["pipeline"], "X_train": scene["X_train"]}
    exec(compile(section_block("Models", "python"), "README.md", "exec"), namespace)
    assert namespace["uri"] == "models:/churn/1"
    expected = scene["pipeline"].predict_proba(scene["X_train"])[:, 1]
    scored = namespace["con"].sql("SELECT p.Score FROM PREDICT(MODEL = 'models:/churn@champion', DATA = customers AS d) WITH (Score FLOAT) AS p ORDER BY d.id")
    np.testing.assert_allclose(scored.arrow().column(0).to_numpy(), expected, atol=1.5e-5)
    namespace["con"].close()


def test_command_line_examples(scene: dict) -> None:
    steps = re.split(r"^\$ ", section_block("Command line", "console"), flags=re.MULTILINE)[1:]
    assert len(steps) >= 8
    for step in steps:
        command, _, expected = step.partition("\n")
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        if expected.strip():
            pattern = ".*".join(re.escape(part) for part in expected.strip().split("..."))
            assert re.fullmatch(pattern, done.stdout.strip(), re.DOTALL), f"{command}\nexpected:\n{expected}\ngot:\n{done.stdout}"
    assert (scene["folder"] / "scores.parquet").is_file()


def test_models_from_other_libraries_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each library's model scores as the library predicts: the README fits them on breast cancer."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(section_block("Models from other libraries", "python"), "README.md", "exec"), namespace)
    X = namespace["X"]
    assert set(namespace["scores"]) == {"xgboost", "lightgbm", "catboost", "torch", "keras"}
    import torch

    references = {name: fitted.predict_proba(X)[:, 1] for name, fitted in namespace["boosters"].items()}
    references["torch"] = namespace["net"](torch.tensor(X.to_numpy(np.float32))).detach().numpy().ravel()
    references["keras"] = namespace["dense"].predict(X.to_numpy(np.float32), verbose=0).ravel()
    for name, scored in namespace["scores"].items():
        np.testing.assert_allclose(scored.Score.to_numpy(), references[name], atol=1.5e-5, err_msg=name)


def test_foreign_onnx_and_mllib_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spark) -> None:
    import onnx
    import onnxruntime as ort
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression as SparkLogisticRegression
    from pyspark.ml.feature import VectorAssembler

    monkeypatch.chdir(tmp_path)
    weights = onnx.numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(4, 1), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["input", "w"], ["output"])], "foreign",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 4])],
        [onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [None, 1])], [weights],
    )
    (tmp_path / "foreign.onnx").write_bytes(onnx.helper.make_model(graph, ir_version=10, opset_imports=[onnx.helper.make_opsetid("", 17)]).SerializeToString())
    frame = spark.createDataFrame(pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "label": [0.0, 0.0, 1.0, 1.0]}))
    pipeline_model = Pipeline(stages=[VectorAssembler(inputCols=["a"], outputCol="features"), SparkLogisticRegression()]).fit(frame)
    namespace = {"pipeline_model": pipeline_model, "spark_frame": frame}
    exec(compile(section_block("Models from other libraries", "python", 1), "README.md", "exec"), namespace)
    raw = ort.InferenceSession(str(tmp_path / "foreign.onnx")).run(None, {"input": np.array([[1, 2, 3, 4]], np.float32)})[0]
    assert namespace["by_name"].fetchall()[0][0] == namespace["as_list"].fetchall()[0][0] == raw[0][0] == 20.0
    assert ort.InferenceSession(namespace["mllib"]).get_outputs()[1].name == "probability"


def test_mllib_on_spark_example(scene: dict, spark) -> None:
    """The SPARKML query, on a pipeline fitted on the scene's customers, returns the pipeline's own transform."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression as SparkLogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql.functions import col

    from predictsql.udfs import spark as ps

    customers = spark.createDataFrame(scene["customers"].assign(label=(scene["customers"].visits < 3).astype(float)))
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["age", "income", "visits"], outputCol="features"), SparkLogisticRegression()]).fit(customers)
    pipeline.write().overwrite().save(str(scene["folder"] / "models" / "churn_pipeline"))  # the JVM does not follow chdir
    customers.createOrReplaceTempView("customers")
    rows = not_none(ps.sql(spark, section_block("Models from other libraries", "sql"))).toPandas().sort_values("id")
    expected = pipeline.transform(customers).orderBy("id").select("prediction", vector_to_array(col("probability")).alias("p")).toPandas()
    np.testing.assert_array_equal(rows.prediction, expected.prediction)
    np.testing.assert_allclose(rows.probability_1, np.stack(list(expected.p))[:, 1].astype(np.float32))
    spark.catalog.dropTempView("customers")
