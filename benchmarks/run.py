"""Throughput and memory of PREDICT, as ratios to raw onnxruntime measured in the same run.

    python benchmarks/run.py            # 1M rows for speed, 10M rows for peak RSS
    python benchmarks/run.py --rows 200000 --memory-rows 0
    python benchmarks/run.py --rows 10000000 --only speed --models Logistic --memory-rows 0   # P2 at 10M rows

Speed: LogisticRegression and RandomForest (100 trees) on N rows of 10 FLOAT columns, scored
into an aggregate (so result transfer is not measured). "limit" is raw onnxruntime on a
preloaded float32 numpy array (all cores; its idle threads do not spin); each number is the best of --repeat interleaved
rounds after one untimed warm-up round of every path. PREDICT
runs with its default plan (INLINE for the linear model, STREAM for the forest: the table is
committed and read once) and with every other plan: UDF (an Arrow scalar UDF inside DuckDB's
query), and STREAM for the linear model.
Spark (--spark): the same models on local[2] over the same rows (cached in Spark first):
predictsql PREDICT, a hand-written pandas_udf with a cached session, and
mlflow.pyfunc.spark_udf on the same ONNX model logged to a sqlite-backed MLflow store.
--alternatives adds the ways a PREDICT relation could run on Spark (the Arrow UDF predictsql
uses, at two Arrow batch sizes, mapInArrow and arrow_udtf), on the 10 columns and on 10 more
DATA columns the model does not read; they run in interleaved rounds, best round kept, next
to the CPU seconds of the whole process tree (driver, JVM, Python workers), which a noisy
neighbour inflates less than wall time.
Memory: peak RSS of a fresh process that sums PREDICT scores over M rows (INLINE, STREAM, UDF),
next to the same query without PREDICT; the difference is what scoring costs.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.udtf import UserDefinedTableFunction

    import predictsql

FEATURES = [f"x{i}" for i in range(10)]
LIMIT = "raw onnxruntime, preloaded numpy (limit)"


def make_table(con, name: str, rows: int) -> None:
    """N rows of 10 FLOAT columns, generated inside DuckDB; the label depends on a few columns."""
    columns = ", ".join(f"(random() * 2 - 1)::FLOAT AS {c}" for c in FEATURES)
    con.duckdb.sql(f"CREATE OR REPLACE TABLE {name} AS SELECT {columns} FROM range({rows})")


def preloaded_matrix(con) -> np.ndarray:
    """The bench table's feature columns as one float32 matrix: what raw onnxruntime (the limit) is fed."""
    preloaded = con.duckdb.sql("SELECT * FROM bench").fetchnumpy()
    return np.column_stack([preloaded[c] for c in FEATURES]).astype(np.float32)


def train(con, matrix: bool = False):
    """LogisticRegression and a 100-tree RandomForest fitted on 20k rows of the same distribution; with `matrix`, also
    the speed table's other kinds (scaler + LR, GB 100×d3, HistGradientBoosting, LightGBM 100×31, an MLP 2×64)."""
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import predictsql

    sample = con.duckdb.sql("SELECT * FROM bench LIMIT 20000").df()
    target = (sample.x0 + 0.5 * sample.x1 * sample.x2 - 0.3 * sample.x3 > 0).astype(int)
    kinds = {
        "LogisticRegression": LogisticRegression,
        "RandomForest(100)": lambda: RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=-1, random_state=0),
    }
    if matrix:
        kinds |= {
            "StandardScaler + LogisticRegression": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
            "GradientBoosting 100×d3": lambda: GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0),
            "HistGradientBoosting": lambda: HistGradientBoostingClassifier(random_state=0),
            "LightGBM 100×31": lambda: LGBMClassifier(n_estimators=100, num_leaves=31, verbose=-1, random_state=0),
            "MLP 2×64": lambda: make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=300, random_state=0)),
        }
    models = {name: make().fit(sample, target) for name, make in kinds.items()}
    return {name: (est, predictsql.export(est, sample, outputs={"score": "Score"})) for name, est in models.items()}


def limit_session(onnx_bytes: bytes):
    """The limit: onnxruntime's default session (all cores), except that its idle threads do not spin,
    which would take the CPU from whichever path runs next."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def input_dtype(session) -> type[np.floating]:
    """The numpy type of a session's input X: float32, or float64 for a model that reads DOUBLE."""
    return np.float64 if session.get_inputs()[0].type == "tensor(double)" else np.float32


