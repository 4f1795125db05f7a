"""Run by test_spark.py in its own process: PREDICT on local-cluster[2,1,1024], whose executors are
separate JVMs with their own Python workers, then report what each worker's cache did."""

from __future__ import annotations

import json
import os
import sys

import pandas as pd

from predictsql.udfs import spark as ps


def main(model_path: str, data_path: str) -> None:
    spark = ps.session("local-cluster[2,1,1024]", **{"spark.ui.enabled": "false", "spark.sql.execution.arrow.maxRecordsPerBatch": "50"})
    spark.sparkContext.setLogLevel("OFF")
    spark.createDataFrame(pd.read_parquet(data_path)).repartition(8).createOrReplaceTempView("patients")
    frame = ps.sql(spark, f"SELECT d.id, p.Score FROM PREDICT(MODEL = '{model_path}', DATA = patients AS d) WITH (Score FLOAT) AS p")
    assert frame is not None  # a query: it has rows
    scored = frame.toPandas()

    def report(batches):
        """Runs in the same kind of Python worker as the scoring (SQL Arrow UDFs share a pool)."""
        import pyarrow as pa

        from predictsql.udfs import spark_cache

        for _ in batches:
            yield pa.RecordBatch.from_pylist([{"pid": os.getpid(), **spark_cache.stats}])

    rows = spark.range(0, 8, 1, 8).mapInArrow(report, "pid long, loads long, hits long").collect()
    workers = [row.asDict() for row in rows]
    executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
    print(json.dumps({"driver_pid": os.getpid(), "executors": executors, "workers": workers, "ids": scored.id.tolist(), "scores": scored.Score.tolist()}))
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
