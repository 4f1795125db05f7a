"""Throughput and memory of PREDICT, as ratios to raw onnxruntime measured in the same run.

    python benchmarks/run.py            # 1M rows for speed, 10M rows for peak RSS
    python benchmarks/run.py --rows 200000 --memory-rows 0

Speed: LogisticRegression and RandomForest (100 trees) on N rows of 10 FLOAT columns, scored
into an aggregate (so result transfer is not measured). "limit" is raw onnxruntime on a
preloaded float32 numpy array (all cores); each number is the best of --repeat runs.
Spark (--spark): the same models on local[2] over the same rows (cached in Spark first):
predictsql PREDICT, a hand-written pandas_udf with a cached session, and
mlflow.pyfunc.spark_udf on the same ONNX model logged to a sqlite-backed MLflow store.
Memory: peak RSS of a fresh process that sums PREDICT scores over M rows, next to the same
query without PREDICT; the difference is what scoring costs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = [f"x{i}" for i in range(10)]


def make_table(con, name: str, rows: int) -> None:
    """N rows of 10 FLOAT columns, generated inside DuckDB; the label depends on a few columns."""
    columns = ", ".join(f"(random() * 2 - 1)::FLOAT AS {c}" for c in FEATURES)
    con.duckdb.sql(f"CREATE OR REPLACE TABLE {name} AS SELECT {columns} FROM range({rows})")


def train(con):
    """LogisticRegression and a 100-tree RandomForest fitted on 20k rows of the same distribution."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import predictsql

    sample = con.duckdb.sql("SELECT * FROM bench LIMIT 20000").df()
    target = (sample.x0 + 0.5 * sample.x1 * sample.x2 - 0.3 * sample.x3 > 0).astype(int)
    models = {
        "LogisticRegression": LogisticRegression().fit(sample, target),
        "RandomForest(100)": RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=-1, random_state=0).fit(sample, target),
    }
    return {name: (est, predictsql.export(est, sample, outputs={"score": "Score"})) for name, est in models.items()}


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def speed(rows: int, repeat: int) -> list[tuple[str, str, float, float]]:
    import onnxruntime as ort

    import predictsql

    results = []
    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", rows)
        models = train(con)
        preloaded = con.duckdb.sql("SELECT * FROM bench").fetchnumpy()
        matrix = np.column_stack([preloaded[c] for c in FEATURES]).astype(np.float32)
        query = "SELECT sum(p.Score) FROM PREDICT(MODEL = @m, DATA = bench AS d) WITH (Score FLOAT) AS p"
        for name, (estimator, onnx_bytes) in models.items():
            session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            limit = best(lambda: session.run(["Score"], {"X": matrix}), repeat)
            ours = best(lambda: con.sql(query, params={"m": onnx_bytes}).fetchall(), repeat)
            pandas = best(lambda: estimator.predict_proba(con.duckdb.sql("SELECT * FROM bench").df())[:, 1].sum(), max(1, repeat - 1))
            for label, seconds in (("raw onnxruntime, preloaded numpy (limit)", limit), ("predictsql PREDICT on DuckDB", ours), ("DuckDB → pandas → scikit-learn", pandas)):
                results.append((name, label, rows / seconds, limit / seconds))
    return results


