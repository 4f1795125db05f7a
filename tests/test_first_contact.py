"""What a new user meets first: results that print and read like DuckDB's, readable EXPLAIN, cursors for threads."""

from __future__ import annotations

import datetime
import decimal
import subprocess
import sys
import threading
import uuid
from importlib.util import find_spec
from pathlib import Path

import duckdb
import numpy as np
import pytest

import predictsql
from predictsql.engine.errors import PredictSQLError

from conftest import PROBA_TOLERANCE, assert_scores, not_none

SCORES = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d{plan}) WITH (Score FLOAT) AS p WHERE d.id % 7 = {k} ORDER BY d.id"


def test_a_result_prints_its_rows_as_duckdb_prints_a_relation(con) -> None:
    query = "SELECT id, mean_radius FROM patients ORDER BY id LIMIT 3"
    result = not_none(con.sql(query))
    assert str(result) == repr(result) == str(con.duckdb.sql(query))
    assert "mean_radius" in str(result) and "3 rows" not in str(result).splitlines()[0]


def test_a_result_reads_as_a_relation_does(con) -> None:
    query = "SELECT id, mean_radius, band FROM patients ORDER BY id LIMIT 5"
    result, relation = not_none(con.sql(query)), con.duckdb.sql(query)
    assert result.fetchall() == relation.fetchall()
    numpy, expected = result.fetchnumpy(), relation.fetchnumpy()
    assert list(numpy) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(numpy[name], expected[name])
    if find_spec("polars") is None:
        with pytest.raises(PredictSQLError, match="pip install polars"):
            result.pl()
    else:
        assert result.pl().to_arrow().equals(result.arrow())


def test_catalog_listings_are_results(con, logreg) -> None:
    con.models.register("churn", logreg.onnx, alias="prod")
    listed = con.models.list()
    assert len(listed) == 1 and listed.fetchall()[0][:3] == ("churn", 1, ["prod"])
    assert "churn" in str(listed)
    described = con.models.describe("churn@prod")
    assert described.columns == ["kind", "name", "onnx_type", "shape", "sql_type", "detail"] and "WITH (" in str(described)


def test_explain_prints_sql_one_clause_a_line(con, logreg) -> None:
    explained = con.explain("SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    sql_lines = str(explained).split("\n  __predictsql_")[0].splitlines()
    assert sql_lines[:4] == ["-- read as duckdb", "SELECT", "  p.id,", "  p.Score"]
    assert len(sql_lines) > 30 and max(len(line) for line in sql_lines) < len(explained.sql[0]) / 5  # the 30-feature sum is the longest line


@pytest.mark.parametrize("plan", ["", ", PLAN = UDF", ", PLAN = STREAM"], ids=["AUTO", "UDF", "STREAM"])
def test_eight_threads_on_cursors_give_the_serial_results(db_path: Path, forest, breast_cancer, plan: str) -> None:
    with predictsql.connect(str(db_path)) as con:
        con.sql("DECLARE @m VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1)")  # copied into each cursor
        serial = [not_none(con.sql(SCORES.format(plan=plan, k=k), params={"m": forest.onnx})).fetchall() for k in range(7)]
        results: dict[int, list[tuple]] = {}
        errors: list[BaseException] = []

        def work(k: int) -> None:
            cursor = con.cursor()
            try:
                assert "m" in cursor.variables
                results[k] = not_none(cursor.sql(SCORES.format(plan=plan, k=k % 7), params={"m": forest.onnx})).fetchall()
            except BaseException as e:
                errors.append(e)
            finally:
                cursor.close()

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert [results[k] for k in range(8)] == [serial[k % 7] for k in range(8)]
    rows = [row for k in range(7) for row in serial[k]]
    ids, scores = zip(*rows, strict=True)
    assert_scores(forest, breast_cancer, list(ids), list(scores))


def test_one_connection_from_four_threads_serialises(con, logreg, breast_cancer) -> None:
    """Without cursors, statements from several threads run one at a time instead of failing with DuckDB's 'busy'."""
    results: list[list[tuple]] = []
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results.append(not_none(con.sql(SCORES.format(plan="", k=k), params={"m": logreg.onnx})).fetchall())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 4
    for rows in results:
        ids, scores = zip(*rows, strict=True)
        np.testing.assert_allclose(scores, logreg.estimator.predict_proba(breast_cancer.table.set_index("id").loc[list(ids)][logreg.features.columns])[:, 1], atol=PROBA_TOLERANCE)


def test_a_cursor_sees_the_same_database(con) -> None:
    cursor = con.cursor()
    cursor.duckdb.sql("CREATE TABLE made_by_cursor AS SELECT 1 AS one")
    assert not_none(con.sql("SELECT * FROM made_by_cursor")).fetchall() == [(1,)]
    assert isinstance(cursor.duckdb, duckdb.DuckDBPyConnection)
    cursor.close()


def test_a_failed_statement_aborts_the_open_transaction_as_duckdb_does(con, logreg) -> None:
    """After a failed statement the transaction refuses every statement but ROLLBACK, PREDICT's with DuckDB's own error."""
    con.duckdb.execute("BEGIN")
    con.duckdb.execute("INSERT INTO models VALUES (7, 'seven', ?)", [logreg.onnx])
    with pytest.raises(PredictSQLError):
        con.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = patients, PLANE = STREAM) AS p", params={"m": logreg.onnx})
    with pytest.raises(duckdb.TransactionException, match="aborted"):
        con.sql("SELECT count(*) FROM models")
    predict = "SELECT p.Score FROM PREDICT(MODEL = {}, DATA = patients) WITH (Score FLOAT) AS p"
    for script in (  # the model's, the variable's or DATA's query is refused: DuckDB's error, not a BindError naming PREDICT
        predict.format("(SELECT model FROM models WHERE id = 1)"),
        "DECLARE @v VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1); " + predict.format("@v"),
        predict.format("@m"),
    ):
        with pytest.raises(duckdb.TransactionException, match="aborted"):
            con.sql(script, params={"m": logreg.onnx})
        with pytest.raises(duckdb.TransactionException, match="aborted"):
            con.explain(script, params={"m": logreg.onnx})
    con.duckdb.execute("ROLLBACK")
    assert not_none(con.sql("SELECT count(*) FROM models WHERE id = 7")).fetchall() == [(0,)]
    with pytest.raises(PredictSQLError):  # outside a transaction nothing is left behind either
        con.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = patients, PLANE = STREAM) AS p", params={"m": logreg.onnx})
    assert not_none(con.sql("SELECT count(*) FROM models")).fetchall() == [(1,)]


