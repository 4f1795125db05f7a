"""`make demo`: a real PREDICT on an embedded DuckDB file, from training to scored rows.

Builds demo/clinic.duckdb from scikit-learn's bundled breast cancer data (diagnosis 1 = benign), trains a scaled
logistic regression on 70% of the rows, stores the ONNX model as a BLOB in a `models` table,
and scores the held-out rows with a Synapse-style PREDICT script.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import predictsql

SCRIPT = """
DECLARE @model VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1);

SELECT d.id, d.diagnosis, p.label AS predicted, round(p.Score, 4) AS p_benign
FROM PREDICT(MODEL = @model, DATA = dbo.patients AS d, RUNTIME = ONNX)
     WITH (label BIGINT, Score FLOAT) AS p
WHERE d.split = 'test'
ORDER BY d.id;
"""

ACCURACY = """
SELECT count(*) AS scored, avg(CASE WHEN p.label = d.diagnosis THEN 1.0 ELSE 0.0 END) AS accuracy
FROM PREDICT(MODEL = @model, DATA = (SELECT * FROM patients WHERE split = 'test') AS d) WITH (label BIGINT) AS p
"""


def build(path: Path) -> None:
    """Create the demo database: the patients table, and the trained model in `models`."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    features = frame.drop(columns="target")
    split = np.where(np.random.default_rng(0).random(len(frame)) < 0.7, "train", "test")
    train = split == "train"
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features[train], frame.target[train])
    onnx_bytes = predictsql.export(model, features, outputs={"score": "Score"})

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    patients = features.assign(id=np.arange(len(frame)), diagnosis=frame.target, split=split)
    with predictsql.connect(str(path)) as con:
        con.duckdb.register("patients_df", patients)
        con.duckdb.sql("CREATE TABLE patients AS SELECT * FROM patients_df")
        con.duckdb.sql("CREATE TABLE models (id INTEGER PRIMARY KEY, name VARCHAR, model BLOB)")
        con.duckdb.execute("INSERT INTO models VALUES (1, 'breast_cancer_logreg', ?)", [onnx_bytes]).fetchall()


def main(path: str = "demo/clinic.duckdb") -> None:
    database = Path(path)
    build(database)
    with predictsql.connect(str(database)) as con:
        print(f"database: {database}  (tables: patients, models)")
        print(SCRIPT.strip(), "\n")
        result = con.sql(SCRIPT)
        assert result is not None  # SCRIPT ends in a query
        rows = result.df()
        print(rows.head(15).to_string(index=False))
        print(f"... {len(rows)} held-out rows scored\n")
        summary = con.sql(ACCURACY)
        assert summary is not None
        scored, accuracy = summary.fetchall()[0]  # an aggregate: one row
        print(f"accuracy on {scored} held-out rows: {accuracy:.4f}")