def fastest(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Each run's best wall time over `repeat` interleaved rounds, after one untimed round that warms
    what every path needs warm (the JVM's JIT, caches), so no path pays for going first."""
    for run in runs.values():
        run()
    times: dict[str, float] = {}
    for _ in range(repeat):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            times[label] = min(times.get(label, float("inf")), time.perf_counter() - start)
    return times


def speed(rows: int, repeat: int, only: str = "") -> list[tuple[str, str, float, float]]:
    """Each model (those whose name contains `only`) under every plan, and the peers, as ratios to the limit."""
    import predictsql

    results = []
    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", rows)
        con.duckdb.execute("ATTACH ':memory:' AS preloaded; CREATE TABLE preloaded.bench AS SELECT * FROM bench")  # uncompressed, as the limit's numpy
        models = {name: model for name, model in train(con, matrix=True).items() if only in name}
        matrix = preloaded_matrix(con)
        runtime_con = predictsql.connect(str(Path(tmp) / "bench.duckdb"), compiled_trees=False)  # the same file, trees in onnxruntime
        for name, (estimator, onnx_bytes) in models.items():
            session = limit_session(onnx_bytes)
            feed = matrix.astype(input_dtype(session), copy=False)  # LightGBM's model reads DOUBLE: converted before the clock
            runs: dict[str, Callable[[], object]] = {LIMIT: partial(session.run, ["Score"], {"X": feed})}
            for plan, label in plans(onnx_bytes, "duckdb"):
                runs[f"predictsql PREDICT on DuckDB, {label}"] = partial(duckdb_rows, con, QUERY.format(plan=plan), onnx_bytes)
            default = plans(onnx_bytes, "duckdb")[0][1]
            runs[f"predictsql PREDICT on DuckDB, {default}, an in-memory table"] = partial(duckdb_rows, con, QUERY.format(plan="AUTO").replace("bench AS d", "preloaded.bench AS d"), onnx_bytes)
            if compiles(onnx_bytes):
                runs[f"predictsql PREDICT on DuckDB, PLAN = STREAM, {ORT_TREES}"] = partial(duckdb_rows, runtime_con, QUERY.format(plan="STREAM"), onnx_bytes)
            runs["DuckDB → pandas → scikit-learn"] = partial(lambda est: est.predict_proba(con.duckdb.sql("SELECT * FROM bench").df())[:, 1].sum(), estimator)
            runs["scikit-learn on preloaded numpy"] = partial(lambda est, frame: est.predict_proba(frame)[:, 1].sum(), estimator, pd.DataFrame(matrix, columns=FEATURES))
            runs["naive DuckDB Arrow UDF calling onnxruntime"] = naive_udf(con, onnx_bytes)
            timings = fastest(runs, repeat)
            limit = timings[LIMIT]
            results += [(name, label, rows / seconds, limit / seconds) for label, seconds in timings.items()]
        runtime_con.close()
    return results


ORT_TREES = "trees in onnxruntime (compiled_trees = False)"


def compiles(onnx_bytes: bytes) -> bool:
    """Whether the model's trees are scored by compiled code (engine/forest.py)."""
    from predictsql.engine import forest, sessions
    from predictsql.engine.sources import resolve

    return isinstance(sessions.load(resolve(onnx_bytes, "bench")).runner, forest.ForestRunner)


def naive_udf(con, onnx_bytes: bytes) -> Callable[[], object]:
    """What a user writes without predictsql: an Arrow scalar UDF over the feature columns calling one shared session
    (all cores), summed by DuckDB."""
    import duckdb

    session = limit_session(onnx_bytes)

    def score(*columns: Any) -> Any:
        matrix = np.column_stack([c.to_numpy(zero_copy_only=False) for c in columns]).astype(input_dtype(session))
        return pa.array(session.run(["Score"], {"X": matrix})[0].ravel())

    score.__signature__ = inspect.Signature([inspect.Parameter(c, inspect.Parameter.POSITIONAL_ONLY) for c in FEATURES])  # type: ignore[attr-defined]  # DuckDB counts the parameters

    name = f"naive_{hashlib.sha256(onnx_bytes).hexdigest()[:8]}"
    con.duckdb.create_function(name, score, [duckdb.sqltype("FLOAT")] * len(FEATURES), duckdb.sqltype("FLOAT"), type="arrow")
    return partial(lambda: con.duckdb.sql(f"SELECT sum({name}({', '.join(FEATURES)})) FROM bench").fetchall())


DUCKDB_TABLES = ("speed", "queries", "pushdown", "per_column", "one_hot", "projection", "latency", "trees")
QUERY = "SELECT sum(p.Score) FROM PREDICT(MODEL = @m, DATA = bench AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"


def per_column(rows: int, repeat: int) -> list[tuple[str, float, float]]:
    """P2 on the Synapse form: a scaler + logistic regression whose pipeline takes one [N,1] input per column
    (a ColumnTransformer; skl2onnx joins them with Concat), each plan as a ratio to raw onnxruntime fed per column."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import predictsql

    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", rows)
        sample = con.duckdb.sql("SELECT * FROM bench LIMIT 20000").df()
        target = (sample.x0 + 0.5 * sample.x1 - 0.3 * sample.x3 > 0).astype(int)
        pipeline = make_pipeline(ColumnTransformer([("scaled", StandardScaler(), FEATURES)]), LogisticRegression()).fit(sample, target)
        onnx_bytes = predictsql.export(pipeline, sample, outputs={"score": "Score"})
        preloaded = con.duckdb.sql("SELECT * FROM bench").fetchnumpy()
        feeds = {c: preloaded[c].astype(np.float32).reshape(-1, 1) for c in FEATURES}
        runs: dict[str, Callable[[], object]] = {LIMIT: partial(limit_session(onnx_bytes).run, ["Score"], feeds)}
        for plan, label in plans(onnx_bytes, "duckdb"):
            runs[f"predictsql PREDICT on DuckDB, {label}"] = partial(duckdb_rows, con, QUERY.format(plan=plan), onnx_bytes)
        timings = fastest(runs, repeat)
    return [(label, rows / seconds, timings[LIMIT] / seconds) for label, seconds in timings.items()]


def one_hot(rows: int, repeat: int) -> list[tuple[str, float, float]]:
    """The one-hot pipeline (scaled FLOAT columns and a one-hot text column, then LogisticRegression; one named [N,1]
    input per column), each plan as a ratio to raw onnxruntime fed the same columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import predictsql

    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "numbers", rows)
        con.duckdb.sql("CREATE TABLE bench AS SELECT *, CASE WHEN x4 < -0.5 THEN 'low' WHEN x4 < 0.5 THEN 'mid' ELSE 'high' END AS band FROM numbers")
        sample = con.duckdb.sql("SELECT * FROM bench LIMIT 20000").df()
        target = (sample.x0 + 0.5 * sample.x1 - 0.3 * (sample.band == "high") > 0).astype(int)
        encode = ColumnTransformer([("scaled", StandardScaler(), FEATURES), ("bands", OneHotEncoder(handle_unknown="ignore"), ["band"])])
        onnx_bytes = predictsql.export(make_pipeline(encode, LogisticRegression()).fit(sample, target), sample, outputs={"score": "Score"})
        preloaded = con.duckdb.sql("SELECT * FROM bench").fetchnumpy()
        feeds = {c: preloaded[c].astype(np.float32).reshape(-1, 1) for c in FEATURES} | {"band": preloaded["band"].astype(object).reshape(-1, 1)}
        runs: dict[str, Callable[[], object]] = {LIMIT: partial(limit_session(onnx_bytes).run, ["Score"], feeds)}
        for plan, label in plans(onnx_bytes, "duckdb"):
            runs[f"predictsql PREDICT on DuckDB, {label}"] = partial(duckdb_rows, con, QUERY.format(plan=plan), onnx_bytes)
        timings = fastest(runs, repeat)
    return [(label, rows / seconds, timings[LIMIT] / seconds) for label, seconds in timings.items()]


def projection(rows: int, repeat: int) -> list[tuple[str, float]]:
    """The forest reading its 10 columns of a 200-column table, as a slow-down over the same query on the 10-column
    table (the STREAM plan carries only the columns the statement reads)."""
    import predictsql

    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", rows)
        onnx_bytes = train(con)["RandomForest(100)"][1]
        extra = ", ".join(f"(random())::FLOAT AS w{i}" for i in range(190))
        con.duckdb.sql(f"CREATE TABLE wide AS SELECT *, {extra} FROM bench")
        query = "SELECT sum(p.Score) FROM PREDICT(MODEL = @m, DATA = {table} AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"
        results = []
        for plan in ("STREAM", "UDF"):
            runs: dict[str, Callable[[], object]] = {t: partial(duckdb_rows, con, query.format(table=t, plan=plan), onnx_bytes) for t in ("bench", "wide")}
            timings = fastest(runs, repeat)
            results.append((plan, timings["wide"] / timings["bench"]))
    return results


PUSHDOWN_PLANS = {"RandomForest(100)": ("STREAM", "UDF"), "LogisticRegression": ("INLINE", "UDF")}


def pushdown(rows: int, repeat: int) -> list[tuple[str, str, str, str, float]]:
    """P4: the forest and the linear model under a WHERE keeping 1%, 10% or 50% of the rows, per plan, as a speed-up
    over the same plan without it: on x0, which the model reads (pushed below PREDICT; the forest's trees pruned by
    it), on z, a column the model ignores (pushed, nothing to prune: what pushdown alone gives), and on p.x0 (not pushed)."""
    import predictsql

    results = []
    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", rows)
        models = train(con)
        con.duckdb.sql("CREATE TABLE bench_z AS SELECT *, (random() * 2 - 1)::FLOAT AS z FROM bench")
        query = QUERY.replace("bench AS d", "bench_z AS d")
        for name, model_plans in PUSHDOWN_PLANS.items():
            for plan in model_plans:
                for share, cut in (("1%", 0.98), ("10%", 0.8), ("50%", 0.0)):
                    filters = {"no WHERE": "", "d.x0 (pushed)": f" WHERE d.x0 > {cut}", "d.z (pushed, the model ignores z)": f" WHERE d.z > {cut}"}
                    filters["p.x0 (not pushed)"] = f" WHERE p.x0 > {cut}"
                    runs: dict[str, Callable[[], object]] = {label: partial(duckdb_rows, con, query.format(plan=plan) + where, models[name][1]) for label, where in filters.items()}
                    timings = fastest(runs, repeat)
                    results += [(name, plan, share, label, timings["no WHERE"] / seconds) for label, seconds in timings.items() if label != "no WHERE"]
    return results


def queries(rows: int, repeat: int) -> list[tuple[str, str, float]]:
    """The matrix's query shapes, each as raw onnxruntime's time for the rows it scores over the query's time: score +
    aggregate, CREATE TABLE AS, and two PREDICTs (LogisticRegression and the forest) joined on id."""
    import predictsql

    results = []
    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", rows)
        models = train(con)
        con.duckdb.sql("CREATE TABLE keyed AS SELECT row_number() OVER () AS id, * FROM bench")
        matrix = preloaded_matrix(con)
        limits = {name: fastest({LIMIT: partial(limit_session(b).run, ["Score"], {"X": matrix})}, repeat)[LIMIT] for name, (_, b) in models.items()}
        ctas = "CREATE OR REPLACE TABLE scored AS SELECT d.*, p.Score FROM PREDICT(MODEL = @m, DATA = bench AS d) WITH (Score FLOAT) AS p"
        for name, (_, onnx_bytes) in models.items():
            runs: dict[str, Callable[[], object]] = {"score + aggregate": partial(duckdb_rows, con, QUERY.format(plan="AUTO"), onnx_bytes)}
            runs["CREATE TABLE AS"] = partial(con.sql, ctas, {"m": onnx_bytes})
            runs["CREATE TABLE AS of DATA alone, no PREDICT (the write's own cost)"] = partial(con.duckdb.sql, "CREATE OR REPLACE TABLE copied AS SELECT * FROM bench")
            results += [(name, label, limits[name] / seconds) for label, seconds in fastest(runs, repeat).items()]
        join = (
            "SELECT count(*), sum(p.Score), sum(q.Score) FROM PREDICT(MODEL = @a, DATA = keyed AS d) WITH (Score FLOAT) AS p "
            "JOIN PREDICT(MODEL = @b, DATA = keyed AS e) WITH (Score FLOAT) AS q ON d.id = e.id"
        )
        (lr, rf) = (models[n][1] for n in ("LogisticRegression", "RandomForest(100)"))
        seconds = fastest({"join": partial(con.sql, join, {"a": lr, "b": rf})}, repeat)["join"]
        results.append(("LogisticRegression and RandomForest(100)", "two PREDICTs joined on id", sum(limits.values()) / seconds))
    return results


def tree_plans(rows: int, repeat: int) -> list[tuple[str, int, int, float, float, float, float]]:
    """The cost rule for INLINE trees: tree ensembles of growing size under INLINE (nested CASEs DuckDB computes) and
    STREAM (compiled trees, and trees in onnxruntime), as ratios to raw onnxruntime; INLINE's size limit is lifted here
    to measure past it."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    import predictsql
    from predictsql.engine import inline

    inline.MAX_TREE_NODES, inline.MAX_TREE_DEPTH = 10**9, 10**9
    results = []
    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", rows)
        sample = con.duckdb.sql("SELECT * FROM bench LIMIT 20000").df()
        target = (sample.x0 + 0.5 * sample.x1 * sample.x2 - 0.3 * sample.x3 > 0).astype(int)
        models = {
            "DecisionTree d4": DecisionTreeClassifier(max_depth=4, random_state=0),
            "DecisionTree d6": DecisionTreeClassifier(max_depth=6, random_state=0),
            "DecisionTree d8": DecisionTreeClassifier(max_depth=8, random_state=0),
            "GradientBoosting 10×d3": GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0),
            "GradientBoosting 20×d3": GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0),
            "GradientBoosting 30×d3": GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0),
            "GradientBoosting 100×d3": GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0),
            "RandomForest 10×d6": RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0),
        }
        matrix = preloaded_matrix(con)
        runtime_con = predictsql.connect(str(Path(tmp) / "bench.duckdb"), compiled_trees=False)
        for name, estimator in models.items():
            onnx_bytes = predictsql.export(estimator.fit(sample, target), sample, outputs={"score": "Score"})
            size = sum(t.tree_.node_count for t in np.ravel(getattr(estimator, "estimators_", [estimator])))
            depth = max(t.tree_.max_depth for t in np.ravel(getattr(estimator, "estimators_", [estimator])))
            runs: dict[str, Callable[[], object]] = {LIMIT: partial(limit_session(onnx_bytes).run, ["Score"], {"X": matrix})}
            for plan in ("INLINE", "STREAM"):
                runs[plan] = partial(duckdb_rows, con, QUERY.format(plan=plan), onnx_bytes)
            runs[ORT_TREES] = partial(duckdb_rows, runtime_con, QUERY.format(plan="STREAM"), onnx_bytes)
            timings = fastest(runs, repeat)
            limit = timings[LIMIT]
            results.append((name, size, depth, limit / timings["INLINE"], limit / timings["STREAM"], limit / timings[ORT_TREES], timings["STREAM"] / timings["INLINE"]))
        runtime_con.close()
    return results


def latency(repeat: int) -> list[tuple[str, str, int, float, float]]:
    """P5: a warm PREDICT of 1 to 50,000 rows picked by id, per model and plan, next to the plain DuckDB query of the
    same rows (median of 20 × repeat runs, after 5 warm-up runs): per-query overhead, which kept plans must cut, and
    where AUTO's kept UDF for small DATA (up to SMALL_DATA_ROWS) stops paying."""
    import predictsql
    from predictsql.engine.errors import PredictSQLError

    results = []
    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", 100_000)
        models = train(con)
        con.duckdb.sql("CREATE TABLE keyed AS SELECT row_number() OVER () AS id, * FROM bench")
        for name, (_, onnx_bytes) in models.items():
            for plan in ("AUTO", "INLINE", "UDF", "STREAM"):
                for rows in (1, 100, 1000, 5_000, 10_000, 50_000):
                    where = f"id <= {rows}"
                    query = f"SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM keyed WHERE {where}) AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"
                    try:
                        (bound,) = con.explain(query, params={"m": onnx_bytes}).statements[0][2]
                    except PredictSQLError:  # PLAN = INLINE of a model with no SQL form
                        break
                    label = f"AUTO: {bound.kind}" if plan == "AUTO" else f"PLAN = {plan}"
                    scored = _median(partial(duckdb_rows, con, query, onnx_bytes), (20 if rows <= 1000 else 4) * repeat)
                    plain = _median(partial(lambda w: con.duckdb.sql(f"SELECT * FROM keyed WHERE {w}").fetchall(), where), 20 * repeat)
                    results.append((name, label, rows, scored * 1000, scored / plain))
    return results


def _median(run: Callable[[], object], times: int) -> float:
    for _ in range(5):
        run()
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        spent.append(time.perf_counter() - start)
    return float(np.median(spent))


def duckdb_rows(con: predictsql.Connection, query: str, onnx_bytes: bytes) -> list[tuple]:
    """The rows of a PREDICT query with the model as @m."""
    result = con.sql(query, params={"m": onnx_bytes})
    assert result is not None  # a query returns rows
    return result.fetchall()


def spark_rows(spark: SparkSession, query: str, onnx_bytes: bytes, compiled_trees: bool = True) -> list[Any]:
    """The rows of a PREDICT query with the model as @m, on Spark."""
    from predictsql.udfs import spark as ps

    frame = ps.sql(spark, query, params={"m": onnx_bytes}, compiled_trees=compiled_trees)
    assert frame is not None  # a query returns a DataFrame
    return frame.collect()


def plans(onnx_bytes: bytes, engine: str) -> list[tuple[str, str]]:
    """(PLAN option, label) to measure: the default (AUTO), then every other plan the engine has for the model."""
    from predictsql.engine import sessions
    from predictsql.engine.sources import resolve

    scoring = ("STREAM", "UDF") if engine == "duckdb" else ("UDF",)  # AUTO's choice first: a committed table streams on DuckDB
    default, *others = ("INLINE", *scoring) if sessions.load(resolve(onnx_bytes, "bench")).inline is not None else scoring
    return [("AUTO", f"{default} plan (default)")] + [(plan, f"PLAN = {plan}") for plan in others]


MEMORY_CHILD = """
import resource, sys, predictsql
con = predictsql.connect(sys.argv[1], read_only=True)
con.duckdb.sql("SET enable_progress_bar = false")  # its bar would print on stdout, which carries the result
predict = "SELECT sum(p.Score) FROM PREDICT(MODEL = (SELECT model FROM models), DATA = bench AS d, PLAN = {}) WITH (Score FLOAT) AS p"
query = "SELECT sum(x0) FROM bench" if sys.argv[2] == "plain" else predict.format(sys.argv[2])
con.sql(query).fetchall()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


MEMORY_PLANS = ("INLINE", "STREAM", "UDF")


def memory(rows: int) -> list[int]:
    """Peak RSS (MB) of the plain aggregate and of the PREDICT aggregate (INLINE, STREAM, UDF) over `rows` rows."""
    import predictsql

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "memory.duckdb")
        with predictsql.connect(path) as con:
            make_table(con, "bench", rows)
            _, onnx_bytes = train(con)["LogisticRegression"]
            con.duckdb.sql("CREATE TABLE models (model BLOB)")
            con.duckdb.execute("INSERT INTO models VALUES (?)", [onnx_bytes]).fetchall()
        return [int(subprocess.run([sys.executable, "-c", MEMORY_CHILD, path, kind], check=True, capture_output=True, text=True).stdout) for kind in ("plain", *MEMORY_PLANS)]


def score_only(onnx_bytes: bytes) -> bytes:
    """The model with Score as its only output (what a one-column spark_udf / pandas_udf returns)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    keep = [o for o in model.graph.output if o.name == "Score"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model.SerializeToString()


_SESSIONS: dict[bytes, Any] = {}


def cached_session(onnx_bytes: bytes):
    """The pandas_udf baseline's per-worker session cache (what a careful user would write)."""
    import onnxruntime as ort

    if onnx_bytes not in _SESSIONS:
        _SESSIONS[onnx_bytes] = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return _SESSIONS[onnx_bytes]


def hand_written_udf(onnx_bytes: bytes) -> Any:
    """The pandas_udf baseline: Score of a struct of the feature columns, from the per-worker cached session."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("float")  # type: ignore[call-overload]  # pyspark's stubs lack the form that reads the type hints
    def by_hand(frame: pd.DataFrame) -> pd.Series:
        X = frame.to_numpy(np.float32)
        return pd.Series(cached_session(onnx_bytes).run(["Score"], {"X": X})[0])

    return by_hand


def cpu_seconds() -> float:
    """CPU time of this process and all its descendants (Linux /proc; reaped children included)."""
    stats = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        stats[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))  # ppid; utime, stime, cutime, cstime
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [os.getpid()]
    while stack:
        pid = stack.pop()
        total += stats.get(pid, (0, 0))[1]
        stack += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def map_in_arrow(model, sha256: str, batches):
    """The PREDICT relation before the Arrow UDF: every DATA column to Python and back, Score appended."""
    from predictsql.engine.binding import OutputRequest
    from predictsql.engine.sessions import SessionOptions
    from predictsql.udfs import spark_cache

    scorer = None
    for index, batch in enumerate(batches):
        scorer = scorer or spark_cache.scorer(model, sha256, "@m", batch.schema, [OutputRequest("Score", "FLOAT")], "ERROR", SessionOptions())
        yield scorer.score(batch, index)


def spark_alternatives(spark, frames: dict, onnx_bytes: bytes, limit: float, rows: int, repeat: int) -> list[tuple[str, str, float, float, float]]:
    """(data, path, rows/s, ratio to limit, CPU s) of each way to run a PREDICT relation, in interleaved rounds."""

    import pyarrow as pa
    from pyspark.sql.functions import arrow_udtf
    from pyspark.sql.types import FloatType, StructField, StructType

    from predictsql.udfs import spark as ps

    model, sha256 = spark.sparkContext.broadcast(onnx_bytes), hashlib.sha256(onnx_bytes).hexdigest()
    query = "SELECT sum(p.Score) FROM PREDICT(MODEL = @m, DATA = {} AS d, PLAN = UDF) WITH (Score FLOAT) AS p"
    runs = {}
    for data, frame in frames.items():
        schema = StructType([*frame.schema.fields, StructField("Score", FloatType())])
        for batch in (10_000, 65_536):
            runs[(data, f"predictsql PREDICT (Arrow UDF), {batch:,}-row batches")] = (batch, partial(spark_rows, spark, query.format(data), onnx_bytes))
        runs[(data, "mapInArrow, 10,000-row batches")] = (10_000, partial(lambda f, s: f.mapInArrow(partial(map_in_arrow, model, sha256), s).agg({"Score": "sum"}).collect(), frame, schema))

        class Scored:
            def eval(self, batch: pa.RecordBatch):
                yield pa.table(next(map_in_arrow(model, sha256, iter([batch]))))

        # given the class, arrow_udtf returns the UDTF (its annotation also admits the decorator it returns without one)
        spark.udtf.register(f"scored_{data}", cast("UserDefinedTableFunction", arrow_udtf(Scored, returnType=schema)))
        runs[(data, "arrow_udtf over TABLE(DATA), 10,000-row batches")] = (10_000, partial(lambda q: spark.sql(q).collect(), f"SELECT sum(Score) FROM scored_{data}(TABLE({data}))"))
    best: dict[tuple[str, str], tuple[float, float]] = {}
    session_batch = spark.conf.get(ps.ARROW_BATCH_ROWS)
    for _ in range(repeat):
        for key, (batch, run) in runs.items():
            spark.conf.set(ps.ARROW_BATCH_ROWS, str(batch))
            cpu, start = cpu_seconds(), time.perf_counter()
            run()
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
            best[key] = min(best.get(key, (seconds, cpu)), (seconds, cpu))
    spark.conf.set(ps.ARROW_BATCH_ROWS, session_batch)
    return [(data, path, rows / seconds, limit / seconds, cpu) for (data, path), (seconds, cpu) in best.items()]


def spark_speed(rows: int, repeat: int, alternatives: bool = False) -> tuple[list[tuple[str, str, float, float, float]], list[tuple[str, str, str, float, float, float]]]:
    import mlflow
    from pyspark.sql.functions import struct

    import predictsql
    from predictsql.udfs import spark as ps

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        with predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
            make_table(con, "bench", rows)
            models = train(con)
            parquet = str(Path(tmp) / "bench.parquet")
            con.duckdb.sql(f"COPY bench TO '{parquet}' (FORMAT parquet)")
            matrix = preloaded_matrix(con)
        spark = ps.session("local[2]", **{"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2", "spark.driver.memory": "4g"})
        spark.sparkContext.setLogLevel("OFF")
        bench = spark.read.parquet(parquet).repartition(2).cache()
        bench.count()
        bench.createOrReplaceTempView("bench")
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", artifact_location=f"{tmp}/artifacts"))  # not ./mlruns
        args = [bench[c] for c in FEATURES]
        frames = {"bench": bench}
        if alternatives:
            from pyspark.sql.functions import rand

            frames["bench_wide"] = bench.select("*", *(rand(i).alias(f"extra{i}") for i in range(10))).cache()
            frames["bench_wide"].count()
            frames["bench_wide"].createOrReplaceTempView("bench_wide")
        extra = []
        for name, (_, onnx_bytes) in models.items():
            single = score_only(onnx_bytes)
            session = limit_session(onnx_bytes)
            by_hand = hand_written_udf(single)

            with mlflow.start_run():
                import onnx

                info = mlflow.onnx.log_model(onnx.load_from_string(single), name="model")
            logged = mlflow.pyfunc.spark_udf(spark, info.model_uri, result_type="float", env_manager="local")
            runs: dict[str, Callable[[], object]] = {LIMIT: partial(session.run, ["Score"], {"X": matrix})}
            for plan, label in plans(onnx_bytes, "spark"):
                runs[f"predictsql PREDICT on Spark, {label}"] = partial(spark_rows, spark, QUERY.format(plan=plan), onnx_bytes)
            if compiles(onnx_bytes):
                runs[f"predictsql PREDICT on Spark, PLAN = UDF, {ORT_TREES}"] = partial(spark_rows, spark, QUERY.format(plan="UDF"), onnx_bytes, False)
            runs["hand-written pandas_udf, cached session"] = partial(lambda udf: bench.select(udf(struct(*args)).alias("s")).agg({"s": "sum"}).collect(), by_hand)
            runs["mlflow.pyfunc.spark_udf"] = partial(lambda udf: bench.select(udf(*args).alias("s")).agg({"s": "sum"}).collect(), logged)
            timings = fastest(runs, repeat)
            limit, mlflow_seconds = timings[LIMIT], timings["mlflow.pyfunc.spark_udf"]
            results += [(name, label, rows / seconds, limit / seconds, mlflow_seconds / seconds) for label, seconds in timings.items()]
            if alternatives:
                extra += [(name, *row) for row in spark_alternatives(spark, frames, onnx_bytes, limit, rows, repeat)]
        spark.stop()
    return results, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--spark", action="store_true", help="also measure Spark (local[2])")
    parser.add_argument("--alternatives", action="store_true", help="with --spark: also the ways a PREDICT relation could run on Spark")
    parser.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB tables")
    parser.add_argument("--models", default="", help="speed: only the models whose name contains this")
    parser.add_argument("--only", default=",".join(DUCKDB_TABLES), help=f"the DuckDB tables to measure, of {','.join(DUCKDB_TABLES)}")
    args = parser.parse_args()
    tables = set() if args.no_duckdb else set(args.only.split(","))
    print(f"{os.cpu_count()} cores, {args.rows:,} rows x 10 FLOAT columns, best of {args.repeat}\n")
    if "speed" in tables:
        print("| model | path | rows/s | ratio to limit |\n|---|---|---:|---:|")
        for model, path, rate, ratio in speed(args.rows, args.repeat, args.models):
            print(f"| {model} | {path} | {rate / 1e6:.2f} M | {ratio:.2f} |")
    if "queries" in tables:
        print("\nQuery shapes (default plans): raw onnxruntime's time for the rows scored ÷ the query's time\n")
        print("| model | query | ratio to limit |\n|---|---|---:|")
        for model, label, ratio in queries(args.rows, args.repeat):
            print(f"| {model} | {label} | {ratio:.2f} |")
    if "pushdown" in tables:
        print("\nP4: a WHERE x > c keeping a share of the rows (speed-up over the same plan without it)\n")
        print("| model | plan | rows kept | WHERE on | × faster |\n|---|---|---|---|---:|")
        for model, plan, share, label, factor in pushdown(args.rows, args.repeat):
            print(f"| {model} | {plan} | {share} | {label} | {factor:.2f} |")
    if "per_column" in tables:
        print(f"\nP2, per-column model (scaler + LogisticRegression, one [N,1] input per column), {args.rows * 5:,} rows\n")
        print("| path | rows/s | ratio to limit |\n|---|---:|---:|")
        for label, rate, ratio in per_column(args.rows * 5, args.repeat):
            print(f"| {label} | {rate / 1e6:.2f} M | {ratio:.2f} |")
    if "one_hot" in tables:
        print(f"\nOne-hot pipeline (scaler on 10 FLOAT columns, one-hot of a text column, LogisticRegression), {args.rows:,} rows\n")
        print("| path | rows/s | ratio to limit |\n|---|---:|---:|")
        for label, rate, ratio in one_hot(args.rows, args.repeat):
            print(f"| {label} | {rate / 1e6:.2f} M | {ratio:.2f} |")
    if "projection" in tables:
        print("\nProjection: RandomForest reading 10 of a table's 200 columns (× slower than on the 10-column table)\n")
        print("| plan | × slower |\n|---|---:|")
        for plan, factor in projection(args.rows, args.repeat):
            print(f"| {plan} | {factor:.2f} |")
    if "trees" in tables:
        print("\nINLINE trees: nested CASEs in DuckDB vs onnxruntime, by ensemble size (the cost rule)\n")
        print("| model | nodes | depth | INLINE / limit | STREAM / limit | STREAM, trees in onnxruntime / limit | INLINE / STREAM |\n|---|---:|---:|---:|---:|---:|---:|")
        for name, size, depth, inline_ratio, stream_ratio, runtime_ratio, versus in tree_plans(args.rows, args.repeat):
            print(f"| {name} | {size:,} | {depth} | {inline_ratio:.2f} | {stream_ratio:.2f} | {runtime_ratio:.2f} | {versus:.2f} |")
    if "latency" in tables:
        print("\nP5: warm PREDICT latency of a few rows picked by id (median), × the plain DuckDB query of those rows\n")
        print("| model | path | rows | ms | × plain query |\n|---|---|---:|---:|---:|")
        for model, path, rows, ms, factor in latency(args.repeat):
            print(f"| {model} | {path} | {rows} | {ms:.1f} | {factor:.1f} |")
    if args.spark:
        results, alternatives = spark_speed(args.rows, args.repeat, args.alternatives)
        print("\nSpark local[2]\n\n| model | path | rows/s | ratio to limit | × mlflow spark_udf |\n|---|---|---:|---:|---:|")
        for model, path, rate, ratio, vs_mlflow in results:
            print(f"| {model} | {path} | {rate / 1e6:.2f} M | {ratio:.2f} | {vs_mlflow:.1f}× |")
        if alternatives:
            print("\nPREDICT relation alternatives (bench_wide: 10 more DATA columns the model does not read)\n")
            print("| model | DATA | path | rows/s | ratio to limit | CPU s |\n|---|---|---|---:|---:|---:|")
            for model, data, path, rate, ratio, cpu in alternatives:
                print(f"| {model} | {data} | {path} | {rate / 1e6:.2f} M | {ratio:.2f} | {cpu:.2f} |")
    if args.memory_rows:
        plain, *planned = memory(args.memory_rows)
        each = ", ".join(f"{plan} {mb} MB (+{mb - plain})" for plan, mb in zip(MEMORY_PLANS, planned, strict=True))
        print(f"\nPeak RSS over {args.memory_rows:,} rows into an aggregate: without PREDICT {plain} MB; with PREDICT (LogisticRegression) {each}")


if __name__ == "__main__":
    main()