@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
def test_catalog_writes_join_the_users_transaction(con, logreg, end: str) -> None:
    con.duckdb.execute("CREATE SCHEMA IF NOT EXISTS predictsql")  # DDL outside, so ROLLBACK leaves the empty catalog
    con.models.register("warmup", logreg.onnx)
    con.duckdb.execute("BEGIN")
    assert con.models.register("churn", logreg.onnx, alias="prod") == 1
    assert len(con.models.list()) == 2
    con.duckdb.execute(end)
    assert [row[0] for row in con.models.list().fetchall()] == (["churn", "warmup"] if end == "COMMIT" else ["warmup"])


CTRL_C = """
import os, signal, sys, threading
import numpy as np, pandas as pd, predictsql
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
plan = sys.argv[1]
X = pd.DataFrame(np.random.default_rng(0).random((2000, 5)), columns=[f"x{i}" for i in range(5)])
estimator = LogisticRegression() if plan == "INLINE" else RandomForestClassifier(n_estimators=50, max_depth=10, random_state=0)
labels = (X.x0 > 0.5).astype(int) if plan == "INLINE" else np.random.default_rng(1).integers(0, 2, len(X))  # random: full-depth trees
model = predictsql.export(estimator.fit(X, labels), X, outputs={"score": "Score"})
con = predictsql.connect()
rows = 400_000_000 if plan == "INLINE" else 30_000_000  # several seconds at least, either way
con.duckdb.sql(f"CREATE VIEW t AS SELECT random() AS x0, random() AS x1, random() AS x2, random() AS x3, random() AS x4 FROM range({rows})")
threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    con.sql(f"SELECT sum(p.Score) FROM PREDICT(MODEL = @m, DATA = t AS d, PLAN = {plan}) WITH (Score FLOAT) AS p", params={"m": model})
    print("finished")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
print(con.sql("SELECT count(*) FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM t LIMIT 10) AS d) WITH (Score FLOAT) AS p", params={"m": model}).fetchall())
"""


