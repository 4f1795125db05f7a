"""Plans kept per connection (udfs/plan_cache.py): a statement run again is planned once, and what could change its
meaning (DATA's schema, the model, a variable, a MODEL read from a table) makes it plan afresh."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import predictsql
from predictsql.engine.errors import MissingColumnError, NullInputError, TypeMismatchError

from conftest import PROBA_TOLERANCE, assert_scores, expected_scores, not_none

SCORE = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p ORDER BY d.id"


def _stats(con) -> dict[str, int]:
    return dict(con.settings.plans.stats)


def test_a_statement_run_again_uses_its_kept_plan_with_the_same_rows(con, logreg, breast_cancer) -> None:
    first = not_none(con.sql(SCORE, params={"m": logreg.onnx})).df()
    before = _stats(con)
    again = not_none(con.sql(SCORE, params={"m": logreg.onnx})).df()
    assert _stats(con) == {"hits": before["hits"] + 1, "misses": before["misses"]}
    assert again.Score.tolist() == first.Score.tolist()
    assert_scores(logreg, breast_cancer, again.id, again.Score)


def test_another_model_or_variable_value_plans_afresh(con, logreg, breast_cancer) -> None:
    from conftest import fit

    other = fit("scaler_pipeline", breast_cancer)
    con.sql(SCORE, params={"m": logreg.onnx})
    rows = not_none(con.sql(SCORE, params={"m": other.onnx})).df()
    np.testing.assert_allclose(rows.Score, expected_scores(other), atol=PROBA_TOLERANCE)
    threshold = "SELECT count(*) FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p WHERE d.id < @n"
    counts = [not_none(con.sql(threshold, params={"m": logreg.onnx, "n": n})).fetchall() for n in (10, 20, 10)]
    assert counts == [[(10,)], [(20,)], [(10,)]]
    typed = "SELECT @v AS v, count(*) AS n FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p"
    values = [not_none(con.sql(typed, params={"m": logreg.onnx, "v": v})).fetchall()[0][0] for v in (1, 1.0, True)]
    assert [(type(v), v) for v in values] == [(int, 1), (float, 1.0), (bool, True)]  # equal in Python, not as literals: a plan each


def test_a_changed_table_binds_afresh(con, logreg, breast_cancer) -> None:
    """The same text over a table that changed: new types bind anew, a dropped column is the usual error, and a NULL
    that appears later still raises the kept plan's own error."""
    con.sql(SCORE, params={"m": logreg.onnx})
    con.duckdb.sql("CREATE OR REPLACE TABLE patients AS SELECT * REPLACE (mean_radius::FLOAT AS mean_radius) FROM patients")
    misses = _stats(con)["misses"]
    rows = not_none(con.sql(SCORE, params={"m": logreg.onnx})).df()
    assert _stats(con)["misses"] == misses + 1
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    con.sql(SCORE, params={"m": logreg.onnx})  # kept again
    con.duckdb.sql("UPDATE patients SET mean_texture = NULL WHERE id = 7")  # same schema: the kept plan runs
    hits = _stats(con)["hits"]
    with pytest.raises(NullInputError, match="'mean_texture'"):
        con.sql(SCORE, params={"m": logreg.onnx})
    assert _stats(con)["hits"] == hits + 1
    con.duckdb.sql("ALTER TABLE patients DROP COLUMN mean_texture")
    with pytest.raises(MissingColumnError, match="mean_texture"):
        con.sql(SCORE, params={"m": logreg.onnx})


