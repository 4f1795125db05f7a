"""Predicate pushdown (sql/pushdown.py) on both engines: what moves below PREDICT, what must not, and that every
query returns what the engine returns for the same SQL over a table of precomputed scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import PROBA_TOLERANCE, expected_scores, no_stream_on_spark, not_none

PREDICT = "PREDICT(MODEL = @m, DATA = patients AS d{plan}) WITH (Score FLOAT) AS p"


@pytest.mark.parametrize("plan", ["AUTO", "UDF", "STREAM"])
def test_rows_the_where_removes_are_never_scored(backend, logreg, breast_cancer, plan: str, request) -> None:
    """NULL inputs in the rows a WHERE on DATA columns removes raise nothing (NULLS = ERROR): they are never scored."""
    no_stream_on_spark(backend, plan, request)
    table = breast_cancer.table.astype({"mean_radius": "Float64"})
    table.loc[table.id < 10, "mean_radius"] = pd.NA
    backend.load("patients", table)
    query = f"SELECT d.id, p.Score FROM {PREDICT.format(plan=f', PLAN = {plan}')} WHERE d.id >= 10 AND p.Score > 0.5 ORDER BY d.id"
    rows = not_none(backend.sql(query, params={"m": logreg.onnx}))
    kept = table[table.id >= 10]
    expected = expected_scores(logreg, kept.astype({"mean_radius": "float64"}))
    np.testing.assert_array_equal(rows["id"], kept.id[expected > 0.5])
    np.testing.assert_allclose(rows["Score"], expected[expected > 0.5], atol=PROBA_TOLERANCE, rtol=0)


QUERIES = {
    "inner join ON": "SELECT d.id, p.Score FROM patients AS o JOIN {predict} ON o.id = d.id AND d.mean_radius > 15 ORDER BY d.id",
    "left join, predict on the null side": "SELECT o.id, p.Score FROM patients AS o LEFT JOIN {predict} ON o.id = d.id WHERE d.mean_radius > 15 OR d.id IS NULL ORDER BY o.id",
    "left join ON, null side": "SELECT o.id, p.Score FROM patients AS o LEFT JOIN {predict} ON o.id = d.id AND d.mean_radius > 15 ORDER BY o.id",
    "right join": "SELECT o.id, p.Score FROM {predict} RIGHT JOIN patients AS o ON o.id = d.id WHERE d.mean_radius > 15 ORDER BY o.id",
    "grouped": "SELECT d.target, count(*) AS n, round(avg(p.Score), 4) AS s FROM {predict} WHERE d.mean_radius BETWEEN 12 AND 18 GROUP BY d.target ORDER BY d.target",
    "or across data and output": "SELECT d.id FROM {predict} WHERE d.mean_radius > 20 OR p.Score < 0.01 ORDER BY d.id",
    "unqualified, as Synapse users write it": "SELECT d.id, p.Score FROM {predict} WHERE mean_radius > 15 AND Score > 0.2 ORDER BY d.id",
}


@pytest.mark.parametrize("name", QUERIES)
def test_each_query_returns_what_the_engine_returns_over_precomputed_scores(backend, logreg, name: str) -> None:
    """The reference: the same SQL with the PREDICT replaced by a table holding every row's columns and score (d and p as one)."""
    backend.load("scores", not_none(backend.sql(f"SELECT d.*, p.Score FROM {PREDICT.format(plan='')}", params={"m": logreg.onnx})))
    got = not_none(backend.sql(QUERIES[name].format(predict=PREDICT.format(plan="")), params={"m": logreg.onnx}))
    reference = backend.query(QUERIES[name].format(predict="scores AS d").replace("p.Score", "d.Score"))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), reference.reset_index(drop=True), check_dtype=False)


DUCKDB_QUERIES = {  # rows paired by position or nearest key, or sampled before the WHERE: filtering DATA first changes them
    "positional join": "SELECT o.id, d.id AS did FROM patients AS o POSITIONAL JOIN {predict} WHERE d.mean_radius > 15 ORDER BY o.id",
    "asof join": "SELECT o.id, d.id AS did FROM patients AS o ASOF JOIN {predict} ON o.id >= d.id WHERE d.mean_radius > 15 ORDER BY o.id",
    "asof join, predict first": "SELECT d.id, o.id AS oid FROM {predict} ASOF JOIN patients AS o ON d.id >= o.id + 3 WHERE d.mean_radius > 15 ORDER BY d.id",
    "using sample": "SELECT count(*) AS n FROM {predict} WHERE d.mean_radius > 15 USING SAMPLE 50 ROWS (reservoir, 42)",
}


@pytest.mark.parametrize("name", DUCKDB_QUERIES)
def test_duckdb_pairing_joins_and_samples_keep_the_where_above(con, logreg, name: str) -> None:
    """The reference: DuckDB's own result for the same SQL over a table of precomputed scores."""
    con.duckdb.register("frame", not_none(con.sql(f"SELECT d.*, p.Score FROM {PREDICT.format(plan='')}", params={"m": logreg.onnx})).arrow())
    con.duckdb.execute("CREATE TABLE scores AS SELECT * FROM frame")
    got = not_none(con.sql(DUCKDB_QUERIES[name].format(predict=PREDICT.format(plan="")), params={"m": logreg.onnx})).fetchall()
    reference = con.duckdb.execute(DUCKDB_QUERIES[name].format(predict="scores AS d")).fetchall()
    assert got == reference and got


