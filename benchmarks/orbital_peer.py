"""Peer benchmark: posit-dev's orbital (scikit-learn pipeline → SQL) against PREDICT and raw onnxruntime, on one DuckDB table.

orbital 0.6 pins onnx<1.23, so the pipelines are fitted and compiled in a venv of their own, and measured here:

    python3 -m venv /tmp/orbital-venv && /tmp/orbital-venv/bin/pip install orbital scikit-learn skl2onnx onnxruntime pyarrow numpy pandas
    /tmp/orbital-venv/bin/python benchmarks/orbital_peer.py emit --out /tmp/orbital-out
    .venv/bin/python benchmarks/orbital_peer.py measure --dir /tmp/orbital-out --rows 2000000 --repeat 3

emit writes, per pipeline, <name>.sql (orbital's DuckDB SQL over `bench`, only the prediction column), <name>.onnx
(skl2onnx, one [N,10] input X) and models.json / versions.json. measure times, best of --repeat interleaved rounds
(run.py's `fastest`): raw onnxruntime on a preloaded float32 matrix (the limit), `SELECT sum(col) FROM (<orbital SQL>)`
and PREDICT with its default plan, and checks that the three sums agree.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from run import FEATURES, LIMIT, duckdb_rows, fastest, limit_session, make_table, preloaded_matrix  # run.py sits next to this script (sys.path[0])

PREDICT = "SELECT sum(p.Score) FROM PREDICT(MODEL = @m, DATA = bench AS d) WITH (Score FLOAT) AS p"
PEERS = {"LinearRegression + StandardScaler": "linear", "LogisticRegression": "logistic", "GradientBoostingRegressor 100×d3": "gbr"}


def pipelines() -> dict[str, Any]:
    """The issue's peers, each a fitted sklearn Pipeline, on 20,000 deterministic rows of the benchmark's distribution."""
    import pandas as pd
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X = pd.DataFrame(np.random.default_rng(0).uniform(-1, 1, (20_000, 10)).astype(np.float32), columns=FEATURES)
    label = (X.x0 + 0.5 * X.x1 * X.x2 - 0.3 * X.x3 > 0).astype(int)
    value = X.x0 + 0.5 * X.x1 - 0.3 * X.x3
    return {
        "linear": Pipeline([("scale", StandardScaler()), ("model", LinearRegression())]).fit(X, value),
        "logistic": Pipeline([("model", LogisticRegression())]).fit(X, label),
        "gbr": Pipeline([("model", GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0))]).fit(X, value),
    }


def only_column(sql: str, classifier: bool) -> tuple[str, str]:
    """orbital's SQL reduced to its prediction column (P(class 1) or the regressor's value), and that column's name."""
    import sqlglot

    tree = sqlglot.parse_one(sql, dialect="duckdb")
    names = [e.alias_or_name for e in tree.expressions]
    column = next(n for n in names if n == "output_probability.1") if classifier else next(n for n in names if n.startswith("variable"))
    tree.set("expressions", [e for e in tree.expressions if e.alias_or_name == column])
    return tree.sql(dialect="duckdb"), column


def emit(out: Path) -> None:
    """Fit the pipelines and write each one's orbital SQL and skl2onnx ONNX, with the versions used (orbital's venv)."""
    import orbital  # type: ignore[import-not-found]  # only in its own venv (module docstring)
    import orbital.types  # type: ignore[import-not-found]
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    out.mkdir(parents=True, exist_ok=True)
    models = {}
    for name, pipeline in pipelines().items():
        classifier = hasattr(pipeline, "predict_proba")
        parsed = orbital.parse_pipeline(pipeline, features={c: orbital.types.FloatColumnType() for c in FEATURES})
        sql, column = only_column(orbital.export_sql("bench", parsed, dialect="duckdb"), classifier)
        (out / f"{name}.sql").write_text(sql)
        options = {id(pipeline.steps[-1][1]): {"zipmap": False}} if classifier else None
        onnx_model = to_onnx(pipeline, initial_types=[("X", FloatTensorType([None, 10]))], options=options)
        (out / f"{name}.onnx").write_bytes(onnx_model.SerializeToString())
        models[name] = {"column": column, "onnx_outputs": [o.name for o in onnx_model.graph.output]}
        print(f"{name}: {len(sql) / 1024:.1f} KB of SQL, column {column!r}, ONNX outputs {models[name]['onnx_outputs']}")
    (out / "models.json").write_text(json.dumps(models, indent=2))
    (out / "versions.json").write_text(json.dumps(versions("orbital", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "ibis-framework", "sqlglot", "numpy", "pandas", "pyarrow"), indent=2))