@pytest.mark.parametrize("plan", ["INLINE", "UDF", "STREAM"])
def test_ctrl_c_is_a_keyboard_interrupt_and_the_connection_stays_usable(plan: str) -> None:
    """SIGINT one second into several seconds of scoring at least (a full-depth forest over 30M rows, a linear model
    over 400M) stops the query as KeyboardInterrupt, and the connection then scores again."""
    done = subprocess.run([sys.executable, "-c", CTRL_C, plan], capture_output=True, text=True, timeout=300)
    assert done.stdout.split("\n")[:2] == ["KeyboardInterrupt", "[(10,)]"], done.stderr[-2000:]


def test_params_of_every_python_kind_become_sql_values(con) -> None:
    row = not_none(con.sql("SELECT isnan(@a) AS a, @b AS b, @c AS c, @d AS d, @e AS e", params={"a": float("nan"), "b": [1, 2], "c": float("-inf"), "d": ("x", "y"), "e": None})).fetchall()
    assert row == [(True, [1, 2], float("-inf"), ["x", "y"], None)]
    values = {"f": np.float32(0.5), "i": np.int64(3), "v": np.array([1, 2]), "day": datetime.date(2020, 1, 2), "at": datetime.datetime(2020, 1, 2, 3, 4, 5),
              "t": datetime.time(1, 2), "dec": decimal.Decimal("2.50"), "id": uuid.UUID(int=5)}  # fmt: skip
    typed = "SELECT 0.5::DOUBLE * 2, 3 + 1, [1, 2], DATE '2020-01-02' + INTERVAL 1 DAY, TIMESTAMP '2020-01-02 03:04:05', TIME '01:02', 2.50, UUID '00000000-0000-0000-0000-000000000005'"
    got = con.sql("SELECT @f * 2, @i + 1, @v, @day + INTERVAL 1 DAY, @at, @t, @dec, @id", params=values)
    assert not_none(got).arrow().schema.types == not_none(con.sql(typed)).arrow().schema.types and not_none(got).fetchall() == not_none(con.sql(typed)).fetchall()
    for bad, message in (({1: 2}, "params must map names to values"), ([1], "params must map names to values"), ({"o": object()}, "@o holds a object, which has no SQL literal")):
        with pytest.raises(PredictSQLError, match=message):
            con.sql("SELECT @o", params=bad)


def test_set_assigns_a_declared_variable(con) -> None:
    con.sql("DECLARE @n INT = 5")
    assert not_none(con.sql("SET @n = 10; SELECT @n AS n")).fetchall() == [(10,)] and con.variables["n"] == 10
    assert not_none(con.sql("SET @n = @n * 2 + 1; SELECT @n AS n")).fetchall() == [(21,)]  # an expression: the engine computes it
    with pytest.raises(PredictSQLError, match="SET @nope: variable @nope is not declared; DECLARE @nope"):
        con.sql("SET @nope = 1")
    assert not_none(con.sql("SET threads = 1; SELECT current_setting('threads') AS t")).fetchall() == [(1,)]  # DuckDB's own SET


@pytest.mark.parametrize("dialect", [None, "tsql"])
def test_set_takes_tsql_compound_assignment(dialect: str | None) -> None:
    """SET @x += v (and -=, *=, /=, %=, &=, |=, ^=) is SET @x = @x + (v): 7 * (2 + 1) - 1, 12 & 10, 6 % 4. Before, DuckDB
    was handed it as written (a raw ParserException)."""
    with predictsql.connect(dialect=dialect) as con:
        rows = con.sql("DECLARE @x INT = 7, @b INT = 12, @y INT = 6; SET @x *= 2 + 1; SET @x -= 1, @b &= 10; SET @y %= 4; SELECT @x, @b, @y")
        assert not_none(rows).fetchall() == [(20, 8, 2)]


