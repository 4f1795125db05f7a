"""The SQL people write: the host engine's SQL untouched, T-SQL verbatim, and scoring that sees what the statement sees.

References are the engine's own result for the same SQL (without PREDICT) and scikit-learn's predictions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

import predictsql
from predictsql.engine.errors import AmbiguousColumnError, BindError, ModelSourceError, NullInputError, PredictSQLError, SQLSyntaxError, TypeMismatchError, UnknownOutputError

from conftest import PROBA_TOLERANCE, assert_scores, duckdb_only, expected_scores, fit, no_stream_on_spark, not_none

DUCKDB_STATEMENTS = [
    "SELECT TIMESTAMP '2020-01-01' AS ts, 'predict' AS w, 'declare @x' AS v",
    "SELECT CAST(-1 AS TINYINT) AS predicted",
    "SELECT [1, 2, 3] AS l, list_transform([1, 2], lambda x: x + 1) AS t, 7 // 2 AS q, 2 ** 3 AS p, 'abc'[1] AS c, {'a': 1} AS s",
    "SELECT id, mean_radius FROM patients QUALIFY row_number() OVER (ORDER BY mean_radius DESC) <= 3 ORDER BY id",
    "SELECT COLUMNS('mean_r.*') FROM patients ORDER BY id LIMIT 2",
    "SELECT * EXCLUDE (target, band) FROM patients ORDER BY id LIMIT 2",
    "FROM patients SELECT id ORDER BY id LIMIT 3",
    "PIVOT (SELECT target, id % 2 AS parity FROM patients) ON parity USING count(*) ORDER BY target",
    "DESCRIBE SELECT id, mean_radius FROM patients",
    "SUMMARIZE SELECT id FROM patients",
    "CALL pragma_version()",
    "PRAGMA version",
    "SHOW TABLES",
    "EXPLAIN SELECT id FROM patients WHERE id < 3",
    "SELECT @(2 - 7) AS a, @ -5.5 AS b",
    "SELECT 'PREDICT(MODEL = x)' AS text, \"predict\" FROM (SELECT 1 AS \"predict\")",
    "SELECT id FROM patients WHERE id < 3 ORDER BY id; SELECT 42 AS answer",
]


@pytest.mark.parametrize("sql", DUCKDB_STATEMENTS)
def test_duckdb_statements_without_predict_are_duckdbs_own(con, sql: str) -> None:
    assert not_none(con.sql(sql)).arrow() == con.duckdb.sql(sql).to_arrow_table()


DUCKDB_TYPES = (  # Arrow alone read them back otherwise: MAP as (key, value) pairs, INTERVAL as MonthDayNano, UUID as text, UHUGEINT as Decimal
    "MAP {'k': 2} AS m, [MAP {'a': 1}] AS ms, 42::BIGNUM AS n, (1, 2) AS t, INTERVAL 3 MONTH AS iv, 1::UHUGEINT AS uh, 7::HUGEINT AS hi, "
    "'f47ac10b-58cc-4372-a567-0e02b2c3d479'::UUID AS u, ['f47ac10b-58cc-4372-a567-0e02b2c3d479'::UUID] AS us, '{\"k\": 1}'::JSON AS js, 'a'::ENUM('a', 'b') AS en"
)


def test_rows_read_back_as_duckdb_reads_them(con, logreg) -> None:
    """fetchall, fetchone, fetchnumpy and print give DuckDB's values and types, around PREDICT too; arrow() stays DuckDB's
    export. (BIT and TIMETZ, which DuckDB exports as bytes or without the offset, are the README's exceptions.)"""
    query = f"SELECT {DUCKDB_TYPES}"
    got, want = not_none(con.sql(query)), con.duckdb.sql(query)
    assert got.fetchall() == want.fetchall() and got.fetchone() == want.limit(1).fetchall()[0] and got.arrow() == want.to_arrow_table()
    assert str(got).splitlines()[:3] == str(want).splitlines()[:3]  # the names and DuckDB's types
    numeric = f"SELECT * EXCLUDE (n, uh) FROM ({query})"  # DuckDB's own fetchnumpy() has no BIGNUM or UHUGEINT
    assert {k: v.tolist() for k, v in not_none(con.sql(numeric)).fetchnumpy().items()} == {k: v.tolist() for k, v in con.duckdb.sql(numeric).fetchnumpy().items()}
    scored = not_none(con.sql(f"SELECT d.* FROM PREDICT(MODEL = @m, DATA = ({query}, * FROM patients) AS d) AS p ORDER BY d.id LIMIT 2", params={"m": logreg.onnx}))
    assert scored.fetchall() == con.duckdb.sql(f"SELECT {DUCKDB_TYPES}, * FROM patients ORDER BY id LIMIT 2").fetchall()


DUCKDB_EXPRESSIONS = ["[d.id, 2]", "list_transform([d.id], lambda x: x + 1)", "d.id // 2", "d.id ** 2", "'abc'[1]", "CAST(-1 AS TINYINT)", "d.id::SMALLINT", "{'a': d.id}", "TIMESTAMP '2020-01-01'"]
DUCKDB_EXPRESSIONS += ["d.band.upper()", "d.band.length()", "d"]  # dot calls, and the whole row of an alias


def test_duckdb_syntax_keeps_its_meaning_around_predict(con, logreg, breast_cancer) -> None:
    columns = ", ".join(f"{e} AS e{i}" for i, e in enumerate(DUCKDB_EXPRESSIONS))
    scored = not_none(con.sql(f"SELECT d.id, {columns}, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p ORDER BY d.id", params={"m": logreg.onnx})).arrow()
    plain = con.duckdb.sql(f"SELECT d.id, {columns} FROM patients AS d ORDER BY d.id").to_arrow_table()
    assert scored.drop_columns(["Score"]) == plain
    assert_scores(logreg, breast_cancer, scored["id"].to_numpy(), scored["Score"].to_numpy())
    rows = not_none(con.sql("SELECT p, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})).fetchall()
    assert rows == [({"Score": score}, score) for _, score in rows]  # p: the outputs' row (it held every DATA column too)


@pytest.mark.parametrize(
    "query",
    [
        "FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p SELECT d.id, p.Score ORDER BY d.id",
        "SELECT * EXCLUDE (target, band) FROM (SELECT d.*, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p) ORDER BY id",
        "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p QUALIFY row_number() OVER (PARTITION BY d.id) = 1 ORDER BY d.id",
    ],
    ids=["FROM-first", "EXCLUDE", "QUALIFY"],
)
def test_duckdb_clauses_compose_with_predict(con, forest, breast_cancer, query: str) -> None:
    rows = not_none(con.sql(query, params={"m": forest.onnx})).df()
    assert_scores(forest, breast_cancer, rows.id, rows.Score)


def test_copy_and_pivot_over_predict(con, forest, breast_cancer, tmp_path: Path) -> None:
    """COPY writes the scored rows, under STREAM too; PIVOT (which reads its source twice) over a model that streams elsewhere."""
    for plan in ("AUTO", "STREAM"):  # COPY runs its query once: it may stream
        target = tmp_path / f"scores_{plan}.parquet"
        con.sql(f"COPY (SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (Score FLOAT) AS p) TO '{target}'", params={"m": forest.onnx})
        rows = con.duckdb.sql(f"SELECT * FROM '{target}' ORDER BY id").df()
        assert_scores(forest, breast_cancer, rows.id, rows.Score)
    pivot = not_none(con.sql("PIVOT (SELECT p.label, d.id % 2 AS parity FROM PREDICT(MODEL = @m, DATA = patients AS d) AS p) ON parity USING count(*)", params={"m": forest.onnx}))
    labels = forest.estimator.predict(forest.features)
    parity = np.arange(len(labels)) % 2
    expected = [(label, int(((labels == label) & (parity == 0)).sum()), int(((labels == label) & (parity == 1)).sum())) for label in (0, 1)]
    assert sorted(pivot.fetchall()) == expected


# --- T-SQL pasted from Microsoft's docs runs as written ---


def test_tsql_brackets_top_and_real(con, logreg, breast_cancer) -> None:
    rows = not_none(con.sql(
        "SELECT TOP (5) d.[id], p.[Score] FROM PREDICT(MODEL = @model, DATA = [dbo].[patients] AS d, RUNTIME = ONNX) WITH ([Score] real) AS p ORDER BY p.Score DESC",
        params={"model": logreg.onnx},
    )).df()
    assert rows.Score.tolist() == sorted(rows.Score, reverse=True) and len(rows) == 5
    np.testing.assert_allclose(rows.Score, np.sort(expected_scores(logreg))[::-1][:5], atol=PROBA_TOLERANCE)


def test_tsql_top_percent_rounds_up_and_with_ties_keeps_the_ties(con, forest, breast_cancer) -> None:
    """SQL Server's TOP n PERCENT is ceil(n% of the rows) (DuckDB's LIMIT n PERCENT rounds down: 5 of 569 for 1%), and
    WITH TIES adds the rows tied with the last; the reference is scikit-learn's scores, ranked here."""
    scores = np.sort(expected_scores(forest).astype(np.float32))[::-1]
    query = "DECLARE @n INT = {n}; SELECT TOP (@n) PERCENT{ties} d.id, p.Score FROM PREDICT(MODEL = @model, DATA = dbo.patients AS d) WITH (Score FLOAT) AS p ORDER BY 2 DESC"
    top = not_none(con.sql(query.format(n=1, ties=""), params={"model": forest.onnx})).df()
    assert len(top) == math.ceil(len(scores) / 100) == 6
    assert_scores(forest, breast_cancer, top.id, top.Score)
    tied = not_none(con.sql(query.format(n=10, ties=" WITH TIES"), params={"model": forest.onnx})).df()
    last = scores[math.ceil(len(scores) / 10) - 1]
    assert len(tied) == (scores >= last).sum() > math.ceil(len(scores) / 10) and abs(tied.Score.min() - last) <= PROBA_TOLERANCE
    assert tied.Score.tolist() == sorted(tied.Score, reverse=True)


def test_a_schema_table_named_like_data_alias_dot_column_is_the_table(con, logreg, breast_cancer) -> None:
    """d.st.a is a field of DATA's struct st only where no query around it reads a table st of a schema d: in a
    subquery over d.st, or a JOIN of it, it is that table's column, as DuckDB reads it."""
    con.sql("CREATE SCHEMA d; CREATE TABLE d.st AS SELECT 42 AS a")
    rows = not_none(con.sql(
        "SELECT d.id, (SELECT d.st.a FROM d.st) AS z, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p ORDER BY d.id",
        params={"m": logreg.onnx},
    )).df()
    assert (rows.z == 42).all()
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    joined = not_none(con.sql(
        "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM patients) AS d) WITH (Score FLOAT) AS p JOIN d.st ON d.st.a = 42 ORDER BY d.id",
        params={"m": logreg.onnx},
    )).df()
    assert len(joined) == len(breast_cancer.table)


def test_tsql_top_ranks_by_the_select_alias_as_tsql_orders(con, breast_cancer) -> None:
    """ORDER BY a SELECT alias that is also a column orders by the alias in T-SQL: the window ranks by it too (it ranked
    by DuckDB's source column, returning the other end of the table)."""
    rows = len(breast_cancer.table)
    top = not_none(con.sql("SELECT TOP 10 PERCENT -id AS id FROM dbo.patients ORDER BY id")).fetchall()
    assert [r[0] for r in top] == list(range(-(rows - 1), -(rows - 1) + math.ceil(rows / 10)))
    tied = not_none(con.sql("SELECT TOP 2 WITH TIES id % 3 AS id FROM dbo.patients ORDER BY id")).fetchall()
    assert len(tied) == math.ceil(rows / 3) and {r[0] for r in tied} == {0}


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT TOP 3 WITH TIES id FROM dbo.patients", "needs an ORDER BY"),
        ("SELECT DISTINCT TOP 10 PERCENT target FROM dbo.patients ORDER BY target", "take the TOP of a subquery"),
        ("SELECT TOP 3 WITH TIES * FROM dbo.patients ORDER BY 2", "name the column"),
        ("SELECT TOP 3 id FROM dbo.patients FOR JSON PATH", r"FOR JSON PATH: T-SQL's rows as one JSON or XML text have no duckdb form"),
        ("SELECT TOP 1 PERCENT id, ROW_NUMBER() OVER (ORDER BY id) AS rn FROM dbo.patients ORDER BY rn", "a window function: number the rows in a subquery"),
    ],
)
def test_tsql_forms_duckdb_cannot_mean_are_refused(con, sql: str, message: str) -> None:
    """Each would have run with another meaning: FOR JSON was dropped (plain rows, and a warning)."""
    with pytest.raises(BindError, match=message):
        con.sql(sql)


def test_tsql_cross_and_outer_apply_join_each_row_to_its_subquery(con, logreg, breast_cancer) -> None:
    """CROSS APPLY over PREDICT and OUTER APPLY (NULLs where the subquery has no row), counted here in pandas: sqlglot
    wrote both as a JOIN LATERAL without ON, which DuckDB refuses."""
    table = breast_cancer.table.set_index("id")
    rows = not_none(con.sql(
        "SELECT TOP 5 d.id, p.Score, q.n FROM PREDICT(MODEL = @m, DATA = dbo.patients AS d) WITH (Score FLOAT) AS p "
        "CROSS APPLY (SELECT COUNT(*) AS n FROM dbo.patients e WHERE e.mean_radius > d.mean_radius) AS q ORDER BY d.id",
        params={"m": logreg.onnx},
    )).df()
    assert rows.n.tolist() == [int((table.mean_radius > table.mean_radius[i]).sum()) for i in rows.id]
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    outer = not_none(con.sql("SELECT d.id, q.x FROM dbo.patients AS d OUTER APPLY (SELECT e.id AS x FROM dbo.patients e WHERE e.id = d.id + 560) AS q ORDER BY d.id")).df()
    assert len(outer) == len(table) and outer.x.isna().sum() == len(table) - 9 and (outer.x[:9] == outer.id[:9] + 560).all()


@pytest.mark.parametrize("dialect", [None, "tsql"])
@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("IF OBJECT_ID('dbo.zz') IS NOT NULL DROP TABLE dbo.zz", "IF"),
        ("DECLARE @i INT = 0; WHILE @i < 3 SET @i = @i + 1", "WHILE"),
        ("EXEC sp_help", "EXEC"),
        ("BEGIN TRY SELECT 1 END TRY BEGIN CATCH SELECT 2 END CATCH", "BEGIN"),
        ("DECLARE @x INT = 1; PRINT @x", "PRINT"),
    ],
)
def test_tsql_procedural_statements_are_refused_with_what_to_write(db_path, sql: str, word: str, dialect: str | None) -> None:
    """Pasted from SQL Server scripts, they gave an AttributeError (or DuckDB's parser error); the connection goes on, and
    DuckDB's own transactions and prepared statements still run."""
    with predictsql.connect(str(db_path), dialect=dialect) as con:
        with pytest.raises(SQLSyntaxError, match=f"T-SQL's {word} statement is not supported: predictsql runs one statement at a time"):
            con.sql(sql)
        if dialect == "tsql":
            with pytest.raises(SQLSyntaxError, match="T-SQL's EXEC statement is not supported"):
                con.sql("EXECUTE sp_executesql N'SELECT 1'")
        assert not_none(con.sql("BEGIN TRANSACTION; SELECT 1 AS one; COMMIT")).fetchall() == [(1,)]
    if dialect is None:
        with predictsql.connect(str(db_path)) as con:
            assert not_none(con.sql("PREPARE q AS SELECT ?::INT + 1 AS v; EXECUTE q(2)")).fetchall() == [(3,)]


