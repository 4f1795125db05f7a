"""PREDICT on a DuckDB file agrees with scikit-learn, model kind by model kind, on two real datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import predictsql
from conftest import MODEL_KINDS, Dataset, assert_parity, fit

KINDS = (*MODEL_KINDS, "one_hot_pipeline")


@pytest.mark.parametrize("kind", KINDS)
def test_predict_matches_scikit_learn(kind: str, dataset: Dataset, tmp_path: Path) -> None:
    fitted = fit(kind, dataset)
    with predictsql.connect(str(tmp_path / "parity.duckdb")) as con:
        con.duckdb.register("frame", dataset.table)
        con.duckdb.sql("CREATE TABLE samples AS SELECT * FROM frame")
        rows = con.sql(
            "SELECT d.id, p.label, p.probabilities FROM PREDICT(MODEL = @m, DATA = samples AS d) "
            "WITH (label BIGINT, probabilities FLOAT[]) AS p",
            params={"m": fitted.onnx},
        ).df()
    np.testing.assert_array_equal(rows.id.values, np.arange(len(dataset.table)))
    probabilities = np.stack(rows.probabilities.values)
    assert_parity(fitted.estimator, fitted.features, rows.label.values, probabilities)


def test_expanded_class_columns_match_scikit_learn(dataset: Dataset) -> None:
    """Without WITH, [N,C] probabilities come back as probabilities_<class> columns."""
    fitted = fit("random_forest", dataset)
    scored = predictsql.predict(fitted.onnx, fitted.features)
    classes = fitted.estimator.classes_
    probabilities = np.stack([scored[f"probabilities_{c}"].to_numpy() for c in classes], axis=1)
    assert_parity(fitted.estimator, fitted.features, scored["label"].to_numpy(), probabilities)
