"""What only the Spark adapter does: the same rows as DuckDB, models registered as SQL functions,
and scoring on separate executor processes (local-cluster)."""

from __future__ import annotations

import gc
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.errors import AnalysisException

import predictsql
from predictsql.engine.errors import BindError, ModelError
from predictsql.udfs import spark as ps

from conftest import PROBA_TOLERANCE, Fitted, assert_parity, assert_scores, expected_scores, fit, not_none, numeric, onnx_model

QUERY = """
SELECT d.id, p.Score, p.label, p.probabilities
FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM patients WHERE target = 1) AS d, PLAN = {plan}) WITH (Score FLOAT, label BIGINT, probabilities FLOAT[]) AS p
ORDER BY d.id
"""


@pytest.mark.parametrize("plan", ["UDF", "INLINE"])
def test_spark_rows_equal_duckdb_rows(spark, con, logreg, breast_cancer, plan: str) -> None:
    """Both engines score with onnxruntime (UDF) or compute the same SQL in DOUBLE (INLINE)."""
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    on_duckdb = not_none(con.sql(QUERY.format(plan=plan), params={"m": logreg.onnx})).df()
    on_spark = not_none(ps.sql(spark, QUERY.format(plan=plan), params={"m": logreg.onnx})).toPandas()
    assert on_spark.id.tolist() == on_duckdb.id.tolist()
    assert on_spark.Score.tolist() == on_duckdb.Score.tolist()  # bit-identical, not just close
    assert on_spark.label.tolist() == on_duckdb.label.tolist()
    assert [list(p) for p in on_spark.probabilities] == [list(p) for p in on_duckdb.probabilities]


def test_nulls_propagate_keeps_rows_aligned_across_batches(spark, con, logreg, breast_cancer) -> None:
    """NULL inputs give NULL outputs on exactly their rows (50-row Arrow batches); the other rows equal DuckDB's."""
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    query = (
        "SELECT d.id, p.Score, p.label FROM PREDICT(MODEL = @m, DATA = (SELECT id, CASE WHEN id % 10 = 0 THEN NULL ELSE mean_texture END AS mean_texture, "
        "* EXCEPT (id, mean_texture) FROM patients) AS d, NULLS = PROPAGATE, PLAN = UDF) WITH (Score FLOAT, label BIGINT) AS p ORDER BY d.id"
    )
    batch_rows = spark.conf.get(ps.ARROW_BATCH_ROWS)
    spark.conf.set(ps.ARROW_BATCH_ROWS, "50")
    try:
        on_spark = not_none(ps.sql(spark, query, params={"m": logreg.onnx})).toPandas()
    finally:
        spark.conf.set(ps.ARROW_BATCH_ROWS, batch_rows)
    on_duckdb = not_none(con.sql(query, params={"m": logreg.onnx})).df()
    assert on_spark.Score[on_spark.id % 10 == 0].isna().all() and on_spark.label[on_spark.id % 10 == 0].isna().all()
    pd.testing.assert_frame_equal(on_spark, on_duckdb, check_dtype=False)


def test_one_scoring_node_per_predict_fed_only_model_inputs(spark, logreg, breast_cancer) -> None:
    """Three outputs read (two in WHERE) are scored once; DATA columns the model does not read stay in the JVM."""
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    frame = not_none(ps.sql(
        spark,
        "SELECT d.id, p.probabilities FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = UDF) WITH (Score FLOAT, label BIGINT, probabilities FLOAT[]) AS p "
        "WHERE p.Score > 0.5 AND p.label = 1",
        params={"m": logreg.onnx},
    ))
    nodes = python_nodes(frame)
    assert len(nodes) == 1
    assert re.findall(r"(\w+)#\d+", nodes[0].split("], [")[0]) == list(logreg.features.columns)
    rows = frame.toPandas().sort_values("id")
    assert rows.id.tolist() == list(np.flatnonzero(expected_scores(logreg) > 0.5))
    np.testing.assert_allclose([p[1] for p in rows.probabilities], expected_scores(logreg)[rows.id], atol=PROBA_TOLERANCE)