def test_tsql_statements_without_semicolons_are_told_to_end_with_one(db_path) -> None:
    """SSMS lets statements follow each other without ';', which sqlglot reads as one unknown command that DuckDB then
    failed to parse (a raw ParserException): an SQLSyntaxError naming the line, and the connection goes on."""
    with predictsql.connect(str(db_path), dialect="tsql") as con:
        with pytest.raises(SQLSyntaxError, match=r"line 3 \(read as tsql\): it starts another statement; end each statement with ';'"):
            con.sql("SELECT 1 AS one;\nCREATE TABLE t (x INT)\nINSERT INTO t VALUES (1)")
        assert not_none(con.sql("CREATE TABLE t (x INT);\nINSERT INTO t VALUES (1);\nSELECT x FROM t")).fetchall() == [(1,)]


@pytest.mark.parametrize(
    ("delete", "left"),
    [
        ("DELETE t FROM t JOIN u ON t.id = u.id WHERE u.id > 0", ([(2,), (3,)], [(0,), (1,)])),
        ("DELETE v FROM t INNER JOIN u AS v ON t.id = v.id", ([(1,), (2,), (3,)], [(0,)])),
        ("DELETE t FROM t CROSS JOIN u WHERE t.id = u.id OR t.id = 2", ([(3,)], [(0,), (1,)])),
    ],
)
@pytest.mark.parametrize("dialect", [None, "tsql"])
def test_tsql_delete_from_a_join_deletes_what_sql_server_deletes(db_path, delete: str, left: tuple, dialect: str | None) -> None:
    """T-SQL's DELETE t FROM t JOIN u (a T-SQL-only form: DuckDB's DELETE is followed by FROM): sqlglot printed it as
    written, which DuckDB cannot parse; it is DELETE … USING."""
    with predictsql.connect(str(db_path), dialect=dialect) as con:
        con.sql("CREATE TEMP TABLE t (id INT); CREATE TEMP TABLE u (id INT); INSERT INTO t VALUES (1), (2), (3); INSERT INTO u VALUES (1), (0);")
        con.sql(delete + ";")
        assert (not_none(con.sql("SELECT id FROM t ORDER BY id;")).fetchall(), not_none(con.sql("SELECT id FROM u ORDER BY id;")).fetchall()) == left
        with pytest.raises(BindError, match=r"DELETE t FROM … JOIN with an outer join or JOIN … USING: write DELETE FROM <table> WHERE \[NOT\] EXISTS"):
            con.sql("DELETE t FROM t LEFT JOIN u ON t.id = u.id WHERE u.id IS NULL;")
        assert not_none(con.sql("SELECT count(*) FROM t;")).fetchall() == [(len(left[0]),)]  # nothing deleted