def test_explain_shows_what_moved_and_what_did_not(con, logreg) -> None:
    params = {"m": logreg.onnx}
    moved = str(con.explain(f"SELECT d.id FROM {PREDICT.format(plan='')} WHERE d.mean_radius > 15 AND p.Score > 0.5", params=params))
    assert "pushed below PREDICT: d.mean_radius > 15" in moved
    unqualified = str(con.explain(f"SELECT d.id FROM {PREDICT.format(plan='')} WHERE mean_radius > 15 AND Score > 0.5", params=params))
    assert "pushed below PREDICT: mean_radius > 15\n" in unqualified  # Score is an output: it stays
    for where in ("d.mean_radius > random()", "p.mean_radius > 15", "score > 0.5", "d.mean_radius > (SELECT avg(mean_radius) FROM patients)"):
        assert "pushed below" not in str(con.explain(f"SELECT d.id FROM {PREDICT.format(plan='')} WHERE {where}", params=params)), where
    for query in (  # an unqualified column that another source, an output WITH does not name, or an alias could supply
        f"SELECT d.id FROM patients AS o JOIN {PREDICT.format(plan='')} ON o.id = d.id WHERE mean_radius > 15",
        "SELECT d.id FROM PREDICT(MODEL = @m, DATA = patients AS d) AS p WHERE mean_radius > 15",
        f"SELECT o.id FROM patients AS o WHERE EXISTS (SELECT 1 FROM {PREDICT.format(plan='')} WHERE mean_radius > 15)",
        f"SELECT d.id * 10 AS k FROM {PREDICT.format(plan='')} WHERE k > 15",  # k is the SELECT list's (DuckDB reads it so)
    ):
        assert "pushed below" not in str(con.explain(query, params=params)), query
    left = str(con.explain(f"SELECT o.id FROM patients AS o LEFT JOIN {PREDICT.format(plan='')} ON o.id = d.id WHERE d.mean_radius > 15", params=params))
    assert "pushed below" not in left
    for after in ("TABLESAMPLE 20 ROWS", "PIVOT (count(*) FOR target IN (0, 1))"):  # they act on the rows before the WHERE
        assert "pushed below" not in str(con.explain(f"SELECT count(*) FROM {PREDICT.format(plan='')} {after} WHERE d.id < 20", params=params)), after


@pytest.mark.parametrize("plan", ["AUTO", "UDF"])
def test_a_top_n_on_data_columns_scores_only_the_rows_it_keeps(con, logreg, breast_cancer, plan: str) -> None:
    """DuckDB scores a deterministic function after ORDER BY … LIMIT: a NULL input in a row the Top-N drops raises nothing
    (a function registered as having side effects, as where a WHERE reads the outputs, scored every row)."""
    con.duckdb.sql("UPDATE patients SET mean_radius = NULL WHERE id = 100")
    rows = not_none(con.sql(f"SELECT d.id, p.Score FROM {PREDICT.format(plan=f', PLAN = {plan}')} ORDER BY d.id LIMIT 5", params={"m": logreg.onnx})).df()
    assert rows.id.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(rows.Score, expected_scores(logreg)[:5], atol=PROBA_TOLERANCE, rtol=0)


# --- projection: a PREDICT carries only the DATA columns its statement reads, plus the model's inputs ---


def test_a_predict_carries_only_the_columns_its_statement_reads(con, logreg) -> None:
    params = {"m": logreg.onnx}
    narrow = str(con.explain(f"SELECT d.id, p.Score FROM {PREDICT.format(plan=', PLAN = STREAM')}", params=params))
    data_line = next(line for line in narrow.splitlines() if "DATA:" in line)
    assert '"id"' in data_line and '"mean_radius"' in data_line and '"target"' not in data_line and '"band"' not in data_line
    for reads_all in ("SELECT d.*, p.Score FROM {p}", "SELECT * FROM {p}", "SELECT d.id FROM {p} JOIN patients AS o USING (id)"):
        text = str(con.explain(reads_all.format(p=PREDICT.format(plan=", PLAN = STREAM")), params=params))
        assert "__predictsql_p" not in text, reads_all


@pytest.mark.parametrize("plan", ["AUTO", "UDF", "STREAM"])
def test_projected_queries_return_the_engines_own_result(backend, logreg, plan: str, request) -> None:
    no_stream_on_spark(backend, plan, request)
    predict = PREDICT.format(plan=f", PLAN = {plan}")
    backend.load("scores", not_none(backend.sql(f"SELECT d.*, p.Score FROM {PREDICT.format(plan='')}", params={"m": logreg.onnx})))
    query = "SELECT d.target, count(*) AS n, round(sum(p.Score), 3) AS s FROM {p} WHERE d.band <> 'low' GROUP BY d.target ORDER BY d.target"
    got = not_none(backend.sql(query.format(p=predict), params={"m": logreg.onnx}))
    reference = backend.query(query.format(p="scores AS d").replace("p.Score", "d.Score"))
    pd.testing.assert_frame_equal(got, reference, check_dtype=False)
