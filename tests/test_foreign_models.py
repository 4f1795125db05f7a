"""ONNX made elsewhere (column names recorded with export(columns=...), or fed a list column) and Spark MLlib
pipelines converted to ONNX: each against raw onnxruntime or MLlib's own transform on the same rows."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.datasets import load_iris

import predictsql
from predictsql.engine.errors import BindError, ExportError, ModelError, ModelSourceError, ScoringError

from conftest import PROBA_TOLERANCE, no_stream_on_spark, not_none

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    frame = load_iris(as_frame=True).data
    frame.columns = FEATURES
    return frame.assign(id=np.arange(len(frame)))


@pytest.fixture(scope="module")
def unnamed() -> bytes:
    """A model as another tool writes it: one [N,4] input named `input`, a softmax output, no predictsql metadata."""
    rng = np.random.default_rng(0)
    weights = onnx.numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["input", "w"], ["logits"]), onnx.helper.make_node("Softmax", ["logits"], ["output"], axis=1)],
        "foreign",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 4])],
        [onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [None, 3])],
        [weights],
    )
    return onnx.helper.make_model(graph, ir_version=10, opset_imports=[onnx.helper.make_opsetid("", 17)]).SerializeToString()


def _raw(model: bytes, iris: pd.DataFrame) -> np.ndarray:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": iris[FEATURES].to_numpy(np.float32)})[0]


def test_columns_recorded_by_export_bind_the_model_by_name(backend, iris, unnamed) -> None:
    backend.load("flowers", iris)
    named = predictsql.export(unnamed, columns=FEATURES)
    rows = not_none(backend.sql("SELECT d.id, p.output FROM PREDICT(MODEL = @m, DATA = flowers AS d) WITH (output FLOAT[]) AS p ORDER BY d.id", params={"m": named}))
    np.testing.assert_array_equal(np.stack(rows["output"].to_numpy()), _raw(unnamed, iris))


@pytest.mark.parametrize("plan", ["AUTO", "UDF", "STREAM"])
def test_a_list_column_named_like_the_input_feeds_it_whole(backend, iris, unnamed, plan: str, request) -> None:
    no_stream_on_spark(backend, plan, request)
    backend.load("flowers", iris)
    values = ", ".join(FEATURES)
    listed = f"[{values}]::FLOAT[4]" if backend.name == "duckdb" else f"array({values})"
    query = f"SELECT d.id, p.output FROM PREDICT(MODEL = @m, DATA = (SELECT id, {listed} AS input FROM flowers) AS d, PLAN = {plan}) WITH (output FLOAT[]) AS p ORDER BY d.id"
    rows = not_none(backend.sql(query, params={"m": unnamed}))
    np.testing.assert_array_equal(np.stack(rows["output"].to_numpy()), _raw(unnamed, iris))


def test_list_columns_of_the_wrong_size_or_with_nulls_are_errors(iris, unnamed) -> None:
    con = predictsql.connect()
    with pytest.raises(BindError, match=r"holds 2 values per row but input 'input' .* takes 4"):
        con.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = (SELECT [1.0, 2.0]::FLOAT[2] AS input)) AS p", params={"m": unnamed})
    with pytest.raises(ScoringError, match=r"holds 3 values at row 1, but input 'input' takes 4"):
        con.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM (VALUES ([1.0, 2, 3, 4]), ([1.0, 2, 3])) AS t(input))) AS p", params={"m": unnamed})
    with pytest.raises(ScoringError, match="NULL values inside its lists"):
        con.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = (SELECT [1.0, NULL, 3, 4] AS input)) AS p", params={"m": unnamed})
    assert not_none(con.sql("SELECT 1 AS ok")).fetchall() == [(1,)]


def test_without_names_the_error_and_describe_model_say_both_ways(unnamed) -> None:
    con = predictsql.connect()
    con.duckdb.execute("CREATE TABLE t AS SELECT 1.0 AS a, 2.0 AS b, 3.0 AS c, 4.0 AS d")
    with pytest.raises(BindError, match=r"input 'input' of shape \[N,4\] and no column names.*\[c0, c1, c2, c3\]::FLOAT\[4\] AS input.*array\(c0, c1, c2, c3\) AS input.*columns="):
        con.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = t) AS p", params={"m": unnamed})
    described = not_none(con.sql("DESCRIBE MODEL @m", params={"m": unnamed})).df()
    detail = described.set_index("kind").loc["input", "detail"]
    assert "cannot be bound by name" in detail and "list column input of 4 values" in detail


def test_export_columns_forms_and_their_errors(unnamed, tmp_path) -> None:
    path = tmp_path / "foreign.onnx"
    path.write_bytes(unnamed)
    by_path = predictsql.export(path, columns={"input": FEATURES})
    by_proto = predictsql.export(onnx.load(path), columns=FEATURES)
    assert predictsql.argument_names(by_path) == predictsql.argument_names(by_proto) == FEATURES
    with pytest.raises(ExportError, match=r"input 'input' takes 4 values per row but columns names 3"):
        predictsql.export(unnamed, columns=FEATURES[:3])
    with pytest.raises(ExportError, match=r"names input 'x', which the model does not have; its inputs are input"):
        predictsql.export(unnamed, columns={"x": FEATURES})


def test_a_duplicated_default_domain_import_is_normalised_not_refused(iris) -> None:
    """onnxmltools' Spark converter imports '' and 'ai.onnx' both; onnx.checker refuses that, onnxruntime runs it."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["input"], ["output"], domain="ai.onnx")],
        "twice",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 4])],
        [onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [None, 4])],
    )
    model = onnx.helper.make_model(graph, ir_version=10, opset_imports=[onnx.helper.make_opsetid("", 8), onnx.helper.make_opsetid("ai.onnx", 13)])
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model)
    raw = model.SerializeToString()
    scored = predictsql.predict(predictsql.export(raw, columns=FEATURES), iris - 5, outputs={"output": "FLOAT[]"})
    np.testing.assert_array_equal(np.stack(scored["output"].to_numpy()), _raw(raw, iris - 5))