@pytest.mark.parametrize("dialect", [None, "tsql"])
def test_a_declared_variable_keeps_its_type_wherever_it_is_read(dialect: str | None) -> None:
    """As in SQL Server: @x BIGINT is BIGINT in arithmetic and typeof, and SET and SELECT @x = cast to it. Before, the
    value was inlined as a bare literal that DuckDB typed itself: 2147483647 + 1 overflowed INTEGER, 5 read as
    DECIMAL(3,2) where DECIMAL(10,2) was declared, and SET @n = 2.7 on an INT kept 2.7."""
    with predictsql.connect(dialect=dialect) as con:
        con.sql("DECLARE @x BIGINT = 2147483647, @d DECIMAL(10, 2) = 5, @n INT = 1, @s SMALLINT")
        got = not_none(con.sql("SELECT typeof(@x), @x + 1, typeof(@d), @d, typeof(@s), @s")).fetchall()
        reference = con.duckdb.execute("SELECT typeof(2147483647::BIGINT), 2147483647::BIGINT + 1, typeof(5::DECIMAL(10,2)), 5::DECIMAL(10,2), typeof(NULL::SMALLINT), NULL").fetchall()
        assert got == reference
        assert not_none(con.sql("SET @n = 2.7; SELECT @n, typeof(@n)")).fetchall() == con.duckdb.execute("SELECT CAST(2.7 AS INT), 'INTEGER'").fetchall()
        assert not_none(con.sql("SELECT @n = 8.6 FROM range(1); SELECT @n")).fetchall() == con.duckdb.execute("SELECT CAST(8.6 AS INT)").fetchall()
        assert not_none(con.cursor().sql("SELECT typeof(@x)")).fetchall() == [("BIGINT",)]  # a cursor copies the types too
        assert not_none(con.sql("SELECT typeof(@x)", params={"x": 2.5})).fetchall() == con.duckdb.execute("SELECT typeof(?)", [2.5]).fetchall()  # a param: its own type
        con.sql("DECLARE @x VARBINARY(MAX) = 0x0A")
        assert not_none(con.sql("SELECT typeof(@x)")).fetchall() == [("BLOB",)]  # declared again: the new type


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [("1e3", "FLOAT", 1000.0), ("2.5E-3", "FLOAT", 0.0025), ("-0.5", "FLOAT", -0.5), ("-7", "INT", -7), ("N'ab'", "NVARCHAR(10)", "ab"), ("NULL", "INT", None), ("'x'", "VARCHAR(1)", "x")],
)
def test_declare_and_set_take_every_kind_of_literal(con, value: str, kind: str, expected: object) -> None:
    """Exponents raised a ValueError; a minus sign, N'…' and NULL were refused as not literals."""
    assert not_none(con.sql(f"DECLARE @v {kind} = {value}; SELECT @v AS v")).fetchall() == [(expected,)]
    assert not_none(con.sql(f"SET @v = {value}; SELECT @v AS v")).fetchall() == [(expected,)]


@pytest.mark.parametrize("dialect", [None, "tsql"])
def test_declare_gives_its_value_the_declared_type_as_tsql_reads_it(db_path, dialect: str | None) -> None:
    """FLOAT is T-SQL's 8 bytes and BIT a boolean in either dialect; DECIMAL rounds the literal as written (1.005 is
    1.01, where a float 1.005 rounds down); an expression and a subquery are cast too. Before, the type was ignored:
    @d was DECIMAL 5.0, @f a DOUBLE of 0.1's FLOAT rounding had it been read as DuckDB's FLOAT."""
    with predictsql.connect(str(db_path), dialect=dialect) as con:
        rows = con.sql(
            "DECLARE @c INT = 7, @f FLOAT = 0.1, @b BIT = 1, @dec DECIMAL(5, 2) = 1.005, @day DATE = '2024-01-02'; "
            "DECLARE @d FLOAT = @c * 2.5, @n BIGINT = (SELECT 40 + 2), @none INT = (SELECT 1 WHERE 1 = 0); "
            "SELECT @c, @f, @b, @dec, @day, @d, @n, @none"
        )
        assert not_none(rows).fetchall() == [(7, 0.1, True, decimal.Decimal("1.01"), datetime.date(2024, 1, 2), 17.5, 42, None)]
        assert isinstance(con.variables["d"], float)
        sized = not_none(con.sql("DECLARE @whole DECIMAL = 1.5, @cash MONEY = 2.25, @list INT = 7; SELECT @whole, @cash, @list")).fetchall()
        assert sized == [(decimal.Decimal("2"), 2.25, 7)]  # T-SQL's DECIMAL is (18, 0); MONEY, which DuckDB lacks, keeps the value
        with pytest.raises(PredictSQLError, match="table variables are not supported; use a temp table"):
            con.sql("DECLARE @t TABLE (a INT, b INT)")


def test_a_catalog_name_with_a_trailing_newline_is_refused(con, logreg) -> None:
    with pytest.raises(PredictSQLError, match="is not usable in a catalog:/ URI"):
        con.models.register("churn\n", logreg.onnx)


def test_a_model_source_is_hashed_once(logreg) -> None:
    from predictsql.engine.sources import ModelSource

    source = ModelSource(logreg.onnx, "m")
    assert "sha256" not in vars(source)
    first = source.sha256
    assert vars(source)["sha256"] is first and source.sha256 is first