def test_a_table_changed_on_another_connection_binds_afresh_and_is_read_as_it_is_now(con, logreg, breast_cancer) -> None:
    """A kept plan's statement is a DuckDB relation kept by its text: DATA is checked afresh at each run (here a plain
    cursor replaces the table with other types), and the statement reads the table's rows as they are at each run (a
    cursor deletes most of them)."""
    con.sql(SCORE, params={"m": logreg.onnx})
    other = con.duckdb.cursor()
    other.sql("CREATE OR REPLACE TABLE patients AS SELECT * REPLACE (mean_radius::FLOAT AS mean_radius) FROM patients")
    misses = _stats(con)["misses"]
    rows = not_none(con.sql(SCORE, params={"m": logreg.onnx})).df()
    assert _stats(con)["misses"] == misses + 1
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    con.sql(SCORE, params={"m": logreg.onnx})  # kept again
    other.sql("DELETE FROM patients WHERE id >= 100")
    hits = _stats(con)["hits"]
    rows = not_none(con.sql(SCORE, params={"m": logreg.onnx})).df()
    assert _stats(con)["hits"] == hits + 1 and rows.id.tolist() == list(range(100))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_a_setting_that_changes_data_types_binds_afresh(con, logreg, breast_cancer) -> None:
    """`SET integer_division` turns DATA's INTEGER / INTEGER from DOUBLE into INTEGER: the DATA check sees it, and
    the statement scores the values DuckDB now computes (scikit-learn's scores of the same values)."""
    query = SCORE.replace("DATA = patients", "DATA = (SELECT * REPLACE (CAST(floor(mean_radius * 100) AS INTEGER) / 100 AS mean_radius) FROM patients)")
    hundredths = np.floor(breast_cancer.table.mean_radius * 100)
    for setting, radius in (("false", hundredths / 100), ("true", hundredths // 100)):
        con.duckdb.sql(f"SET integer_division = {setting}")
        misses = _stats(con)["misses"]
        runs = [not_none(con.sql(query, params={"m": logreg.onnx})).df() for _ in range(2)]
        assert _stats(con)["misses"] == misses + 1
        expected = expected_scores(logreg, breast_cancer.table.assign(mean_radius=radius))
        for rows in runs:
            np.testing.assert_allclose(rows.Score, expected[rows.id], atol=PROBA_TOLERANCE, rtol=0)


def test_a_kept_statement_that_draws_a_sequence_draws_anew_each_run(con, logreg) -> None:
    """DuckDB runs a SELECT that calls nextval() when it makes its relation, whose rows are then fixed: such a relation is
    not kept, so each run of the kept plan draws new values."""
    con.duckdb.sql("CREATE SEQUENCE s")
    query = "SELECT nextval('s') AS n, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM patients WHERE id < 3) AS d) WITH (Score FLOAT) AS p"
    runs = [sorted(n for n, _ in not_none(con.sql(query, params={"m": logreg.onnx})).fetchall()) for _ in range(3)]
    assert _stats(con)["hits"] == 2 and runs == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_data_naming_a_python_variable_reads_the_object_it_holds_at_each_run(con, logreg, breast_cancer) -> None:
    """With python_scan_all_frames, DATA may name a caller's DataFrame: DuckDB captures the object when it makes a
    relation, so a relation that captured one is not kept, and a run after the name is rebound reads the new frame."""
    con.duckdb.sql("SET python_scan_all_frames = true")
    query = SCORE.replace("DATA = patients", "DATA = frame")
    frame = breast_cancer.table.iloc[:10]  # noqa: F841 (DuckDB reads it by name)
    first = not_none(con.sql(query, params={"m": logreg.onnx})).df()
    frame = breast_cancer.table.iloc[10:30]  # noqa: F841
    hits = _stats(con)["hits"]
    again = not_none(con.sql(query, params={"m": logreg.onnx})).df()
    assert _stats(con)["hits"] == hits + 1
    assert first.id.tolist() == list(range(10)) and again.id.tolist() == list(range(10, 30))
    assert_scores(logreg, breast_cancer, again.id, again.Score)


def test_data_reading_a_file_rewritten_outside_duckdb_binds_afresh(con, logreg, breast_cancer, tmp_path) -> None:
    """A file can change with no statement to tell DuckDB: each run checks DATA afresh, so a column the file gained is
    in `d.*`, and one it lost is the usual error."""
    path = tmp_path / "patients.parquet"
    query = f"SELECT d.*, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM '{path}') AS d) WITH (Score FLOAT) AS p ORDER BY d.id"
    pq.write_table(pa.Table.from_pandas(breast_cancer.table, preserve_index=False), path)
    con.sql(query, params={"m": logreg.onnx})
    pq.write_table(pa.Table.from_pandas(breast_cancer.table.assign(note="x"), preserve_index=False), path)
    rows = not_none(con.sql(query, params={"m": logreg.onnx})).df()
    assert rows.columns.tolist() == [*breast_cancer.table.columns, "note", "Score"]
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    pq.write_table(pa.Table.from_pandas(breast_cancer.table.drop(columns="mean_texture"), preserve_index=False), path)
    with pytest.raises(MissingColumnError, match="mean_texture"):
        con.sql(query, params={"m": logreg.onnx})


def test_a_python_function_in_data_replaced_with_another_type_binds_afresh(con, logreg, breast_cancer) -> None:
    """DuckDB replaces a Python function with no catalog change: the DATA check of the next run sees the new type."""
    query = SCORE.replace("DATA = patients", "DATA = (SELECT * REPLACE (same(mean_radius) AS mean_radius) FROM patients)")
    con.duckdb.create_function("same", lambda x: x, ["DOUBLE"], "DOUBLE")
    runs = [not_none(con.sql(query, params={"m": logreg.onnx})).df() for _ in range(2)]
    assert_scores(logreg, breast_cancer, runs[1].id, runs[1].Score)
    con.duckdb.remove_function("same")
    con.duckdb.create_function("same", lambda x: str(x), ["DOUBLE"], "VARCHAR")
    with pytest.raises(TypeMismatchError, match="'mean_radius'.*VARCHAR"):
        con.sql(query, params={"m": logreg.onnx})


def test_a_kept_statement_bound_again_onto_a_python_variable_reads_what_it_holds_at_each_run(con, logreg, breast_cancer) -> None:
    """A kept statement whose table is dropped binds again, with python_scan_all_frames, onto a caller's DataFrame of
    that name: a relation that captured an object is dropped, so a run after the name is rebound reads the new frame."""
    con.duckdb.sql("SET python_scan_all_frames = true")
    query = SCORE.replace("DATA = patients", "DATA = frame")
    con.duckdb.sql("CREATE TABLE frame AS SELECT * FROM patients WHERE id < 5")
    con.sql(query, params={"m": logreg.onnx})
    con.duckdb.sql("DROP TABLE frame")
    frame = breast_cancer.table.iloc[10:20]  # noqa: F841 (DuckDB reads it by name)
    first = not_none(con.sql(query, params={"m": logreg.onnx})).df()
    frame = breast_cancer.table.iloc[20:30]  # noqa: F841
    again = not_none(con.sql(query, params={"m": logreg.onnx})).df()
    assert first.id.tolist() == list(range(10, 20)) and again.id.tolist() == list(range(20, 30))
    assert_scores(logreg, breast_cancer, again.id, again.Score)


def test_a_model_read_from_a_table_is_read_each_time(con, logreg, breast_cancer) -> None:
    from conftest import fit

    other = fit("scaler_pipeline", breast_cancer)
    query = SCORE.replace("@m", "(SELECT model FROM models WHERE id = 1)")
    con.sql(query)
    con.duckdb.execute("UPDATE models SET model = ? WHERE id = 1", [other.onnx])
    rows = not_none(con.sql(query)).df()
    np.testing.assert_allclose(rows.Score, expected_scores(other), atol=PROBA_TOLERANCE)
    assert _stats(con)["hits"] == 0


def test_a_cursor_keeps_plans_of_its_own(db_path, logreg) -> None:
    with predictsql.connect(str(db_path)) as con:
        con.sql(SCORE, params={"m": logreg.onnx})
        cursor = con.cursor()
        cursor.sql(SCORE, params={"m": logreg.onnx})
        assert _stats(cursor) == {"hits": 0, "misses": 1} and _stats(con)["hits"] == 0


def test_a_kept_query_in_an_aborted_transaction_fails_as_duckdb_does_and_rollback_works(con, logreg) -> None:
    import duckdb

    for _ in range(2):
        con.sql(SCORE, params={"m": logreg.onnx})
    con.sql("BEGIN")
    with pytest.raises(duckdb.Error):
        con.sql("SELECT error('boom')")
    with pytest.raises(duckdb.TransactionException):
        con.sql(SCORE, params={"m": logreg.onnx})
    con.sql("ROLLBACK")
    assert len(not_none(con.sql(SCORE, params={"m": logreg.onnx})).fetchall()) == con.duckdb.sql("SELECT count(*) FROM patients").fetchall()[0][0]


def test_spark_keeps_plans_per_session(spark, logreg, breast_cancer) -> None:
    """`ps.sql` of the same INLINE statement plans once per SparkSession; a temp view replaced with other types binds afresh."""
    from predictsql.udfs import spark as ps

    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    first = not_none(ps.sql(spark, SCORE, params={"m": logreg.onnx})).toPandas()
    stats = ps._plans[spark].stats
    hits = stats["hits"]
    again = not_none(ps.sql(spark, SCORE, params={"m": logreg.onnx})).toPandas()
    assert stats["hits"] == hits + 1 and again.Score.tolist() == first.Score.tolist()
    spark.sql("SELECT * FROM patients").selectExpr("*", "CAST(mean_radius AS FLOAT) AS r").drop("mean_radius").withColumnRenamed("r", "mean_radius").createOrReplaceTempView("patients")
    misses = stats["misses"]
    rows = not_none(ps.sql(spark, SCORE, params={"m": logreg.onnx})).toPandas()
    assert stats["misses"] == misses + 1
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


FUNCTIONS = r"SELECT count(*) FROM duckdb_functions() WHERE function_name LIKE '\_\_predictsql%' ESCAPE '\'"
MANY = "CREATE TABLE many AS SELECT p.* REPLACE (p.id + 569 * r.range AS id) FROM patients AS p, range({copies}) AS r"


def _functions(con) -> int:
    return con.duckdb.sql(FUNCTIONS).fetchall()[0][0]


def _plan(con, query: str, model: bytes) -> tuple[str, str]:
    (bound,) = con.explain(query, params={"m": model}).statements[0][2]
    return bound.kind, bound.why


def test_small_data_runs_as_a_kept_function_and_large_data_inline(con, logreg, breast_cancer) -> None:
    """AUTO scores DATA of at most SMALL_DATA_ROWS rows with a scoring function kept registered with the plan (no
    INLINE SQL to bind again on each run); DATA of more rows runs INLINE, as before."""
    from predictsql.udfs.duckdb import SMALL_DATA_ROWS

    kind, why = _plan(con, SCORE, logreg.onnx)
    assert kind == "UDF" and why.startswith("DATA has at most 569 rows"), why
    rows = [not_none(con.sql(SCORE, params={"m": logreg.onnx})).df() for _ in range(2)]
    assert _stats(con)["hits"] == 2 and _functions(con) == 1  # explain's plan, kept: its function stays registered
    for frame in rows:
        assert_scores(logreg, breast_cancer, frame.id, frame.Score)
    con.duckdb.sql(MANY.format(copies=SMALL_DATA_ROWS // 569 + 1))
    assert _plan(con, SCORE.replace("patients", "many"), logreg.onnx)[0] == "INLINE"


def test_a_kept_function_that_outgrows_small_data_is_dropped_and_planned_afresh(con, logreg, breast_cancer) -> None:
    """The same statement over a table that grew (same schema, so the kept plan holds): the run that scores more than
    SMALL_DATA_ROWS rows gives the right rows, then drops its plan, and the next run plans INLINE."""
    from predictsql.udfs.duckdb import SMALL_DATA_ROWS

    con.sql(SCORE, params={"m": logreg.onnx})
    copies = SMALL_DATA_ROWS // 569 + 1
    con.duckdb.sql(f"INSERT INTO patients SELECT p.* REPLACE (p.id + 569 * r.range AS id) FROM patients AS p, range(1, {copies}) AS r")
    grown = not_none(con.sql(SCORE, params={"m": logreg.onnx})).df()
    assert len(grown) == 569 * copies and _stats(con)["hits"] == 1 and _functions(con) == 0
    assert_scores(logreg, breast_cancer, grown.id % 569, grown.Score)
    assert _plan(con, SCORE, logreg.onnx)[0] == "INLINE"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT d.id, p.Score FROM {p} WHERE p.Score > 0.5 AND p.label = 1 ORDER BY d.id",
        "SELECT q.id, q.s AS Score FROM (SELECT d.id, p.Score AS s, p.label AS l FROM {p}) AS q WHERE q.s > 0.5 AND q.l = 1 ORDER BY q.id",
    ],
    ids=["outputs", "renamed outputs"],
)
def test_a_where_on_the_outputs_scores_each_row_once(con, logreg, breast_cancer, query: str) -> None:
    """DuckDB copied a deterministic function into the filter over its outputs (under any name), once per conjunct: the
    8,535 rows were scored more than SMALL_DATA_ROWS times in all, which dropped the kept plan on every run. Scored
    once, it is kept."""
    from predictsql.udfs.duckdb import SMALL_DATA_ROWS

    copies = SMALL_DATA_ROWS // (2 * 569) + 1
    con.duckdb.sql(MANY.format(copies=copies))
    query = query.format(p="PREDICT(MODEL = @m, DATA = many AS d) WITH (Score FLOAT, label BIGINT) AS p")
    assert _plan(con, query, logreg.onnx)[0] == "UDF"
    runs = [not_none(con.sql(query, params={"m": logreg.onnx})).df() for _ in range(2)]
    assert _stats(con)["hits"] == 2 and _functions(con) == 1
    expected = np.tile(expected_scores(logreg), copies)
    for frame in runs:
        np.testing.assert_array_equal(frame.id, np.flatnonzero(expected > 0.5))
        np.testing.assert_allclose(frame.Score, expected[expected > 0.5], atol=PROBA_TOLERANCE, rtol=0)


def test_a_kept_function_counts_rows_and_raises_errors_per_statement(con, logreg) -> None:
    """A kept function serves many statements: each run's NULL is reported at its own row, as the first run reports it."""
    con.duckdb.sql("UPDATE patients SET mean_texture = NULL WHERE id = 7")
    errors = []
    for _ in range(3):
        with pytest.raises(NullInputError, match="first at row 7") as raised:
            con.sql(SCORE, params={"m": logreg.onnx})
        errors.append(str(raised.value))
    assert _stats(con)["hits"] == 2 and len(set(errors)) == 1
    assert con.sql("SELECT 1").fetchall() == [(1,)]


def test_plans_pushed_out_of_the_cache_remove_their_functions(con, logreg) -> None:
    from predictsql.udfs.plan_cache import ENTRIES

    for n in range(ENTRIES + 3):
        con.sql(SCORE.replace("ORDER BY", f"WHERE d.id >= {n} ORDER BY"), params={"m": logreg.onnx})
    assert _functions(con) == ENTRIES


def test_a_small_data_plan_made_in_a_transaction_is_not_kept_and_runs_after_rollback(con, logreg, breast_cancer) -> None:
    """DuckDB undoes a function created inside a transaction at ROLLBACK: such a plan is planned as before (INLINE) and
    not kept, so the statement runs again afterwards."""
    con.sql("BEGIN")
    assert _plan(con, SCORE, logreg.onnx)[0] == "INLINE"
    not_none(con.sql(SCORE, params={"m": logreg.onnx}))
    con.sql("ROLLBACK")
    rows = not_none(con.sql(SCORE, params={"m": logreg.onnx})).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_closing_a_connection_or_cursor_removes_its_kept_functions(db_path, logreg) -> None:
    """DuckDB registers Python functions on the database, which every connection to the file in this process shares."""
    with predictsql.connect(str(db_path)) as con, predictsql.connect(str(db_path)) as other:
        cursor = con.cursor()
        cursor.sql(SCORE, params={"m": logreg.onnx})
        con.sql(SCORE, params={"m": logreg.onnx})
        assert _functions(other) == 2
        cursor.close()
        assert _functions(other) == 1
        con.close()
        assert _functions(other) == 0


def test_counting_small_data_changes_nothing_it_gives(con, logreg, breast_cancer) -> None:
    """A registered reader is read once, a sequence advances and random() differs per read: AUTO counts none of them
    (it plans them as DATA of many rows), so the statement sees DATA as it is."""
    import pyarrow as pa

    table = con.duckdb.sql("SELECT * FROM patients").to_arrow_table()
    con.duckdb.register("incoming", pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=100)))
    rows = not_none(con.sql(SCORE.replace("patients", "incoming"), params={"m": logreg.onnx})).df()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    con.duckdb.sql("CREATE SEQUENCE s; CREATE SEQUENCE t; CREATE SEQUENCE u")
    numbered = "SELECT d.n FROM PREDICT(MODEL = @m, DATA = (SELECT nextval('{s}') AS n, * FROM patients WHERE id < 3) AS d{plan}) WITH (Score FLOAT) AS p ORDER BY d.n"
    plans = (("s", ""), ("t", ", PLAN = INLINE"), ("u", ", PLAN = STREAM"))
    counted, inline, streamed = (not_none(con.sql(numbered.format(s=s, plan=plan), params={"m": logreg.onnx})).fetchall() for s, plan in plans)
    assert counted == inline == streamed == [(1,), (2,), (3,)]  # DuckDB's own numbers: planning takes none
    sampled = SCORE.replace("DATA = patients", "DATA = (SELECT * FROM patients WHERE random() < 0.5)")
    assert _plan(con, sampled, logreg.onnx)[0] == "INLINE"