def test_tsql_query_hints_change_nothing(con) -> None:
    query = "SELECT TOP 3 id FROM dbo.patients ORDER BY id DESC"
    assert not_none(con.sql(query + " OPTION (MAXDOP 1, LABEL = 'nightly')")).fetchall() == not_none(con.sql(query)).fetchall()


def test_tsql_temp_tables_select_into_and_dbo_in_declare(con, forest, breast_cancer) -> None:
    """A #temp table made by SELECT … INTO is DATA (scored inside the statement) and the target of another SELECT … INTO."""
    con.duckdb.execute("INSERT INTO models VALUES (2, 'forest', ?)", [forest.onnx]).fetchall()
    rows = not_none(con.sql(
        """
        DECLARE @model VARBINARY(MAX) = (SELECT model FROM dbo.models WHERE id = 2);
        SELECT * INTO #scratch FROM dbo.patients WHERE id % 2 = 0;
        SELECT d.id, p.Score INTO #scores FROM PREDICT(MODEL = @model, DATA = #scratch AS d) WITH (Score FLOAT) AS p;
        SELECT TOP (10) * FROM #scores ORDER BY Score DESC, id;
        """
    )).df()
    assert len(rows) == 10 and (rows.id % 2 == 0).all()
    assert_scores(forest, breast_cancer, rows.id, rows.Score)
    assert con.duckdb.sql("SELECT count(*) FROM scores").fetchall() == [((len(breast_cancer.table) + 1) // 2,)]  # a TEMP table


def test_data_without_an_alias_is_read_through_its_name(backend, logreg, breast_cancer) -> None:
    backend.execute("CREATE VIEW predict_input AS SELECT * FROM patients")
    rows = backend.sql(
        "SELECT predict_input.id, p.Score FROM PREDICT(MODEL = @m, DATA = dbo.predict_input, RUNTIME = ONNX) WITH (Score FLOAT) AS p ORDER BY predict_input.id",
        params={"m": logreg.onnx},
    )
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_decimal_literals_feed_a_float_input(backend, logreg, breast_cancer) -> None:
    """DuckDB types 1.5 DECIMAL; it is rounded to the model's FLOAT like a DOUBLE."""
    rows = backend.sql(
        "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT * EXCEPT (mean_radius), 12.5 AS mean_radius FROM patients) AS d) WITH (Score FLOAT) AS p ORDER BY d.id",
        params={"m": logreg.onnx},
    )
    changed = breast_cancer.table.assign(mean_radius=12.5)
    np.testing.assert_allclose(rows.Score, expected_scores(logreg, changed), atol=PROBA_TOLERANCE)


@pytest.mark.parametrize("decimal", ["DECIMAL(5, 1)", "DECIMAL(38, 10)"])
@pytest.mark.parametrize("plan", ["AUTO", "INLINE", "UDF", "STREAM"])
def test_a_decimal_rounds_to_the_float_nearest_it_under_every_plan(backend, plan: str, decimal: str, request: pytest.FixtureRequest) -> None:
    """A tree split between float32(3.1) and the next float32 up: DECIMAL 3.1 takes scikit-learn's side (pyarrow's
    own cast gave the float32 above, the other class)."""
    no_stream_on_spark(backend, plan, request)
    below = np.float32(3.1)
    x = pd.DataFrame({"x": [below, np.nextafter(below, np.float32(np.inf))] * 10})
    tree = DecisionTreeClassifier(random_state=0).fit(x, [0, 1] * 10)
    query = f"SELECT p.label FROM PREDICT(MODEL = @m, DATA = (SELECT CAST(3.1 AS {decimal}) AS x) AS d, PLAN = {plan}) WITH (label BIGINT) AS p"
    rows = not_none(backend.sql(query, params={"m": predictsql.export(tree, x)}))
    assert rows.label.tolist() == tree.predict(pd.DataFrame({"x": [3.1]})).tolist() == [0]


def test_explain_says_how_each_statement_was_read(con, logreg) -> None:
    explained = con.explain(
        "SELECT 1 AS one; SELECT TOP (1) d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) AS p; SELECT d.id FROM PREDICT(MODEL = @m, DATA = patients AS d) AS p",
        params={"m": logreg.onnx},
    )
    assert [reading for reading, _, _ in explained.statements] == ["duckdb, as written", "tsql", "duckdb"]
    assert con.explain("SELECT d.id FROM PREDICT(MODEL = @m, DATA = patients AS d) AS p", params={"m": logreg.onnx}).statements[0][0] == "duckdb"


def test_dialect_option_reads_every_statement_as_told(db_path, logreg) -> None:
    with predictsql.connect(str(db_path), dialect="tsql") as con:
        assert not_none(con.sql("SELECT TOP 2 id FROM patients ORDER BY id")).fetchall() == [(0,), (1,)]
    with predictsql.connect(str(db_path), dialect="duckdb") as con, pytest.raises(SQLSyntaxError, match="read as duckdb"):
        con.sql("SELECT TOP (2) d.id FROM PREDICT(MODEL = @m, DATA = patients AS d) AS p", params={"m": logreg.onnx})
    with pytest.raises(BindError, match="dialect = 'mysql'"):
        predictsql.connect(str(db_path), dialect="mysql").sql("SELECT 1")


def test_a_tsql_script_from_ssms_runs_with_nocount_and_go(con, logreg, breast_cancer) -> None:
    """SET NOCOUNT ON does nothing here and GO alone on a line ends a statement, as sqlcmd reads them (sqlglot's GO
    swallowed the rest of the script, and DuckDB refused SET NOCOUNT)."""
    rows = not_none(con.sql("""SET NOCOUNT ON;
GO
DECLARE @model VARBINARY(MAX) = (SELECT model FROM dbo.models WHERE id = 1)
GO
SELECT TOP 5 d.id, p.Score FROM PREDICT(MODEL = @model, DATA = dbo.patients AS d, RUNTIME = ONNX) WITH (Score FLOAT) AS p ORDER BY d.id
go
""")).df()
    assert list(rows.id) == [0, 1, 2, 3, 4]
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_tsql_types_keep_their_sql_server_sizes(db_path, breast_cancer) -> None:
    """T-SQL FLOAT is 8 bytes (FLOAT(n <= 24) and REAL 4); VARBINARY(MAX) and NVARCHAR(MAX) are BLOB and VARCHAR
    (sqlglot made FLOAT REAL, which rounds what a DOUBLE model reads, and BLOB(MAX), which DuckDB refuses). A WITH
    column keeps predictsql's names, FLOAT 4 bytes in every dialect; FLOAT(53) there is 8."""
    import onnx

    from conftest import onnx_model

    doubled = onnx_model(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [None, 1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, [None, 1])],
    )
    with predictsql.connect(str(db_path), dialect="tsql") as con:
        types = not_none(con.sql("SELECT typeof(CAST(1.1 AS FLOAT)), typeof(CAST(1.1 AS FLOAT(53))), typeof(CAST(1.1 AS FLOAT(24))), typeof(CAST(1.1 AS REAL)), typeof(CAST('a' AS NVARCHAR(MAX)))"))
        assert types.fetchall() == [("DOUBLE", "DOUBLE", "FLOAT", "FLOAT", "VARCHAR")]
        con.duckdb.execute("CREATE TABLE doubles AS SELECT 0.1::DECIMAL(18, 17) AS x, ? AS model", [doubled])
        model, data = "(SELECT CAST(model AS VARBINARY(MAX)) FROM doubles)", "(SELECT CAST(x AS FLOAT) AS x FROM doubles)"
        rows = not_none(con.sql(f"SELECT p.y FROM PREDICT(MODEL = {model}, DATA = {data} AS d) WITH (y FLOAT(53)) AS p"))
        assert rows.fetchall() == [(0.1,)]  # through REAL it was 0.10000000149011612


@pytest.mark.parametrize("plan", ["INLINE", "UDF", "STREAM"])
def test_star_modifiers_on_predicts_aliases_mean_what_duckdb_means(con, logreg, plan: str) -> None:
    """d.* and p.* take EXCLUDE, REPLACE, RENAME and ILIKE as DuckDB's stars do (they were dropped: EXCLUDE kept the
    column, REPLACE the old value); the reference is DuckDB's own result over the scores stored in a table."""
    predict = f"PREDICT(MODEL = @m, DATA = (SELECT * FROM patients WHERE id < 20) AS d, PLAN = {plan}) WITH (Score FLOAT, label BIGINT) AS p"
    con.sql(f"CREATE OR REPLACE TABLE p AS SELECT p.Score, p.label FROM {predict} ORDER BY d.id", params={"m": logreg.onnx})
    stored = "(SELECT * FROM patients WHERE id < 20 ORDER BY id) AS d POSITIONAL JOIN p"
    for select in (
        "d.* EXCLUDE (target, band), p.Score",
        "d.* REPLACE (d.id + 100 AS id), p.Score",
        "d.id, p.* EXCLUDE (label)",
        "d.id, p.* RENAME (Score AS s)",
        "d.* ILIKE 'mean_r%', p.label",
    ):
        ours = not_none(con.sql(f"SELECT {select} FROM {predict} ORDER BY d.id", params={"m": logreg.onnx}))
        theirs = con.duckdb.sql(f"SELECT {select} FROM {stored} ORDER BY d.id")
        assert (ours.columns, ours.fetchall()) == (theirs.columns, theirs.fetchall()), select
    with pytest.raises(BindError, match=r"p\.\* EXCLUDE \(nope\): EXCLUDE names nope, which p\.\* does not have; it has Score, label"):
        con.sql(f"SELECT p.* EXCLUDE (nope) FROM {predict}", params={"m": logreg.onnx})
    with pytest.raises(BindError, match=r"p\.\* inside COLUMNS\(p\.\*\): PREDICT's p\.\* is expanded only as a select item"):
        con.sql(f"SELECT max(COLUMNS(p.*)) FROM {predict}", params={"m": logreg.onnx})


# --- scoring sees what the statement sees, under every plan ---


def test_data_columns_arrow_would_change_keep_their_types_and_values(large_data_con, forest) -> None:
    """A stream's Arrow batches give UUID, JSON and ENUM back as VARCHAR, BIT as BLOB, HUGEINT as DECIMAL and TIMETZ without
    its offset: AUTO scores such DATA under UDF, and PLAN = STREAM is a BindError naming the column. The reference: DuckDB's
    own types and rows of the table. (Before, CREATE TABLE … AS SELECT d.*, p.Score changed them.)"""
    con = large_data_con
    con.sql(
        "CREATE TABLE exotic AS SELECT *, uuid() AS u, '{\"k\": 1}'::JSON AS js, (id % 7)::BIT AS bt, id::HUGEINT AS hi, "
        "'a'::ENUM('a', 'b') AS en, '10:00:00+02'::TIMETZ AS ttz FROM patients"
    )
    predict = "PREDICT(MODEL = @m, DATA = exotic AS d{plan}) WITH (Score FLOAT) AS p"
    con.sql(f"CREATE TABLE scored AS SELECT d.*, p.Score FROM {predict.format(plan='')}", params={"m": forest.onnx})
    assert con.duckdb.sql("DESCRIBE scored").fetchall()[:-1] == con.duckdb.sql("DESCRIBE exotic").fetchall()
    assert con.duckdb.sql("SELECT * EXCLUDE (Score) FROM scored EXCEPT SELECT * FROM exotic").fetchall() == []
    np.testing.assert_allclose(con.duckdb.sql("SELECT Score FROM scored").df().Score, expected_scores(forest), atol=PROBA_TOLERANCE)
    with pytest.raises(BindError, match="cannot stream: DATA column u is UUID, which a stream's Arrow batches carry as VARCHAR; use PLAN = UDF"):
        con.sql(f"SELECT d.*, p.Score FROM {predict.format(plan=', PLAN = STREAM')}", params={"m": forest.onnx})
    assert not_none(con.sql(f"SELECT d.id, p.Score FROM {predict.format(plan=', PLAN = STREAM')}", params={"m": forest.onnx})).fetchone()  # not read: not carried


@pytest.mark.parametrize("plan", ["AUTO", "UDF", "INLINE"])
def test_uncommitted_rows_of_the_open_transaction_are_scored(con, large_data_con, logreg, forest, breast_cancer, plan: str) -> None:
    model = logreg if plan == "INLINE" else forest
    con.duckdb.execute("BEGIN")
    con.duckdb.execute("INSERT INTO patients SELECT * REPLACE (id + 1000 AS id) FROM patients")
    rows = not_none(con.sql(f"SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (Score FLOAT) AS p ORDER BY d.id", params={"m": model.onnx})).df()
    con.duckdb.execute("ROLLBACK")
    assert len(rows) == 2 * len(breast_cancer.table)
    np.testing.assert_allclose(rows.Score, np.concatenate([expected_scores(model)] * 2), atol=PROBA_TOLERANCE)
    if plan == "AUTO":
        large_data_con.duckdb.execute("BEGIN")
        (bound,) = large_data_con.explain("SELECT p.Score FROM PREDICT(MODEL = @m, DATA = patients) AS p", params={"m": forest.onnx}).statements[0][2]
        large_data_con.duckdb.execute("ROLLBACK")
        assert bound.kind == "UDF" and "not STREAM: a transaction is open" in bound.why
    with pytest.raises(BindError, match="cannot stream: a transaction is open"):
        con.duckdb.execute("BEGIN")
        try:
            con.sql("SELECT p.Score FROM PREDICT(MODEL = @m, DATA = patients, PLAN = STREAM) AS p", params={"m": forest.onnx})
        finally:
            con.duckdb.execute("ROLLBACK")


def test_a_predict_read_twice_is_scored_for_each_read(con, forest, breast_cancer) -> None:
    """A CTE joined to itself and a scalar subquery: relations a stream could not serve twice."""
    rows = not_none(con.sql(
        "WITH s AS (SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p) "
        "SELECT a.id, a.Score, b.Score AS again, (SELECT max(Score) FROM s) AS top FROM s AS a JOIN s AS b ON a.id = b.id ORDER BY a.id",
        params={"m": forest.onnx},
    )).df()
    assert_scores(forest, breast_cancer, rows.id, rows.Score)
    np.testing.assert_array_equal(rows.Score, rows.again)
    np.testing.assert_allclose(rows.top, expected_scores(forest).max(), atol=PROBA_TOLERANCE)


def test_a_predict_in_a_correlated_subquery(con, large_data_con, forest, breast_cancer) -> None:
    """A subquery over PREDICT that reads the outer row: the engine may run it once per row, so it is scored in-query."""
    rows = not_none(con.sql(
        "SELECT o.id, (SELECT max(p.Score) FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p WHERE d.id = o.id) AS Score "
        "FROM patients AS o WHERE o.id < 20 ORDER BY o.id",
        params={"m": forest.onnx},
    )).df()
    assert rows.id.tolist() == list(range(20))
    assert_scores(forest, breast_cancer, rows.id, rows.Score)
    query = "SELECT (SELECT max(p.Score) FROM PREDICT(MODEL = @m, DATA = patients AS d) AS p WHERE d.id = o.id) FROM patients AS o"
    (bound,) = large_data_con.explain(query, params={"m": forest.onnx}).statements[0][2]
    assert bound.kind == "UDF" and "subquery expression" in bound.why


def test_an_outer_filter_on_data_reaches_the_scoring_function(con, forest, breast_cancer) -> None:
    """DuckDB pushes a WHERE on DATA columns below an in-query scoring function: rows it removes are never scored,
    so a NULL input there raises nothing."""
    data = "(SELECT * REPLACE (CASE WHEN id = 7 THEN NULL ELSE mean_texture END AS mean_texture) FROM patients)"
    rows = not_none(con.sql(f"SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = {data} AS d, PLAN = UDF) WITH (Score FLOAT) AS p WHERE d.id <> 7 ORDER BY d.id", params={"m": forest.onnx})).df()
    assert len(rows) == len(breast_cancer.table) - 1
    assert_scores(forest, breast_cancer, rows.id, rows.Score)


@pytest.mark.parametrize("dialect", ["duckdb", "tsql"])
def test_update_from_and_delete_using_predict_read_its_data_alias(db_path, logreg, breast_cancer, dialect: str) -> None:
    """UPDATE … FROM PREDICT(…, DATA = patients AS d) … WHERE scores.id = d.id (T-SQL's way to store scores) and DuckDB's
    DELETE … USING (T-SQL's DELETE s FROM … JOIN PREDICT): d.x was left unread there (DuckDB: 'Referenced table "d" not found')."""
    with predictsql.connect(str(db_path), dialect=dialect) as con:
        con.sql("CREATE TEMP TABLE scores AS SELECT id, CAST(NULL AS DOUBLE) AS score FROM patients;")
        scoring = "PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p"
        con.sql(f"UPDATE scores SET score = p.Score FROM {scoring} WHERE scores.id = d.id AND d.mean_radius > 0;", params={"m": logreg.onnx})
        rows = not_none(con.sql("SELECT id, score FROM scores ORDER BY id;")).df()
        assert_scores(logreg, breast_cancer, rows.id, rows.score)
        delete = f"DELETE FROM scores USING {scoring} WHERE" if dialect == "duckdb" else f"DELETE s FROM scores AS s JOIN {scoring} ON s.id = d.id WHERE"
        con.sql(f"{delete} {'scores.id = d.id AND' if dialect == 'duckdb' else ''} p.Score < 0.5;", params={"m": logreg.onnx})
        kept = not_none(con.sql("SELECT id FROM scores ORDER BY id;")).df().id.to_numpy()
        np.testing.assert_array_equal(kept, breast_cancer.table.id.to_numpy()[expected_scores(logreg, breast_cancer.table) >= 0.5])


# --- errors are typed, never guessed ---


def test_a_declared_variable_without_a_value_is_a_null_model(con) -> None:
    con.sql("DECLARE @e VARBINARY(MAX);")
    with pytest.raises(ModelSourceError, match="MODEL @e is NULL"):
        con.sql("SELECT * FROM PREDICT(MODEL = @e, DATA = patients) AS p")


def test_a_declared_type_holds_on_both_engines(backend) -> None:
    """@x BIGINT adds as BIGINT, SET @n casts to @n's INT (each engine's own CAST: DuckDB rounds, Spark truncates)."""
    got = backend.sql("DECLARE @x BIGINT = 2147483647, @n INT = 1; SET @n = 2.7; SELECT @x + 1 AS v, typeof(@x) AS t, @n AS n")
    reference = backend.query("SELECT CAST(2147483647 AS BIGINT) + 1 AS v, typeof(CAST(1 AS BIGINT)) AS t, CAST(2.7 AS INT) AS n")
    pd.testing.assert_frame_equal(not_none(got), reference)


def test_select_assigns_variables_and_a_declare_may_read_predict(backend, logreg, breast_cancer) -> None:
    """T-SQL's SELECT @v = … FROM … takes the last row's values (no row leaves the variable be), as the Synapse idiom
    SELECT @model = model FROM models WHERE … does; a DECLARE's subquery may read PREDICT. Before, @n = COUNT(*) was a
    comparison and the DECLARE a ModelSourceError."""
    count = backend.sql("DECLARE @n INT = 0; SELECT @n = COUNT(*) FROM patients; SELECT @n AS n")
    assert not_none(count).n.tolist() == [len(breast_cancer.table)]
    rows = not_none(backend.sql(
        "DECLARE @m VARBINARY(MAX); SELECT @m = model FROM models WHERE id = 1; "
        "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p"
    ))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
    mean = not_none(backend.sql(
        "DECLARE @m VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1), @k INT = 5; "
        "DECLARE @mean FLOAT = (SELECT AVG(p.Score) FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p); "
        "SELECT @k = id FROM patients WHERE id < 0; SELECT @mean AS mean, @k AS k"
    ))
    assert abs(mean["mean"][0] - expected_scores(logreg).mean()) < PROBA_TOLERANCE and mean.k.tolist() == [5]
    with pytest.raises(BindError, match="variable @never is not declared"):
        backend.sql("SELECT @never = 1")


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        ("SELECT PREDICT(MODEL = @m, DATA = patients) FROM patients", BindError, "is a table source, not a value: write it in FROM or JOIN"),
        ("SELECT * FROM PREDICT(MODEL = @m, DATA = patients, PLANE = STREAM) AS p", BindError, "PREDICT option PLANE is not one predictsql knows; did you mean PLAN?"),
        ("SELECT p.Score FROM PREDICT(MODEL = @m, DATA = patients) WITH (Score INT) AS p", TypeMismatchError, r"is FLOAT and cannot be returned as INT .*CAST\(p.Score AS INT\)"),
        ("SELECT " + "(" * 60 + "p.Score" + ")" * 60 + " FROM PREDICT(MODEL = @m, DATA = patients) WITH (Score FLOAT) AS p", SQLSyntaxError, "nests too deeply"),
    ],
    ids=["PREDICT as a value", "misspelled option", "lossy WITH type", "deep nesting"],
)
def test_bad_statements_are_predictsql_errors(backend, logreg, breast_cancer, sql: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        backend.sql(sql, params={"m": logreg.onnx})
    rows = backend.sql("SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)  # the connection is still usable


@duckdb_only("views over PREDICT are stored in the DuckDB file")
def test_views_over_predict_views_and_replacing_either_kind_survive_reopening(backend, db_path, logreg, breast_cancer) -> None:
    con = backend.con
    con.sql("CREATE VIEW scored AS SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p")
    con.sql("CREATE VIEW high AS SELECT * FROM scored WHERE Score > 0.5")
    con.sql("CREATE VIEW plain AS SELECT id FROM patients")
    con.sql("CREATE OR REPLACE VIEW plain AS SELECT s.id, s.Score FROM scored AS s")
    con.sql(
        "CREATE OR REPLACE VIEW scored AS SELECT d.id, p.Score "
        "FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = (SELECT * FROM patients WHERE id < 100) AS d) WITH (Score FLOAT) AS p"
    )
    backend.close()
    with predictsql.connect(str(db_path)) as reopened:
        high = not_none(reopened.sql("SELECT * FROM high ORDER BY id")).df()
        plain = not_none(reopened.sql("SELECT * FROM plain ORDER BY id")).df()
        reopened.sql("CREATE OR REPLACE VIEW high AS SELECT 1 AS one")
        assert not_none(reopened.sql("SELECT * FROM high")).fetchall() == reopened.duckdb.sql("SELECT * FROM high").fetchall() == [(1,)]
    expected = expected_scores(logreg)[:100]
    assert high.id.tolist() == list(np.flatnonzero(expected > 0.5))
    assert_scores(logreg, breast_cancer, plain.id, plain.Score)
    assert plain.id.tolist() == list(range(100))


def test_pivot_and_sample_after_a_stored_view_or_predict_apply_to_its_rows(con, logreg) -> None:
    """PIVOT and TABLESAMPLE after a stored PREDICT view's name (or a PREDICT's alias) apply to its rows, as DuckDB applies
    them to a table of those rows (putting a subquery in the table's place had dropped both: 569 unpivoted rows came back)."""
    view = "SELECT d.id % 3 AS g, CAST(p.Score > 0.5 AS INTEGER) AS high FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p"
    con.sql(f"CREATE VIEW scored AS {view}")
    con.sql(f"CREATE TABLE scored_rows AS {view}")
    pivot = "SELECT * FROM {t} PIVOT (count(*) FOR high IN (0, 1)) ORDER BY g"
    assert not_none(con.sql(pivot.format(t="scored"))).fetchall() == con.duckdb.sql(pivot.format(t="scored_rows")).fetchall()
    sample = "SELECT count(*) FROM {t} TABLESAMPLE 0 ROWS"
    assert not_none(con.sql(sample.format(t="scored"))).fetchall() == con.duckdb.sql(sample.format(t="scored_rows")).fetchall() == [(0,)]
    for plan in ("INLINE", "UDF", "STREAM"):
        predict = f"PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"
        assert not_none(con.sql(sample.format(t=predict), params={"m": logreg.onnx})).fetchall() == [(0,)], plan


def test_the_pivot_statement_over_predict_takes_order_by_and_limit(con, logreg) -> None:
    """DuckDB's PIVOT statement ends in ORDER BY / LIMIT as a query does; sqlglot stopped before them (a syntax error)."""
    scored = "SELECT d.id % 3 AS g, CAST(p.Score > 0.5 AS INTEGER) AS high FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p"
    con.sql(f"CREATE TABLE pivot_rows AS {scored}", params={"m": logreg.onnx})
    for tail in ("ORDER BY g DESC", "ORDER BY g LIMIT 2", "ORDER BY g LIMIT 1 OFFSET 1"):
        statement = "PIVOT ({t}) ON high USING count(*) GROUP BY g " + tail
        expected = con.duckdb.sql(statement.format(t="SELECT * FROM pivot_rows")).fetchall()
        assert not_none(con.sql(statement.format(t=scored), params={"m": logreg.onnx})).fetchall() == expected, tail
        assert len(expected) == (3 if tail == "ORDER BY g DESC" else 2 if "LIMIT 2" in tail else 1)


@pytest.mark.parametrize("plan", ["INLINE", "UDF", "STREAM"])
def test_explain_over_predict_is_the_engines_explain_of_the_rewritten_statement(con, logreg, breast_cancer, plan: str) -> None:
    """EXPLAIN and EXPLAIN ANALYZE of a PREDICT statement return DuckDB's own plan rows for the statement predictsql runs
    (they reached DuckDB as written: a ParserException); ANALYZE runs it, and a NULL input fails it as the query would."""
    query = f"SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (Score FLOAT) AS p WHERE p.Score > 0.5"
    for prefix, shown in (("EXPLAIN", "Score"), ("EXPLAIN ANALYZE", "Total Time")):
        rows = not_none(con.sql(f"{prefix} {query}", params={"m": logreg.onnx}))
        assert rows.columns == con.duckdb.sql(f"{prefix} SELECT 1").columns
        assert shown in rows.fetchall()[0][1], prefix
    con.duckdb.sql("UPDATE patients SET mean_radius = NULL WHERE id = 3")
    with pytest.raises(NullInputError, match="mean_radius"):
        con.sql(f"EXPLAIN ANALYZE {query}", params={"m": logreg.onnx})
    assert not_none(con.sql("EXPLAIN SELECT count(*) FROM patients")).columns == ["explain_key", "explain_value"]
    top = f"EXPLAIN SELECT TOP 5 d.id FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"
    assert "Limit: 5" in not_none(con.sql(top, params={"m": logreg.onnx})).fetchall()[0][1]  # read as T-SQL, as without EXPLAIN
    with pytest.raises(SQLSyntaxError, match="line 1"):  # the statement's own syntax error, not the engine's of the PREDICT
        con.sql(f"EXPLAIN SELECT d.id, FROM WHERE {query[query.index('PREDICT'):]}", params={"m": logreg.onnx})
    with pytest.raises(SQLSyntaxError, match="EXPLAIN of CREATE over PREDICT is not supported"):  # ANALYZE would keep rewritten SQL
        con.sql(f"EXPLAIN ANALYZE CREATE VIEW scored AS {query}", params={"m": logreg.onnx})
    assert con.duckdb.sql("SELECT count(*) FROM duckdb_views() WHERE view_name = 'scored'").fetchall() == [(0,)]


def test_explain_of_what_no_engine_explains_says_what_to_write(con, logreg, caplog) -> None:
    """EXPLAIN of predictsql's own statements, which no engine plans, and of a macro, PIVOT or DESCRIBE over PREDICT, is a
    PredictSQLError naming what to write (EXPLAIN DECLARE and EXPLAIN CREATE MACRO reached DuckDB as written, T-SQL's
    reading a Command: its ParserException); the script the fix names explains the PREDICT query. sqlglot's warning that
    it read a Command is not printed besides."""
    con.duckdb.execute("CREATE TABLE explained AS SELECT ?::BLOB AS m", [logreg.onnx])
    declare = "DECLARE @m VARBINARY(MAX) = (SELECT m FROM explained)"
    query = "SELECT p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p"
    for prefix in ("EXPLAIN", "EXPLAIN ANALYZE"):
        with pytest.raises(SQLSyntaxError, match=r"EXPLAIN of DECLARE is not supported: .*DECLARE @m ... ; EXPLAIN SELECT"):
            con.sql(f"{prefix} {declare}; {query}")
    with pytest.raises(SQLSyntaxError, match="EXPLAIN of DESCRIBE MODEL is not supported: run DESCRIBE MODEL without EXPLAIN"):
        con.sql("EXPLAIN DESCRIBE MODEL (SELECT m FROM explained)")
    assert con.explain("DESCRIBE MODEL (SELECT m FROM explained)").sql == ["DESCRIBE MODEL (SELECT m FROM explained)"]  # predictsql's own: no plan
    assert "Score" in not_none(con.sql(f"{declare}; EXPLAIN {query}")).fetchall()[0][1]
    for statement, fix in (
        (f"CREATE MACRO scored() AS TABLE {query}", "EXPLAIN of CREATE over PREDICT is not supported: run the statement, then EXPLAIN"),
        (f"PIVOT ({query.replace('SELECT', 'SELECT d.id % 2 AS k,')}) ON k USING sum(Score)", "EXPLAIN of PIVOT over PREDICT is not supported: EXPLAIN the query inside the PIVOT"),
        (f"UNPIVOT ({query}) ON Score INTO NAME n VALUE v", "EXPLAIN of UNPIVOT over PREDICT is not supported"),
        (f"DESCRIBE {query}", "EXPLAIN of DESCRIBE over PREDICT is not supported: EXPLAIN the query inside the DESCRIBE"),
    ):
        with pytest.raises(SQLSyntaxError, match=fix):
            con.sql(f"{declare}; EXPLAIN {statement}")
    assert con.duckdb.sql("SELECT count(*) FROM duckdb_functions() WHERE function_name = 'scored'").fetchall() == [(0,)]
    assert [r.getMessage() for r in caplog.records if r.name == "sqlglot"] == []


def test_explain_without_analyze_reads_no_data_row_of_a_stream(con, logreg) -> None:
    """EXPLAIN (and DESCRIBE) of a STREAM plan only plans: DATA is not read (its stream used to start, reading and scoring
    rows nobody read, a whole sort of DATA first), so a sequence DATA draws from is untouched; EXPLAIN ANALYZE runs it."""
    con.duckdb.sql("CREATE SEQUENCE s")
    query = "SELECT sum(p.Score) FROM PREDICT(MODEL = @m, DATA = (SELECT nextval('s') AS n, * FROM patients ORDER BY n DESC) AS d, PLAN = STREAM) WITH (Score FLOAT) AS p"
    plan = not_none(con.sql(f"EXPLAIN {query}", params={"m": logreg.onnx})).fetchall()[0][1]
    assert "PYTHON_ARROW_SCAN" in plan  # the stream's relation, planned
    assert not_none(con.sql(f"DESCRIBE {query}", params={"m": logreg.onnx})).fetchall() == con.duckdb.sql("DESCRIBE SELECT sum(0.5::FLOAT) AS \"sum(p.Score)\"").fetchall()
    assert con.duckdb.sql("SELECT nextval('s')").fetchall() == [(1,)]
    con.sql(f"EXPLAIN ANALYZE {query}", params={"m": logreg.onnx})
    assert con.duckdb.sql("SELECT nextval('s')").fetchall() == [(2 + 569,)]  # breast_cancer's 569 rows were drawn


def test_nan_and_infinity_are_scored_alike_under_every_plan(con, dataset) -> None:
    """NaN and inf are values, not NULLs: every plan returns what onnxruntime returns for them (NaN scores, label 0)."""
    fitted = fit("scaler_pipeline", dataset)
    column = fitted.features.columns[1]
    con.duckdb.register("frame", dataset.table)
    con.duckdb.sql("CREATE TABLE samples AS SELECT * FROM frame")
    data = f"(SELECT * REPLACE (CASE WHEN id < 3 THEN 'NaN'::DOUBLE WHEN id = 3 THEN 'inf'::DOUBLE ELSE {column} END AS {column}) FROM samples WHERE id < 8)"
    query = f"SELECT d.id, p.label, p.probabilities FROM PREDICT(MODEL = @m, DATA = {data} AS d, PLAN = {{plan}}) WITH (label BIGINT, probabilities FLOAT[]) AS p ORDER BY d.id"
    results = {plan: not_none(con.sql(query.format(plan=plan), params={"m": fitted.onnx})).df() for plan in ("STREAM", "UDF", "INLINE")}
    for plan in ("UDF", "INLINE"):
        assert results[plan].label.tolist() == results["STREAM"].label.tolist()
        np.testing.assert_allclose(np.stack(results[plan].probabilities), np.stack(results["STREAM"].probabilities), atol=PROBA_TOLERANCE)
    assert np.isnan(np.stack(results["INLINE"].probabilities)[:3]).all()


def test_every_failure_is_a_predictsql_error_or_the_engines_own(con, logreg) -> None:
    import duckdb

    with pytest.raises(duckdb.BinderException, match='"nope" not found'):  # unqualified: DuckDB's own
        con.sql("SELECT nope FROM PREDICT(MODEL = @m, DATA = patients AS d) AS p", params={"m": logreg.onnx})
    for plan in ("STREAM", "UDF", "INLINE"):  # qualified: DuckDB's error would name the relation the rewrite made, for d.x too
        predict = f"FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"
        with pytest.raises(BindError, match=r"^d\.nope: PREDICT's DATA d \(model @m, sha \w+\) has no column nope$"):
            con.sql(f"SELECT d.nope {predict}", params={"m": logreg.onnx})
        with pytest.raises(UnknownOutputError, match=r"^p\.Scor: PREDICT p \(model @m, sha \w+\) has no column Scor: .* outputs Score; did you mean p\.Score\?$"):
            con.sql(f"SELECT p.id {predict} WHERE p.Scor > 0.5", params={"m": logreg.onnx})
    with pytest.raises(duckdb.ParserException, match="unterminated string"):
        con.sql("SELECT 'no end")
    with pytest.raises(PredictSQLError):
        con.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = patients, NULLS = MAYBE) AS p", params={"m": logreg.onnx})


# --- Spark SQL around PREDICT ---

SPARK_STATEMENTS = [
    "SELECT `id`, transform(array(1, 2), x -> x + 1) AS t, 'predict' AS w FROM patients WHERE id < 3 ORDER BY `id`",
    "SELECT id, e FROM patients LATERAL VIEW explode(array(1, 2)) ex AS e WHERE id < 2 ORDER BY id, e",
    "SELECT id FROM patients WHERE id < 4 DISTRIBUTE BY id SORT BY id",
]


@pytest.mark.parametrize("sql", SPARK_STATEMENTS)
def test_spark_statements_without_predict_are_sparks_own(spark, breast_cancer, sql: str) -> None:
    from predictsql.udfs import spark as ps

    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    assert not_none(ps.sql(spark, sql)).collect() == spark.sql(sql).collect()


def test_tsql_top_percent_and_ties_on_spark_say_what_to_write(spark) -> None:
    """Spark SQL has no QUALIFY and no such LIMIT: T-SQL's TOP … PERCENT / WITH TIES is refused before Spark reads it."""
    from predictsql.udfs import spark as ps

    with pytest.raises(BindError, match=r"spark SQL has no such limit; number the rows with RANK\(\) OVER"):
        ps.sql(spark, "SELECT TOP 10 PERCENT WITH TIES id FROM [patients] ORDER BY id")


def test_spark_data_columns_differing_only_in_case_are_ambiguous(spark, logreg, breast_cancer) -> None:
    """Spark reads mean_radius and MEAN_RADIUS as one name: an AmbiguousColumnError, not Spark's AMBIGUOUS_REFERENCE on
    an alias of predictsql's."""
    from predictsql.udfs import spark as ps

    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    with pytest.raises(AmbiguousColumnError, match="DATA columns mean_radius and MEAN_RADIUS differ only in case"):
        ps.sql(spark, "SELECT p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT *, mean_texture AS MEAN_RADIUS FROM patients) AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})


def test_spark_data_with_timestamps_the_model_does_not_read_is_scored(spark, forest, breast_cancer) -> None:
    """A TIMESTAMP column (alone or in a struct) beside the features: its Arrow type needs the session's time zone,
    without which binding DATA failed with an empty message."""
    from predictsql.udfs import spark as ps

    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    data = "(SELECT *, TIMESTAMP'2024-01-01 10:00:00' AS created, named_struct('at', TIMESTAMP'2024-01-02 00:00:00') AS nested FROM patients)"
    rows = not_none(ps.sql(spark, f"SELECT d.id, d.created, p.Score FROM PREDICT(MODEL = @m, DATA = {data} AS d) WITH (Score FLOAT) AS p", params={"m": forest.onnx})).toPandas()
    assert len(rows) == len(breast_cancer.table) and rows.created.notna().all()
    assert_scores(forest, breast_cancer, rows.id, rows.Score)


def test_spark_syntax_keeps_its_meaning_around_predict(spark, forest, breast_cancer) -> None:
    from predictsql.udfs import spark as ps

    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    rows = not_none(ps.sql(
        spark,
        "SELECT `d`.`id`, transform(array(`d`.`id`), x -> x + 1) AS t, e, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p "
        "LATERAL VIEW explode(array(1, 2)) ex AS e DISTRIBUTE BY `d`.`id`",
        params={"m": forest.onnx},
    )).toPandas().sort_values(["id", "e"])
    assert rows.e.tolist() == [1, 2] * len(breast_cancer.table)
    assert [list(t) for t in rows.t] == [[i + 1] for i in rows.id]
    assert_scores(forest, breast_cancer, rows.id, rows.Score)


def test_spark_analysis_errors_stay_sparks_own(spark, logreg, breast_cancer) -> None:
    """A misspelled column over an INLINE PREDICT is Spark's AnalysisException, not a predictsql error its plan dump quotes;
    one qualified by DATA's alias is a BindError, as on DuckDB (Spark's would name the relation the rewrite made)."""
    from pyspark.errors import AnalysisException

    from predictsql.udfs import spark as ps

    spark.createDataFrame(breast_cancer.table).createOrReplaceTempView("patients")
    with pytest.raises(AnalysisException, match="nope"):
        ps.sql(spark, "SELECT nope, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    with pytest.raises(BindError, match=r"^d\.nope: PREDICT's DATA d \(model @m, sha \w+\) has no column nope$"):
        ps.sql(spark, "SELECT d.nope, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})


@pytest.mark.parametrize("plan", ["AUTO", "UDF", "STREAM", "INLINE"])
def test_data_reading_a_recursive_cte_keeps_it_recursive(con, logreg, breast_cancer, plan: str) -> None:
    """DATA carried as a query of its own copies the CTEs it reads, WITH RECURSIVE included (without it DuckDB refused
    the CTE's reading of itself as a circular reference)."""
    recursive = "WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n < 4) "
    query = f"{recursive}SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT x.* FROM patients AS x JOIN r ON x.id = r.n) AS d, PLAN = {plan}) WITH (Score FLOAT) AS p ORDER BY d.id"
    rows = not_none(con.sql(query, params={"m": logreg.onnx})).df()
    assert len(rows) >= 4 and list(rows.id) == [i for (i,) in con.duckdb.sql(f"{recursive}SELECT x.id FROM patients AS x JOIN r ON x.id = r.n ORDER BY 1").fetchall()]
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)