def versions(*packages: str) -> dict[str, str]:
    """Python's and each installed package's version."""
    return {"python": platform.python_version(), **{p: importlib.metadata.version(p) for p in packages}}


def relative(a: float, b: float) -> float:
    """|a - b| relative to |b|."""
    return abs(a - b) / max(abs(b), 1e-300)


def measure(folder: Path, rows: int, repeat: int) -> None:
    """Time raw onnxruntime, orbital's SQL and PREDICT on one table, and print the table, plans and agreement (project's venv)."""
    import predictsql

    models = json.loads((folder / "models.json").read_text())
    print(f"{os.cpu_count()} cores, {rows:,} rows x 10 FLOAT columns, best of {repeat}")
    print(f"emit: {json.loads((folder / 'versions.json').read_text())}")
    print(f"measure: {versions('predictsql', 'duckdb', 'onnxruntime', 'onnx', 'numpy')}\n")
    table: list[tuple[str, str, float, float]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, predictsql.connect(str(Path(tmp) / "bench.duckdb")) as con:
        make_table(con, "bench", rows)
        matrix = preloaded_matrix(con)
        for label, name in PEERS.items():
            sql, column = (folder / f"{name}.sql").read_text(), models[name]["column"]
            onnx_bytes = predictsql.export((folder / f"{name}.onnx").read_bytes(), columns=FEATURES, outputs={"score": "Score"})  # X → x0..x9, Score
            session = limit_session(onnx_bytes)
            orbital_query = f'SELECT sum("{column}") FROM ({sql})'
            runs: dict[str, Callable[[], object]] = {
                LIMIT: partial(session.run, ["Score"], {"X": matrix}),
                "orbital SQL on DuckDB": partial(lambda q: con.duckdb.sql(q).fetchall(), orbital_query),
                "predictsql PREDICT on DuckDB (default plan)": partial(duckdb_rows, con, PREDICT, onnx_bytes),
            }
            timings = fastest(runs, repeat)
            table += [(label, path, rows / seconds, timings[LIMIT] / seconds) for path, seconds in timings.items()]
            plan = con.explain(PREDICT, params={"m": onnx_bytes}).statements[0][2][0].kind
            scores = session.run(["Score"], {"X": matrix})[0]
            raw, magnitude = float(scores.sum(dtype=np.float64)), float(np.abs(scores).sum(dtype=np.float64))
            sums = {"orbital": con.duckdb.sql(orbital_query).fetchall()[0][0], "PREDICT": duckdb_rows(con, PREDICT, onnx_bytes)[0][0], "raw": raw}
            worst = max(abs(a - b) for a in sums.values() for b in sums.values()) / magnitude  # robust where the scores' signs cancel in the sum
            pairs = " | ".join(f"{relative(sums[a], sums[b]):.1e}" for a, b in (("orbital", "raw"), ("PREDICT", "raw"), ("orbital", "PREDICT")))
            notes.append(f"| {label} | {plan} | {len(sql.encode()) / 1024:.1f} | {raw:.6g} | {pairs} | {worst:.1e} |")
    print("| model | path | rows/s | ratio to limit |\n|---|---|---:|---:|")
    for label, path, rate, ratio in table:
        print(f"| {label} | {path} | {rate / 1e6:.2f} M | {ratio:.2f} |")
    print("\nAgreement of the sums: relative differences, and the largest difference between any two over the sum of abs(score)\n")
    print("| model | predictsql plan | orbital SQL (KB) | raw onnxruntime sum | orbital vs raw | PREDICT vs raw | orbital vs PREDICT | worst / Σ abs(score) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("emit", help="fit and compile the pipelines (orbital's venv)").add_argument("--out", type=Path, required=True)
    timing = commands.add_parser("measure", help="time orbital's SQL, PREDICT and raw onnxruntime (the project's venv)")
    timing.add_argument("--dir", type=Path, required=True)
    timing.add_argument("--rows", type=int, default=2_000_000)
    timing.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.command == "emit":
        emit(args.out)
    else:
        measure(args.dir, args.rows, args.repeat)


if __name__ == "__main__":
    main()
