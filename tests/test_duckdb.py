"""PREDICT on a real DuckDB file: the conformance shapes, every DATA and MODEL form, composition
with SQL, batch sizes, and the Python API. Scores are checked against scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import predictsql
from conftest import PROBA_TOLERANCE, Dataset, Fitted, expected_scores, fit, numeric


def assert_scores(fitted: Fitted, data: Dataset, ids, scores) -> None:
    """Scores for the given ids equal scikit-learn's P(class 1) within tolerance."""
    table = data.table.set_index("id").loc[np.asarray(ids)]
    np.testing.assert_allclose(np.asarray(scores, dtype=np.float64), expected_scores(fitted, table), atol=PROBA_TOLERANCE, rtol=0)


# --- conformance shapes (../shared/conformance/README.md), with this project's tables ---


def test_shape_1_sql_server_form_without_runtime(con, logreg, breast_cancer) -> None:
    rows = con.sql(
        "SELECT d.*, p.Score FROM PREDICT(MODEL = @model, DATA = dbo.patients AS d) WITH (Score FLOAT) AS p;",
        params={"model": logreg.onnx},
    ).df()
    assert list(rows.columns) == [*breast_cancer.table.columns, "Score"]
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_shape_2_synapse_declare_from_a_table(con, logreg, breast_cancer) -> None:
    rows = con.sql(
        """
        DECLARE @model VARBINARY(max) = (SELECT model FROM models WHERE id = 1);

        SELECT d.*, p.Score
        FROM PREDICT(MODEL = @model,
            DATA = dbo.patients AS d, RUNTIME = ONNX) WITH (Score FLOAT) AS p;
        """
    ).df()
    assert len(rows) == len(breast_cancer.table)
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_shape_3_view_with_scalar_subquery_model_survives_reopen(db_path: Path, logreg, breast_cancer) -> None:
    with predictsql.connect(str(db_path)) as con:
        con.sql(
            """
            CREATE VIEW predictions
            AS
            SELECT d.*, p.Score
            FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1),
                         DATA = dbo.patients AS d, RUNTIME = ONNX) WITH (Score FLOAT) AS p;
            """
        )
    with predictsql.connect(str(db_path)) as reopened:
        rows = reopened.sql("SELECT id, Score FROM predictions WHERE Score > 0.5 ORDER BY id").df()
    expected = expected_scores(logreg, breast_cancer.table)
    assert list(rows.id) == list(np.flatnonzero(expected > 0.5))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_shape_4_lower_case_type_and_mixed_case_names(con, logreg, breast_cancer) -> None:
    rows = con.sql(
        "SELECT d.*, p.Score FROM PREDICT(MODEL = (SELECT Model FROM Models WHERE Id = 1), "
        "DATA = dbo.Patients AS d, RUNTIME = ONNX) WITH (Score float) AS p;"
    ).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


# --- MODEL forms ---