def test_inline_plan_never_leaves_the_jvm(spark, con, logreg, breast_cancer) -> None:
    """A linear model under the default PLAN = AUTO is Spark SQL arithmetic: no Python node, the same rows as the UDF."""
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    query = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d{plan}) WITH (Score FLOAT) AS p WHERE p.Score > 0.5"
    frame = not_none(ps.sql(spark, query.format(plan=""), params={"m": logreg.onnx}))
    assert python_nodes(frame) == []
    rows = frame.toPandas().sort_values("id")
    assert rows.id.tolist() == list(np.flatnonzero(expected_scores(logreg) > 0.5))
    np.testing.assert_allclose(rows.Score, expected_scores(logreg)[rows.id], atol=PROBA_TOLERANCE)
    streamed = not_none(ps.sql(spark, query.format(plan=", PLAN = UDF"), params={"m": logreg.onnx})).toPandas().sort_values("id")
    np.testing.assert_allclose(rows.Score, streamed.Score, atol=PROBA_TOLERANCE)


@pytest.mark.parametrize("kind", ["logistic_regression", "scaler_pipeline"])
def test_inline_multiclass_equals_duckdb_and_scikit_learn(spark, con, dataset, kind: str) -> None:
    """Softmax, L1 normalisation and argmax labels as Spark SQL: DuckDB's rows bit for bit, scikit-learn's within tolerance."""
    fitted = fit(kind, dataset)
    spark.createDataFrame(dataset.table).createOrReplaceTempView("samples")
    con.duckdb.register("frame", dataset.table)
    con.duckdb.sql("CREATE OR REPLACE TABLE samples AS SELECT * FROM frame")
    query = "SELECT d.id, p.label, p.probabilities FROM PREDICT(MODEL = @m, DATA = samples AS d, PLAN = INLINE) WITH (label BIGINT, probabilities FLOAT[]) AS p ORDER BY d.id"
    on_spark = not_none(ps.sql(spark, query, params={"m": fitted.onnx})).toPandas()
    on_duckdb = not_none(con.sql(query, params={"m": fitted.onnx})).df()
    assert on_spark.label.tolist() == on_duckdb.label.tolist()
    assert [list(p) for p in on_spark.probabilities] == [list(p) for p in on_duckdb.probabilities]
    assert_parity(fitted.estimator, fitted.features, on_spark.label.to_numpy(), np.stack(list(on_spark.probabilities)))


def test_explain_over_predict_is_sparks_explain_of_the_rewritten_statement(spark, logreg, breast_cancer) -> None:
    """EXPLAIN of a PREDICT statement is Spark's plan of what predictsql runs: one Python node scores under the WHERE."""
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    query = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = UDF) WITH (Score FLOAT) AS p WHERE p.Score > 0.5"
    frame = not_none(ps.sql(spark, f"EXPLAIN {query}", params={"m": logreg.onnx}))
    ((plan,),) = frame.collect()
    assert frame.columns == ["plan"] and plan.count("ArrowEvalPython") == 1


def python_nodes(frame) -> list[str]:
    """The plan lines where Spark hands rows to a Python worker."""
    return [line for line in frame._jdf.queryExecution().executedPlan().toString().splitlines() if "ArrowEvalPython" in line]


def test_register_refuses_unknown_outputs_on_the_driver(spark, logreg) -> None:
    with pytest.raises(BindError, match="names no output"):
        ps.register(spark, "nope", logreg.onnx, outputs=["Scor"])


def test_a_registered_function_called_with_the_wrong_number_of_arguments_says_how_many(spark, logreg, breast_cancer) -> None:
    """Spark cannot check an Arrow UDF's argument count; the worker's first batch does, with a BindError."""
    ps.register(spark, "argc", logreg.onnx, outputs=["Score"])
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("argc_rows")
    with pytest.raises(BindError, match=r"'argc' takes 30 arguments \(mean_radius, .*\) but was called with 2"), ps.errors():
        spark.sql("SELECT argc(mean_radius, mean_texture) FROM argc_rows").collect()


def test_bind_errors_are_raised_on_the_driver_before_any_job(spark, logreg, breast_cancer) -> None:
    spark.createDataFrame(breast_cancer.table.drop(columns="mean_radius")).createOrReplaceTempView("partial")
    with pytest.raises(predictsql.PredictSQLError, match="'mean_radius'.*no DATA column"):
        ps.sql(spark, "SELECT * FROM PREDICT(MODEL = @m, DATA = partial) AS p", params={"m": logreg.onnx})


def test_local_cluster_ships_the_model_once_per_worker(tmp_path: Path, breast_cancer) -> None:
    """Separate executor processes: the model travels as a broadcast and each Python worker loads it once."""
    forest = fit("random_forest", breast_cancer)
    model, data = tmp_path / "forest.onnx", tmp_path / "patients.parquet"
    model.write_bytes(forest.onnx)
    breast_cancer.table.to_parquet(data)
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("spark_cluster_check.py")), str(model), str(data)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["executors"] == 2
    workers = [w for w in report["workers"] if w["loads"] or w["hits"]]
    assert workers and all(w["pid"] != report["driver_pid"] for w in workers)
    assert all(w["loads"] == 1 for w in workers)  # one scorer per worker process...
    assert sum(w["hits"] for w in workers) > 0  # ...reused across its tasks and batches
    order = np.argsort(report["ids"])
    assert_scores(forest, breast_cancer, np.array(report["ids"])[order], np.array(report["scores"])[order])