def test_a_macro_over_predict_keeps_working_after_its_plan_is_gone(con, logreg) -> None:
    """A CREATE that DuckDB keeps as SQL must not name a function of one statement: AUTO plans it as before."""
    con.sql("CREATE MACRO scored() AS TABLE SELECT p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    con._plans.clear()
    assert con.duckdb.sql("SELECT count(*) FROM scored()").fetchall() == [(569,)]


def test_a_plan_cache_shared_by_threads_stays_consistent() -> None:
    """A SparkSession's threads share its cache: looking up, keeping and dropping plans from 8 threads at once raised
    KeyError (an LRU moved or popped a plan another thread had just dropped); each text is its own tree's."""
    import sys
    import threading

    from predictsql.udfs.plan_cache import Kept, PlanCache

    cache, trees, errors = PlanCache(), [object() for _ in range(200)], []

    def work(seed: int) -> None:
        try:
            for i in range(5_000):
                tree = trees[(i * 7 + seed) % 200]
                assert cache.text(tree, lambda t: str(id(t))) == str(id(tree))
                key = ("statement", i % 3)
                if i % 2:
                    cache.put(key, Kept(None, {}, ()))
                cache.get(key, lambda sql: ())
                if i % 5 == 0:
                    cache.drop(key)
        except Exception as e:  # what a thread raised fails the test below
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert cache.stats["hits"] + cache.stats["misses"] == 8 * 5_000