@pytest.mark.parametrize("form", ["variable", "subquery", "hex", "path"])
def test_model_forms(form: str, con, logreg, breast_cancer, tmp_path: Path) -> None:
    path = tmp_path / "logreg.onnx"
    path.write_bytes(logreg.onnx)
    model = {
        "variable": "@model",
        "subquery": "(SELECT model FROM models WHERE name = 'logreg')",
        "hex": "0x" + logreg.onnx.hex(),
        "path": f"'{path}'",
    }[form]
    rows = con.sql(f"SELECT d.id, p.Score FROM PREDICT(MODEL = {model}, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"model": logreg.onnx}).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_model_parameter_may_be_a_path_string(con, logreg, breast_cancer, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(logreg.onnx)
    rows = con.sql("SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"@m": str(path)}).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


# --- DATA forms, aliases, optional parts ---


@pytest.mark.parametrize(
    "data",
    [
        "patients AS d",
        "dbo.patients AS d",
        "main.patients AS d",
        "patient_view AS d",
        "recent AS d",
        "(SELECT * FROM patients WHERE id < 400) AS d",
    ],
)
def test_data_forms(data: str, con, logreg, breast_cancer) -> None:
    con.duckdb.sql("CREATE VIEW patient_view AS SELECT * FROM patients WHERE id < 400")
    rows = con.sql(
        f"WITH recent AS (SELECT * FROM patients WHERE id < 400) "
        f"SELECT d.id, p.Score FROM PREDICT(MODEL = @model, DATA = {data}) WITH (Score FLOAT) AS p ORDER BY d.id",
        params={"model": logreg.onnx},
    ).df()
    expected_count = len(breast_cancer.table) if "<" not in data and data.split()[0].endswith("patients") else 400
    assert len(rows) == expected_count
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_dbo_is_a_real_schema_when_it_exists(con, logreg) -> None:
    con.duckdb.sql("CREATE SCHEMA dbo; CREATE TABLE dbo.patients AS SELECT * FROM main.patients LIMIT 5")
    rows = con.sql("SELECT count(*) FROM PREDICT(MODEL = @m, DATA = dbo.patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    assert rows.fetchone() == (5,)


def test_aliases_runtime_and_with_are_optional(con, logreg, breast_cancer) -> None:
    rows = con.sql("select * from predict(model = @m, data = patients)", params={"m": logreg.onnx}).df()
    assert list(rows.columns) == [*breast_cancer.table.columns, "label", "probabilities_0", "probabilities_1", "Score"]
    assert_scores(logreg, breast_cancer, rows.id, rows.probabilities_1)
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_d_star_is_data_and_p_star_is_outputs(con, logreg, breast_cancer) -> None:
    result = con.sql("SELECT p.*, d.* FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT, label BIGINT) AS p", params={"m": logreg.onnx})
    assert result.columns == ["Score", "label", *breast_cancer.table.columns]


def test_output_named_like_a_data_column_is_kept_apart(con, logreg, breast_cancer) -> None:
    """DATA has `target`; an output aliased `target` must not shadow d.target."""
    con.duckdb.sql("CREATE TABLE labelled AS SELECT *, target AS label FROM patients")
    rows = con.sql(
        "SELECT d.label AS truth, p.label FROM PREDICT(MODEL = @m, DATA = labelled AS d) WITH (label BIGINT) AS p",
        params={"m": logreg.onnx},
    ).df()
    np.testing.assert_array_equal(rows.truth, breast_cancer.target)
    np.testing.assert_array_equal(rows.label, logreg.estimator.predict(logreg.features))


def test_row_order_and_count_follow_data(con, logreg, breast_cancer) -> None:
    rows = con.sql(
        "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM patients WHERE id % 3 = 0 ORDER BY id DESC) AS d) WITH (Score FLOAT) AS p",
        params={"m": logreg.onnx},
    ).df()
    assert list(rows.id) == sorted(range(0, len(breast_cancer.table), 3), reverse=True)
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


@pytest.mark.parametrize(("batch_size", "workers"), [(1, 1), (7, 1), (7, 3), (65536, 2)])
def test_batch_sizes_give_identical_results(db_path: Path, logreg, batch_size: int, workers: int) -> None:
    query = "SELECT d.id, p.Score, p.probabilities FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT, probabilities FLOAT[]) AS p"
    with predictsql.connect(str(db_path)) as reference:
        expected = reference.sql(query).arrow()
    with predictsql.connect(str(db_path), batch_size=batch_size, workers=workers) as con:
        assert con.sql(query).arrow().equals(expected)
        assert con.sql(query.replace("DATA = patients AS d", f"DATA = patients AS d, BATCH_SIZE = {batch_size}")).arrow().equals(expected)


# --- composition ---


def test_where_order_by_and_group_by_on_scores(con, logreg, breast_cancer) -> None:
    rows = con.sql(
        """
        DECLARE @model VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1);
        SELECT d.target, count(*) AS n, avg(p.Score) AS mean_score
        FROM PREDICT(MODEL = @model, DATA = patients AS d) WITH (Score FLOAT) AS p
        WHERE p.Score > 0.1
        GROUP BY d.target
        ORDER BY mean_score DESC
        """
    ).df()
    scores = expected_scores(logreg, breast_cancer.table)
    frame = breast_cancer.table.assign(score=scores)
    expected = frame[frame.score > 0.1].groupby("target").score.agg(["count", "mean"]).sort_values("mean", ascending=False)
    assert list(rows.target) == list(expected.index)
    assert list(rows.n) == list(expected["count"])
    np.testing.assert_allclose(rows.mean_score, expected["mean"], atol=PROBA_TOLERANCE)


def test_predict_in_cte_and_join(con, logreg, breast_cancer) -> None:
    rows = con.sql(
        """
        WITH scored AS (
            SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p
        )
        SELECT x.id, x.target, s.Score FROM patients AS x JOIN scored AS s ON s.id = x.id
        WHERE x.target = 1 ORDER BY x.id
        """,
        params={"m": logreg.onnx},
    ).df()
    assert list(rows.id) == list(np.flatnonzero(breast_cancer.target.values == 1))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_cte_over_predict_referenced_twice(con, logreg, breast_cancer) -> None:
    rows = con.sql(
        """
        WITH s AS (SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p)
        SELECT a.id, a.Score FROM s AS a JOIN s AS b ON a.id = b.id + 1 ORDER BY a.id
        """,
        params={"m": logreg.onnx},
    ).df()
    assert list(rows.id) == list(range(1, len(breast_cancer.table)))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_two_models_in_one_query(con, logreg, breast_cancer) -> None:
    forest = fit("random_forest", breast_cancer)
    rows = con.sql(
        """
        SELECT a.id, a.Score AS linear, b.Score AS forest
        FROM PREDICT(MODEL = @linear, DATA = patients AS d1) WITH (Score FLOAT) AS a
        JOIN PREDICT(MODEL = @forest, DATA = patients AS d2) WITH (Score FLOAT) AS b ON a.id = b.id
        ORDER BY a.id
        """,
        params={"linear": logreg.onnx, "forest": forest.onnx},
    ).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.linear)
    assert_scores(forest, breast_cancer, rows.id, rows.forest)


def test_predict_over_predict(con, logreg, breast_cancer) -> None:
    """A PREDICT whose DATA is another PREDICT's result: the inner stream feeds the outer one."""
    forest = fit("random_forest", breast_cancer)
    rows = con.sql(
        """
        SELECT o.id, o.linear, p.Score AS forest
        FROM PREDICT(MODEL = @forest,
                     DATA = (SELECT d.*, i.Score AS linear FROM PREDICT(MODEL = @linear, DATA = patients AS d) WITH (Score FLOAT) AS i) AS o)
             WITH (Score FLOAT) AS p
        ORDER BY o.id
        """,
        params={"linear": logreg.onnx, "forest": forest.onnx},
    ).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.linear)
    assert_scores(forest, breast_cancer, rows.id, rows.forest)


def test_insert_select_create_table_as_and_select_into(con, logreg, breast_cancer) -> None:
    con.duckdb.sql("CREATE TABLE scores (id INTEGER, score FLOAT)")
    predict = "PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p"
    assert con.sql(f"INSERT INTO scores SELECT d.id, p.Score FROM {predict}") is None
    con.sql(f"CREATE TABLE scores2 AS SELECT d.id, p.Score FROM {predict}")
    con.sql(f"SELECT d.id, p.Score INTO scores3 FROM {predict}")
    for table, column in (("scores", "score"), ("scores2", "Score"), ("scores3", "Score")):
        rows = con.duckdb.sql(f"SELECT id, {column} FROM {table} ORDER BY id").fetchnumpy()
        assert_scores(logreg, breast_cancer, rows["id"], rows[column])


def test_views_compose_drop_and_replace(con, logreg, breast_cancer) -> None:
    view = "SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p"
    con.sql(f"CREATE VIEW scored AS {view}")
    with pytest.raises(predictsql.PredictSQLError, match="already exists"):
        con.sql(f"CREATE VIEW scored AS {view}")
    con.sql(f"CREATE OR REPLACE VIEW scored AS {view} WHERE d.id < 10")
    rows = con.sql("SELECT s.id, s.Score FROM scored AS s JOIN patients AS x ON x.id = s.id ORDER BY s.id").df()
    assert list(rows.id) == list(range(10))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    con.sql("DROP VIEW scored")
    with pytest.raises(Exception, match="scored"):
        con.sql("SELECT * FROM scored")


def test_declared_variables_persist_and_plain_sql_passes_through(con, logreg) -> None:
    con.sql("DECLARE @model VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1)")
    assert con.variables["model"] == logreg.onnx
    assert con.sql("SELECT count(*) FROM PREDICT(MODEL = @model, DATA = patients) WITH (Score FLOAT) AS p").fetchone() == (569,)
    assert con.sql("SELECT 40 + 2 AS answer").fetchall() == [(42,)]
    assert con.sql("CREATE TABLE t AS SELECT 1 AS x; SELECT x FROM t").fetchall() == [(1,)]


def test_explain_shows_rewritten_sql_and_plan(con, logreg) -> None:
    explained = con.explain("SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    (sql,) = explained.sql
    assert sql.startswith("SELECT p.id, p.Score FROM __predictsql_")
    text = str(explained)
    assert "STREAM model @m" in text
    assert "DATA: SELECT * FROM patients" in text
    assert "input X FLOAT[30] <- mean_radius DOUBLE" in text
    assert "output Score FLOAT <- Score" in text


# --- Python API ---


def test_predict_function_on_arrow_and_pandas(logreg, breast_cancer) -> None:
    frame = numeric(breast_cancer.features)
    for data in (frame, pa.Table.from_pandas(frame), pa.RecordBatch.from_pandas(frame)):
        scored = predictsql.predict(logreg.onnx, data, outputs=["Score", "probabilities"])
        assert scored.column_names == [*frame.columns, "Score", "probabilities"]
        np.testing.assert_allclose(scored["Score"].to_numpy(), expected_scores(logreg), atol=PROBA_TOLERANCE)


def test_connect_passes_duckdb_config(tmp_path: Path) -> None:
    with predictsql.connect(str(tmp_path / "c.duckdb"), threads=1) as con:
        assert con.sql("SELECT current_setting('threads')").fetchone() == (1,)