def test_the_worker_scorer_cache_is_bounded_by_model_bytes(spark, logreg, forest, breast_cancer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache a worker keeps evicts the least recently used model once the bytes it holds pass MAX_BYTES (here, in
    the driver's own copy of the module, with real broadcasts)."""
    from predictsql.engine.sessions import SessionOptions
    from predictsql.udfs import spark_cache

    monkeypatch.setattr(spark_cache, "_scorers", type(spark_cache._scorers)())
    monkeypatch.setattr(spark_cache, "MAX_BYTES", len(logreg.onnx) + len(forest.onnx) - 1)
    monkeypatch.setattr(spark_cache, "stats", {"loads": 0, "hits": 0, "evictions": 0})
    schema = pa.Schema.from_pandas(numeric(breast_cancer.features), preserve_index=False)
    broadcasts = {id(m): spark.sparkContext.broadcast(m.onnx) for m in (logreg, forest)}

    def load(model: Fitted) -> object:
        return spark_cache.scorer(broadcasts[id(model)], hashlib.sha256(model.onnx).hexdigest(), "m", schema, None, "ERROR", SessionOptions())

    first = load(logreg)
    assert load(logreg) is first and spark_cache.stats == {"loads": 1, "hits": 1, "evictions": 0}
    load(forest)  # both together exceed the budget: the older one goes
    assert spark_cache.stats["evictions"] == 1 and load(logreg) is not first
    for b in broadcasts.values():
        b.unpersist()


def test_session_options_reach_spark(spark, logreg, breast_cancer) -> None:
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    with pytest.raises(ModelError, match="over the 1,000-byte cap"):
        ps.sql(spark, "SELECT * FROM PREDICT(MODEL = @m, DATA = patients) AS p", params={"m": logreg.onnx}, max_model_bytes=1000)
    with pytest.raises(ModelError, match="over the 1,000-byte cap"):
        ps.register(spark, "capped", logreg.onnx, max_model_bytes=1000)


def _padded_model(pad: int) -> bytes:
    """y = x + pad[0]: a [N,1] identity carrying `pad` floats (random, as Spark compresses broadcasts; pad[0] = 0), so its
    broadcast is big enough to see in Spark's storage memory."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 1])
    values = np.random.default_rng(0).random(pad, dtype=np.float32)
    values[0] = 0
    padding = [onnx.numpy_helper.from_array(values, "pad"), onnx.numpy_helper.from_array(np.array([0], np.int64), "first")]
    nodes = [onnx.helper.make_node("Gather", ["pad", "first"], ["zero"]), onnx.helper.make_node("Add", ["x", "zero"], ["y"])]
    return onnx_model(nodes, [x], [y], padding)


def _storage_free(spark) -> int:
    """Bytes of storage memory free across the application's block managers (SparkContext.getExecutorMemoryStatus)."""
    status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().values().iterator()
    free = 0
    while status.hasNext():
        free += status.next()._2()
    return free


def _collect_garbage(spark, until=lambda: False) -> None:
    """Python's and the JVM's garbage collectors, run until `until()` holds (at most 20 s): Spark's ContextCleaner then
    drops the broadcasts no plan holds."""
    for _ in range(40):
        gc.collect()
        spark.sparkContext._jvm.System.gc()
        time.sleep(0.5)
        if until():
            return


def _names_left(spark) -> list[str]:
    functions = [r[0] for r in spark.sql("SHOW USER FUNCTIONS").collect()]
    views = [v.name for v in spark.catalog.listTables()]
    return [name for name in functions + views if "__predictsql" in name]


def test_a_statement_leaves_no_names_behind_and_its_broadcast_goes_with_its_dataframes(spark) -> None:
    """The temp function is dropped once the statement is analysed, yet frames derived from it still score; the model's
    broadcast is held while they live and released by Spark when they are gone."""
    pad = 8_000_000
    model = _padded_model(pad)
    spark.createDataFrame(pd.DataFrame({"x": np.arange(10, dtype=np.float32)})).createOrReplaceTempView("xs")
    _collect_garbage(spark)
    before = _storage_free(spark)
    frame = not_none(ps.sql(spark, "SELECT d.x, p.y FROM PREDICT(MODEL = @m, DATA = xs AS d, PLAN = UDF) WITH (y FLOAT) AS p", params={"m": model}))
    assert _names_left(spark) == []
    derived = frame.filter("x >= 5")
    assert sorted(r.y for r in derived.collect()) == [5.0, 6.0, 7.0, 8.0, 9.0]
    held = _storage_free(spark)
    assert held < before - 0.9 * pad * 4
    del frame, derived
    _collect_garbage(spark, until=lambda: _storage_free(spark) > held + 0.9 * pad * 4)
    assert _storage_free(spark) > held + 0.9 * pad * 4


def test_a_failing_statement_leaves_no_names_behind(spark, logreg, breast_cancer) -> None:
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    with pytest.raises(AnalysisException):  # the PREDICT binds (its function is registered), then Spark refuses the outer column
        ps.sql(spark, "SELECT nowhere, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = UDF) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    assert _names_left(spark) == []
    with pytest.raises(BindError, match="d.nowhere"):  # the PREDICT binds, then the rewrite refuses the column DATA lacks
        ps.sql(spark, "SELECT d.nowhere, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = UDF) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    assert _names_left(spark) == []


@pytest.mark.parametrize("plan", ["UDF", "INLINE"])
def test_cache_table_over_predict_is_a_cached_view_of_its_rows(spark, logreg, breast_cancer, plan: str) -> None:
    """Spark's CACHE TABLE keeps the query's text, whose per-statement scoring function is gone once the statement
    ran (every read failed); predictsql caches the statement's DataFrame as a temp view, eagerly unless LAZY."""
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    query = f"SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"
    for statement, name in ((f"CACHE TABLE cached_{plan} AS {query}", f"cached_{plan}"), (f"CACHE LAZY TABLE lazy_{plan} OPTIONS ('storageLevel' 'DISK_ONLY') AS {query}", f"lazy_{plan}")):
        assert ps.sql(spark, statement, params={"m": logreg.onnx}) is None
        assert spark.catalog.isCached(name)
        with ps.errors():
            rows = spark.sql(f"SELECT id, Score FROM {name} ORDER BY id").toPandas()
        assert_scores(logreg, breast_cancer, rows.id, rows.Score)
        spark.catalog.uncacheTable(name)
    with pytest.raises(BindError, match="Spark has no such storage level"):
        ps.sql(spark, f"CACHE TABLE bad_{plan} OPTIONS ('storageLevel' 'SOMEWHERE') AS {query}", params={"m": logreg.onnx})


def test_a_global_temp_view_over_predict_lives_in_global_temp_and_a_catalog_view_is_refused(spark, logreg, breast_cancer) -> None:
    """Both used to become a session temp view under the bare name, with no word said."""
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    query = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p"
    ps.sql(spark, f"CREATE OR REPLACE GLOBAL TEMP VIEW scored_everywhere AS {query}", params={"m": logreg.onnx})
    with ps.errors():
        rows = spark.sql("SELECT id, Score FROM global_temp.scored_everywhere ORDER BY id").toPandas()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    assert not spark.catalog.tableExists("scored_everywhere")
    with pytest.raises(BindError, match="view scored_everywhere already exists; use CREATE OR REPLACE VIEW"):
        ps.sql(spark, f"CREATE GLOBAL TEMP VIEW scored_everywhere AS {query}", params={"m": logreg.onnx})
    ps.sql(spark, f"CREATE TEMP VIEW scored_here AS {query}", params={"m": logreg.onnx})
    ps.sql(spark, f"CREATE TEMP VIEW IF NOT EXISTS scored_here AS {query.replace('d.id, p.Score', 'd.id')}", params={"m": logreg.onnx})  # left be
    assert spark.table("scored_here").columns == ["id", "Score"]
    with pytest.raises(BindError, match=r"view default.scored_kept reads PREDICT, so it is a temporary view of this session: CREATE TEMP VIEW scored_kept"):
        ps.sql(spark, f"CREATE VIEW default.scored_kept AS {query}", params={"m": logreg.onnx})


def test_describe_query_over_predict_gives_the_statements_columns(spark, logreg, breast_cancer) -> None:
    """Spark's DESCRIBE QUERY <query> (sqlglot could not read it) is DESCRIBE <query>; it scores nothing."""
    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    query = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p"
    described = not_none(ps.sql(spark, f"DESCRIBE QUERY {query}", params={"m": logreg.onnx})).toPandas()
    assert list(zip(described.col_name, described.data_type, strict=True)) == [("id", "bigint"), ("Score", "float")]