MEMORY_CHILD = """
import resource, sys, predictsql
con = predictsql.connect(sys.argv[1], read_only=True)
query = {"plain": "SELECT sum(x0) FROM bench", "predict": "SELECT sum(p.Score) FROM PREDICT(MODEL = (SELECT model FROM models), DATA = bench AS d) WITH (Score FLOAT) AS p"}[sys.argv[2]]
con.sql(query).fetchall()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def memory(rows: int) -> tuple[int, int]:
    """Peak RSS (MB) of the plain aggregate and of the PREDICT aggregate over `rows` rows."""
    import predictsql

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "memory.duckdb")
        with predictsql.connect(path) as con:
            make_table(con, "bench", rows)
            _, onnx_bytes = train(con)["LogisticRegression"]
            con.duckdb.sql("CREATE TABLE models (model BLOB)")
            con.duckdb.execute("INSERT INTO models VALUES (?)", [onnx_bytes]).fetchall()
        peaks = [int(subprocess.run([sys.executable, "-c", MEMORY_CHILD, path, kind], check=True, capture_output=True, text=True).stdout) for kind in ("plain", "predict")]
    return peaks[0], peaks[1]


def score_only(onnx_bytes: bytes) -> bytes:
    """The model with Score as its only output (what a one-column spark_udf / pandas_udf returns)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    keep = [o for o in model.graph.output if o.name == "Score"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model.SerializeToString()


_SESSIONS: dict = {}


def cached_session(onnx_bytes: bytes):
    """The pandas_udf baseline's per-worker session cache (what a careful user would write)."""
    import onnxruntime as ort

    if onnx_bytes not in _SESSIONS:
        _SESSIONS[onnx_bytes] = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return _SESSIONS[onnx_bytes]


def spark_speed(rows: int, repeat: int) -> list[tuple[str, str, float, float]]:
    import mlflow
    import onnxruntime as ort
    from pyspark.sql.functions import pandas_udf, struct

    import predictsql
    from predictsql.udfs import spark as ps

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        with predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
            make_table(con, "bench", rows)
            models = train(con)
            parquet = str(Path(tmp) / "bench.parquet")
            con.duckdb.sql(f"COPY bench TO '{parquet}' (FORMAT parquet)")
            preloaded = con.duckdb.sql("SELECT * FROM bench").fetchnumpy()
        matrix = np.column_stack([preloaded[c] for c in FEATURES]).astype(np.float32)
        spark = ps.session("local[2]", **{"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2", "spark.driver.memory": "4g"})
        spark.sparkContext.setLogLevel("OFF")
        bench = spark.read.parquet(parquet).repartition(2).cache()
        bench.count()
        bench.createOrReplaceTempView("bench")
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        args = [bench[c] for c in FEATURES]
        for name, (_, onnx_bytes) in models.items():
            single = score_only(onnx_bytes)
            session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            limit = best(lambda: session.run(["Score"], {"X": matrix}), repeat)

            @pandas_udf("float")
            def by_hand(frame: pd.DataFrame) -> pd.Series:
                X = frame.to_numpy(np.float32)
                return pd.Series(cached_session(single).run(["Score"], {"X": X})[0])

            with mlflow.start_run():
                import onnx

                info = mlflow.onnx.log_model(onnx.load_from_string(single), name="model")
            logged = mlflow.pyfunc.spark_udf(spark, info.model_uri, result_type="float", env_manager="local")
            query = "SELECT sum(p.Score) FROM PREDICT(MODEL = @m, DATA = bench AS d) WITH (Score FLOAT) AS p"
            timings = {
                "predictsql PREDICT on Spark": best(lambda: ps.sql(spark, query, params={"m": onnx_bytes}).collect(), repeat),
                "hand-written pandas_udf, cached session": best(lambda: bench.select(by_hand(struct(*args)).alias("s")).agg({"s": "sum"}).collect(), repeat),
                "mlflow.pyfunc.spark_udf": best(lambda: bench.select(logged(*args).alias("s")).agg({"s": "sum"}).collect(), max(1, repeat - 1)),
            }
            results.append((name, "raw onnxruntime, preloaded numpy (limit)", rows / limit, 1.0))
            results += [(name, label, rows / seconds, limit / seconds) for label, seconds in timings.items()]
        spark.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--spark", action="store_true", help="also measure Spark (local[2])")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, {args.rows:,} rows x 10 FLOAT columns, best of {args.repeat}\n")
    print("| model | path | rows/s | ratio to limit |\n|---|---|---:|---:|")
    for model, path, rate, ratio in speed(args.rows, args.repeat):
        print(f"| {model} | {path} | {rate / 1e6:.2f} M | {ratio:.2f} |")
    if args.spark:
        print("\nSpark local[2]\n\n| model | path | rows/s | ratio to limit |\n|---|---|---:|---:|")
        for model, path, rate, ratio in spark_speed(args.rows, args.repeat):
            print(f"| {model} | {path} | {rate / 1e6:.2f} M | {ratio:.2f} |")
    if args.memory_rows:
        plain, predict = memory(args.memory_rows)
        print(f"\nPeak RSS over {args.memory_rows:,} rows into an aggregate: without PREDICT {plain} MB, "
              f"with PREDICT (LogisticRegression) {predict} MB, difference {predict - plain} MB")


if __name__ == "__main__":
    main()