def test_models_register_takes_columns(tmp_path, unnamed, iris) -> None:
    (tmp_path / "foreign.onnx").write_bytes(unnamed)
    db = tmp_path / "cli.duckdb"
    cli = [sys.executable, "-m", "predictsql.cli"]
    done = subprocess.run([*cli, "models", "register", "flowers", str(tmp_path / "foreign.onnx"), "--db", str(db), "--columns", ",".join(FEATURES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    con = predictsql.connect(str(db))
    con.duckdb.register("frame", iris)
    con.duckdb.execute("CREATE TABLE flowers AS SELECT * FROM frame")
    rows = not_none(con.sql("SELECT d.id, p.output FROM PREDICT(MODEL = 'catalog:/flowers', DATA = flowers AS d) WITH (output FLOAT[]) AS p ORDER BY d.id")).df()
    np.testing.assert_array_equal(np.stack(rows["output"].to_numpy()), _raw(unnamed, iris))


# --- Spark MLlib pipelines, converted to ONNX by onnxmltools ---


@pytest.fixture(scope="module")
def mllib(spark, iris):
    """A fitted PipelineModel (VectorAssembler, StandardScaler, LogisticRegression) and the Spark DataFrame it was fitted on."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    frame = spark.createDataFrame(iris.assign(label=load_iris().target.astype(float)))
    stages: list[Any] = [VectorAssembler(inputCols=FEATURES, outputCol="features"), StandardScaler(inputCol="features", outputCol="scaled"), LogisticRegression(featuresCol="scaled")]
    return Pipeline(stages=stages).fit(frame), frame


def test_a_spark_mllib_pipeline_exports_and_scores_as_mllib_does(backend, mllib, iris) -> None:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql.functions import col

    pipeline, frame = mllib
    expected = pipeline.transform(frame).orderBy("id").select(vector_to_array(col("probability")).alias("p")).toPandas()
    backend.load("flowers", iris)
    rows = not_none(backend.sql("SELECT p.probability FROM PREDICT(MODEL = @m, DATA = flowers AS d) WITH (probability FLOAT[]) AS p ORDER BY d.id", params={"m": predictsql.export(pipeline, frame)}))
    np.testing.assert_allclose(np.stack(rows["probability"].to_numpy()), np.stack(expected["p"].to_numpy()), atol=PROBA_TOLERANCE, rtol=0)


def test_a_spark_mllib_pipeline_with_a_string_column_scores_every_row(backend, spark, iris) -> None:
    """A StringIndexer's string column is an [N,1] input like the numbers (the converter's types made it [1,1],
    which failed on any batch of more than one row)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import OneHotEncoder, StringIndexer, VectorAssembler
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql.functions import col

    flowers = iris.assign(size=np.where(iris[FEATURES[2]] > 4, "large", "small"), label=load_iris().target.astype(float))
    frame = spark.createDataFrame(flowers)
    stages: list[Any] = [
        StringIndexer(inputCol="size", outputCol="size_index", handleInvalid="keep"),
        OneHotEncoder(inputCols=["size_index"], outputCols=["size_vector"], handleInvalid="keep"),  # the converter refuses the defaults
        VectorAssembler(inputCols=[FEATURES[0], "size_vector"], outputCol="features"),
        LogisticRegression(),
    ]
    pipeline = Pipeline(stages=stages).fit(frame)
    expected = pipeline.transform(frame).orderBy("id").select(vector_to_array(col("probability")).alias("p")).toPandas()
    backend.load("sized", flowers.drop(columns="label"))
    rows = not_none(backend.sql("SELECT p.probability FROM PREDICT(MODEL = @m, DATA = sized AS d) WITH (probability FLOAT[]) AS p ORDER BY d.id", params={"m": predictsql.export(pipeline, frame)}))
    np.testing.assert_allclose(np.stack(rows["probability"].to_numpy()), np.stack(list(expected["p"])), atol=PROBA_TOLERANCE, rtol=0)


def test_a_saved_mllib_directory_on_duckdb_says_how_to_export_it(mllib, tmp_path) -> None:
    pipeline, _ = mllib
    pipeline.write().overwrite().save(str(tmp_path / "pipeline"))
    con = predictsql.connect()
    con.duckdb.execute("CREATE TABLE t AS SELECT 1.0 AS sepal_length")
    with pytest.raises(ModelError, match=r"saved Spark MLlib PipelineModel.*predictsql.export\(PipelineModel.load\(path\), sample="):
        con.sql(f"SELECT * FROM PREDICT(MODEL = '{tmp_path / 'pipeline'}', DATA = t) AS p")


# --- Spark MLlib pipelines scored by Spark itself ---


def _mllib_expected(pipeline, frame) -> pd.DataFrame:
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql.functions import col

    return pipeline.transform(frame).orderBy("id").select("id", "prediction", vector_to_array(col("probability")).alias("probability")).toPandas()


def test_a_saved_pipeline_directory_is_scored_by_its_own_transform_on_spark(spark, mllib, iris, tmp_path) -> None:
    from predictsql.udfs import spark as ps

    pipeline, frame = mllib
    path = tmp_path / "pipeline"
    pipeline.write().overwrite().save(str(path))
    spark.createDataFrame(iris).createOrReplaceTempView("flowers")
    expected = _mllib_expected(pipeline, frame)
    default = not_none(ps.sql(spark, f"SELECT d.id, p.* FROM PREDICT(MODEL = '{path}', DATA = flowers AS d) AS p ORDER BY d.id")).toPandas()
    assert list(default.columns) == ["id", "rawPrediction", "probability", "prediction"]
    np.testing.assert_array_equal(default["prediction"], expected["prediction"])
    np.testing.assert_array_equal(np.stack(list(default["probability"])), np.stack(list(expected["probability"])))
    query = (
        f"SELECT d.id, p.probability_2, p.prediction FROM PREDICT(MODEL = '{path}', DATA = flowers AS d, RUNTIME = SPARKML) "
        "WITH (probability_2 FLOAT, prediction INT) AS p WHERE d.sepal_length > 5 ORDER BY d.id"
    )
    picked = not_none(ps.sql(spark, query)).toPandas()
    assert not [v for v in spark.catalog.listTables() if v.name.startswith("__predictsql")]  # the scored view's name went with the statement
    kept = expected[iris.set_index("id").loc[expected.id, "sepal_length"].to_numpy() > 5]
    np.testing.assert_allclose(picked["probability_2"], np.stack(kept["probability"].to_numpy())[:, 2].astype(np.float32))
    np.testing.assert_array_equal(picked["prediction"], kept["prediction"].astype(int))


def test_a_null_input_to_a_saved_pipeline_fails_as_null_input_or_propagates(spark, mllib, iris, tmp_path) -> None:
    """As with ONNX models: a NullInputError (Spark's VectorAssembler raised a raw Py4JJavaError), or under
    NULLS = PROPAGATE that row's outputs are NULL and the rest are the pipeline's."""
    from predictsql.engine.errors import NullInputError
    from predictsql.udfs import spark as ps

    pipeline, frame = mllib
    path = tmp_path / "pipeline"
    pipeline.write().overwrite().save(str(path))
    spark.createDataFrame(iris).createOrReplaceTempView("flowers")
    data = "(SELECT id, sepal_length, CASE WHEN id % 10 = 0 THEN NULL ELSE sepal_width END AS sepal_width, petal_length, petal_width FROM flowers) AS d"
    query = f"SELECT d.id, p.prediction FROM PREDICT(MODEL = '{path}', DATA = {data}, RUNTIME = SPARKML{{nulls}}) WITH (prediction DOUBLE) AS p ORDER BY d.id"
    with pytest.raises(NullInputError, match="a NULL input reached a Spark MLlib model's VectorAssembler"), ps.errors():
        not_none(ps.sql(spark, query.format(nulls=""))).collect()
    rows = not_none(ps.sql(spark, query.format(nulls=", NULLS = PROPAGATE"))).toPandas()
    unscored = rows.id % 10 == 0
    assert len(rows) == len(iris) and rows.prediction[unscored].isna().all()
    np.testing.assert_array_equal(rows.prediction[~unscored], _mllib_expected(pipeline, frame).prediction[~unscored.to_numpy()])
    with pytest.raises(BindError, match="PREDICT WITH names prediction twice: name each output once"):  # not Spark's AMBIGUOUS_REFERENCE
        ps.sql(spark, query.format(nulls="").replace("WITH (prediction DOUBLE)", "WITH (prediction DOUBLE, Prediction DOUBLE)"))


def test_mllib_models_of_mlflows_spark_flavour_score_on_spark(spark, mllib, iris, mlflow_uri, monkeypatch) -> None:
    import mlflow

    from predictsql.udfs import spark as ps

    pipeline, frame = mllib
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)  # where mlflow.start_run logs; restored after the test
    with mlflow.start_run():
        mlflow.spark.log_model(pipeline, "flowers", registered_model_name="spark_flowers", pip_requirements=[])
    spark.createDataFrame(iris).createOrReplaceTempView("flowers")
    query = "SELECT d.id, p.prediction FROM PREDICT(MODEL = 'models:/spark_flowers/1', DATA = flowers AS d, RUNTIME = SPARKML) WITH (prediction DOUBLE) AS p ORDER BY d.id"
    rows = not_none(ps.sql(spark, query, registry_uri=mlflow_uri)).toPandas()
    np.testing.assert_array_equal(rows["prediction"], _mllib_expected(pipeline, frame)["prediction"])
    con = predictsql.connect(registry_uri=mlflow_uri)
    with pytest.raises(ModelSourceError, match=r"is a Spark MLlib model \(spark flavour\): on Spark, PREDICT\(\.\.\., RUNTIME = SPARKML\)"):
        con.sql("SELECT * FROM PREDICT(MODEL = 'models:/spark_flowers/1', DATA = (SELECT 1.0 AS sepal_length)) AS p")
    with pytest.raises(BindError, match="RUNTIME = SPARKML .* run the statement with predictsql.udfs.spark.sql"):
        con.sql("SELECT * FROM PREDICT(MODEL = 'models:/spark_flowers/1', DATA = (SELECT 1.0 AS sepal_length), RUNTIME = SPARKML) AS p")


def test_mllib_errors_name_the_model_and_the_column(spark, mllib, tmp_path) -> None:
    from predictsql.engine.errors import MissingColumnError, UnknownOutputError
    from predictsql.udfs import spark as ps

    pipeline, _ = mllib
    path = tmp_path / "pipeline"
    pipeline.write().overwrite().save(str(path))
    with pytest.raises(MissingColumnError, match=r"PREDICT input 'sepal_width' \(Spark MLlib model .*\) has no DATA column"):
        ps.sql(spark, f"SELECT * FROM PREDICT(MODEL = '{path}', DATA = (SELECT 1.0 AS sepal_length)) AS p")
    with pytest.raises(UnknownOutputError, match="names no column that Spark MLlib model .* adds; it adds"):
        ps.sql(spark, f"SELECT * FROM PREDICT(MODEL = '{path}', DATA = (SELECT 1.0 AS sepal_length, 2.0 AS sepal_width, 3.0 AS petal_length, 4.0 AS petal_width)) WITH (score DOUBLE) AS p")
    data = "(SELECT 1.0 AS sepal_length, 2.0 AS sepal_width, 3.0 AS petal_length, 4.0 AS petal_width)"
    for columns, message in (
        ("probability_3 DOUBLE", r"probability of Spark MLlib model .* holds 3 values \(probability_0 … probability_2\); did you mean probability_2\?"),
        ("prediction_1 DOUBLE", r"prediction of Spark MLlib model .* is a double, not a vector to pick value 1 of; read it as prediction"),
    ):
        with pytest.raises(UnknownOutputError, match=message):
            ps.sql(spark, f"SELECT * FROM PREDICT(MODEL = '{path}', DATA = {data}) WITH ({columns}) AS p")
    with pytest.raises(predictsql.PredictSQLError, match="PLAN = STREAM .* does not apply to a Spark MLlib model"):
        ps.sql(spark, f"SELECT * FROM PREDICT(MODEL = '{path}', DATA = {data}, PLAN = STREAM) AS p")
