"""What only the DuckDB adapter does: views stored in the file, batch sizes and workers,
explain, plain SQL pass-through, connect() options, and predictsql.predict()."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import predictsql

from conftest import PROBA_TOLERANCE, assert_scores, expected_scores, not_none, numeric


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
        rows = not_none(reopened.sql("SELECT id, Score FROM predictions WHERE Score > 0.5 ORDER BY id")).df()
    expected = expected_scores(logreg, breast_cancer.table)
    assert list(rows.id) == list(np.flatnonzero(expected > 0.5))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_dbo_is_a_real_schema_when_it_exists(con, logreg) -> None:
    con.duckdb.sql("CREATE SCHEMA dbo; CREATE TABLE dbo.patients AS SELECT * FROM main.patients LIMIT 5")
    rows = not_none(con.sql("SELECT count(*) FROM PREDICT(MODEL = @m, DATA = dbo.patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx}))
    assert rows.fetchone() == (5,)


@pytest.mark.parametrize(("batch_size", "workers"), [(1, 1), (7, 1), (7, 3), (65536, 2)])
def test_batch_sizes_give_identical_results(db_path: Path, logreg, batch_size: int, workers: int) -> None:
    query = "SELECT d.id, p.Score, p.probabilities FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d, PLAN = STREAM) WITH (Score FLOAT, probabilities FLOAT[]) AS p"
    with predictsql.connect(str(db_path)) as reference:
        expected = not_none(reference.sql(query)).arrow()
    with predictsql.connect(str(db_path), batch_size=batch_size, workers=workers) as con:
        assert not_none(con.sql(query)).arrow().equals(expected)
        assert not_none(con.sql(query.replace("DATA = patients AS d", f"DATA = patients AS d, BATCH_SIZE = {batch_size}"))).arrow().equals(expected)


def test_views_compose_drop_and_replace(con, logreg, breast_cancer) -> None:
    view = "SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p"
    con.sql(f"CREATE VIEW scored AS {view}")
    with pytest.raises(predictsql.PredictSQLError, match="already exists"):
        con.sql(f"CREATE VIEW scored AS {view}")
    con.sql(f"CREATE OR REPLACE VIEW scored AS {view} WHERE d.id < 10")
    rows = not_none(con.sql("SELECT s.id, s.Score FROM scored AS s JOIN patients AS x ON x.id = s.id ORDER BY s.id")).df()
    assert list(rows.id) == list(range(10))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    con.sql("DROP VIEW scored")
    with pytest.raises(Exception, match="scored"):
        con.sql("SELECT * FROM scored")


def test_a_predict_view_takes_its_column_list_and_refuses_what_would_hide_a_table_or_outlive_its_place(con, logreg, breast_cancer) -> None:
    """CREATE VIEW v (a, b) names the columns; a name a table holds is refused as DuckDB refuses it (the view hid the
    table from PREDICT statements), and TEMP or a schema, which the view stored in the file's default schema would not
    keep, are refused rather than ignored."""
    view = "SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p"
    con.sql(f"CREATE VIEW renamed (k, s) AS {view}")
    rows = not_none(con.sql("SELECT k, s FROM renamed ORDER BY k")).df()
    assert_scores(logreg, breast_cancer, rows.k, rows.s)
    with pytest.raises(predictsql.PredictSQLError, match="^a table named patients already exists$"):
        con.sql(f"CREATE OR REPLACE VIEW patients AS {view}")
    assert not_none(con.sql("SELECT count(*) FROM patients")).fetchall() == [(len(breast_cancer.table),)]
    con.duckdb.sql("CREATE VIEW plain AS SELECT 1 AS one")
    with pytest.raises(predictsql.PredictSQLError, match="a view named plain already exists; use CREATE OR REPLACE VIEW"):
        con.sql(f"CREATE VIEW plain AS {view}")
    for placed in ("CREATE TEMP VIEW t1", "CREATE SCHEMA s1; CREATE VIEW s1.t1"):
        with pytest.raises(predictsql.PredictSQLError, match="is stored in the database file, in its default schema"):
            con.sql(f"{placed} AS {view}")


def test_statements_that_name_a_predict_view_read_it_or_say_how_to_change_it(con, logreg, breast_cancer, tmp_path: Path) -> None:
    """COPY v TO, DESCRIBE v and SUMMARIZE v read the view's rows, as DuckDB's own views; what would change it as a
    table is a BindError that says how; IF NOT EXISTS and a DROP VIEW list mixing both kinds act on each."""
    view = "SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p"
    con.sql(f"CREATE VIEW scored AS {view}")
    con.sql(f"COPY scored TO '{tmp_path / 'scored.csv'}' (HEADER)")
    copied = not_none(con.sql(f"SELECT id, Score FROM read_csv('{tmp_path / 'scored.csv'}') ORDER BY id")).df()
    assert_scores(logreg, breast_cancer, copied.id, copied.Score)
    assert not_none(con.sql("DESCRIBE scored")).fetchall() == not_none(con.sql(f"DESCRIBE {view}")).fetchall()
    summary = not_none(con.sql("SUMMARIZE scored")).df().set_index("column_name")
    assert summary.loc["id", "count"] == len(breast_cancer.table)
    for statement in ("DROP TABLE scored", "ALTER VIEW scored RENAME TO other", "INSERT INTO scored VALUES (1, 0.5)", "CREATE TABLE scored AS SELECT 1 AS x"):
        named = statement.split(" scored")[0].replace(" INTO", "")
        with pytest.raises(predictsql.PredictSQLError, match=f"scored is a PREDICT view.*: {named} cannot change it; DROP VIEW scored or CREATE OR REPLACE VIEW scored"):
            con.sql(statement)
    con.sql("CREATE VIEW IF NOT EXISTS scored AS SELECT 1 AS x")
    assert not_none(con.sql("SELECT count(*) FROM scored")).fetchall() == [(len(breast_cancer.table),)]
    con.duckdb.sql("CREATE VIEW plain AS SELECT 1 AS one")
    con.sql("DROP VIEW IF EXISTS plain, scored")  # DuckDB drops one object per statement: predictsql takes its own out
    for name in ("plain", "scored"):
        with pytest.raises(Exception, match=name):
            con.sql(f"SELECT * FROM {name}")


def test_views_of_a_file_written_before_views_kept_their_dialect_read_as_tsql(db_path: Path, logreg, breast_cancer) -> None:
    """Such a file's predictsql.views has no dialect column: its definitions are T-SQL (TOP), read as T-SQL, also
    inside an open transaction, which the lookup leaves usable."""
    with predictsql.connect(str(db_path)) as con:
        definition = "SELECT TOP 3 d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p ORDER BY d.id"
        con.duckdb.execute("CREATE SCHEMA predictsql; CREATE TABLE predictsql.views (name VARCHAR PRIMARY KEY, definition VARCHAR NOT NULL)")
        con.duckdb.execute("INSERT INTO predictsql.views VALUES ('top3', ?)", [definition])
        con.duckdb.execute("BEGIN")
        con.duckdb.execute("CREATE TABLE seen AS SELECT 1 AS x")
        rows = not_none(con.sql("SELECT id, Score FROM top3 ORDER BY id")).df()
        assert con.duckdb.execute("SELECT x FROM seen").fetchall() == [(1,)]  # the transaction is still open
        con.duckdb.execute("ROLLBACK")
    assert list(rows.id) == [0, 1, 2]
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_declared_variables_persist_and_plain_sql_passes_through(con, logreg) -> None:
    con.sql("DECLARE @model VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1)")
    assert con.variables["model"] == logreg.onnx
    assert not_none(con.sql("SELECT count(*) FROM PREDICT(MODEL = @model, DATA = patients) WITH (Score FLOAT) AS p")).fetchone() == (569,)
    assert not_none(con.sql("SELECT 40 + 2 AS answer")).fetchall() == [(42,)]
    assert not_none(con.sql("CREATE TABLE t AS SELECT 1 AS x; SELECT x FROM t")).fetchall() == [(1,)]


def test_explain_shows_rewritten_sql_and_plan(con, large_data_con, logreg, forest) -> None:
    query = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d{option}) WITH (Score FLOAT) AS p"
    small = str(con.explain(query.format(option=""), params={"m": logreg.onnx}))
    assert "UDF model @m" in small and "(DATA has at most 569 rows: a kept scoring function" in small
    inlined = large_data_con.explain(query.format(option=""), params={"m": logreg.onnx})
    (sql,) = inlined.sql
    assert sql.startswith('SELECT p.id, p.Score FROM (SELECT "mean_radius"') and "EXP(" in sql
    assert str(inlined).startswith("-- read as duckdb\n") and "INLINE model @m" in str(inlined)
    forced = str(con.explain(query.format(option=", PLAN = STREAM"), params={"m": logreg.onnx}))
    assert "STREAM model @m, sha " in forced and "batch 65536 (PLAN = STREAM)" in forced
    function = con.explain(query.format(option=", PLAN = UDF"), params={"m": logreg.onnx})
    assert "UDF model @m" in str(function) and "(PLAN = UDF)" in str(function)
    assert '"__predictsql_s"."Score" AS "Score"' in function.sql[0]
    streamed = large_data_con.explain(query.format(option=""), params={"m": forest.onnx})
    assert streamed.sql[0].startswith("SELECT p.id, p.Score FROM __predictsql_")
    text = str(streamed)
    assert "(not INLINE: a tree ensemble of " in text and "is over INLINE's limit" in text
    assert "a stream of DATA sees what the statement sees" in text
    assert "FROM (SELECT * FROM patients) AS __predictsql_p" in text and '"id"' in text and '"target"' not in text  # the columns the query reads
    assert "input X FLOAT[30] <- mean_radius DOUBLE" in text
    assert "output Score FLOAT <- Score" in text


def test_predict_function_on_arrow_and_pandas(logreg, breast_cancer) -> None:
    frame = numeric(breast_cancer.features)
    for data in (frame, pa.Table.from_pandas(frame), pa.RecordBatch.from_pandas(frame)):
        scored = predictsql.predict(logreg.onnx, data, outputs=["Score", "probabilities"])
        assert scored.column_names == [*frame.columns, "Score", "probabilities"]
        np.testing.assert_allclose(scored["Score"].to_numpy(), expected_scores(logreg), atol=PROBA_TOLERANCE)


def test_connect_passes_duckdb_config(tmp_path: Path) -> None:
    with predictsql.connect(str(tmp_path / "c.duckdb"), threads=1) as con:
        assert not_none(con.sql("SELECT current_setting('threads')")).fetchone() == (1,)


@pytest.mark.parametrize(
    ("setting", "refusal"),
    [
        ({"batch_size": 0}, "batch_size=0 must be a whole number of at least 1"),
        ({"workers": "2"}, "workers='2' must be a whole number of at least 1"),
        ({"workers": True}, "workers=True must be a whole number of at least 1"),
        ({"intra_op_threads": -1}, "intra_op_threads=-1 must be a whole number of at least 0"),
        ({"batch_size": 2.5}, "batch_size=2.5 must be a whole number of at least 1"),
        ({"small_data_rows": -5}, "small_data_rows=-5 must be a whole number of at least 0"),
        ({"compiled_trees": "no"}, "compiled_trees='no' must be True or False"),
    ],
)
def test_connect_refuses_a_setting_no_statement_could_run_with(tmp_path: Path, setting: dict, refusal: str) -> None:
    """Checked when connecting: a STREAM plan tripped on them later, with ThreadPoolExecutor's TypeError or a batch of 0 rows."""
    with pytest.raises(predictsql.PredictSQLError, match=re.escape(refusal)):
        predictsql.connect(str(tmp_path / "c.duckdb"), **setting)
    assert not (tmp_path / "c.duckdb").exists()  # refused before DuckDB made the file


def test_connect_takes_numpy_integers_and_a_whole_float_of_bytes(tmp_path: Path, logreg, breast_cancer) -> None:
    """np.int64 rows per batch (a value computed with numpy) and max_model_bytes=2e9 are the numbers they name."""
    with predictsql.connect(str(tmp_path / "c.duckdb"), batch_size=np.int64(100), workers=np.int32(2), max_model_bytes=2e9, intra_op_threads=0) as con:
        con.duckdb.register("frame", breast_cancer.table)
        con.sql("CREATE TABLE patients AS SELECT * FROM frame")
        rows = not_none(con.sql("SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = STREAM) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
