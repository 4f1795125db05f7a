"""The sql layer alone: PREDICT grammar round trips, rewrite goldens, DATA queries, parse errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from predictsql.engine.errors import BindError, SQLSyntaxError
from predictsql.sql.bind import find_predicts
from predictsql.sql.dialect import parse, to_sql
from predictsql.sql.plan import Output, Relation
from predictsql.sql.reading import read
from predictsql.sql.rewrite import Context, apply, map_default_schema, rewrite
from predictsql.sql.statements import Variables

from conftest import not_none

FIXTURES = Path(__file__).parent / "fixtures"
# Every golden PREDICT reads a relation with DATA columns id, x, label and outputs label, Score.
RELATION = Relation("", ("id", "x", "label"), (Output("label", "label_1"), Output("Score", "Score")))


def load_cases(name: str) -> list:
    """Blocks of `-- title: …` then SQL, then `-- expect <engine> (read as <dialect>)` parts; one case per block."""
    cases = []
    for block in (FIXTURES / name).read_text().strip().split("\n\n"):
        title, *lines = block.strip().splitlines()
        source, *expected = re.split(r"^-- expect ", "\n".join(lines), flags=re.MULTILINE)
        expectations = {}
        for part in expected:
            head, _, sql = part.partition("\n")
            engine, reading = not_none(re.fullmatch(r"(\w+) \(read as (\w+)\)", head.strip())).groups()
            expectations[engine] = (reading, sql.strip())
        cases.append(pytest.param(source.strip(), expectations, id=title.removeprefix("-- title: ")))
    return cases


@pytest.mark.parametrize(("sql", "expected"), load_cases("roundtrip.sql"))
@pytest.mark.parametrize("host", ["duckdb", "spark"])
def test_round_trip(sql: str, expected: dict, host: str) -> None:
    """Printing a statement in the dialect it was read in gives it back (DuckDB), or text that reads the same (both)."""
    (statement,) = read(sql, host)
    printed = to_sql(not_none(statement.tree), statement.reading)
    if host == "duckdb":
        assert printed == sql
    (again,) = read(printed, host)
    assert to_sql(not_none(again.tree), again.reading) == printed


@pytest.mark.parametrize(("source", "expected"), load_cases("rewrite.sql"))
@pytest.mark.parametrize("host", ["duckdb", "spark"])
def test_rewrite(source: str, expected: dict, host: str) -> None:
    if host not in expected:
        with pytest.raises(SQLSyntaxError):  # the other engine's syntax: that engine's case only
            read(source, host)
        return
    reading, sql = expected[host]
    (statement,) = read(source, host)
    tree = not_none(statement.tree)  # every case reads PREDICT, so none is the host's own SQL
    relations = [Relation(f"__predict_{c.index}", RELATION.data_columns, RELATION.outputs) for c in find_predicts(tree)]
    assert (statement.reading, rewrite(tree, relations, Variables({"m": b"\x01", "low": 10})).sql(dialect=host)) == (reading, sql)


def test_data_query_carries_the_ctes_it_reads() -> None:
    (tree,) = parse(
        "WITH a AS (SELECT * FROM t), b AS (SELECT * FROM a WHERE x > 1), unused AS (SELECT 1 AS one) "
        "SELECT * FROM PREDICT(MODEL = @m, DATA = b AS d) AS p"
    )
    (call,) = find_predicts(tree)
    assert to_sql(call.data) == "WITH a AS (SELECT * FROM t), b AS (SELECT * FROM a WHERE x > 1) SELECT * FROM b"
    assert (call.alias, call.data_alias, call.model.kind, call.model.value) == ("p", "d", "variable", "m")


def test_predict_inside_a_cte_sees_only_earlier_ctes() -> None:
    (tree,) = parse("WITH a AS (SELECT * FROM PREDICT(MODEL = @m, DATA = b) AS p), b AS (SELECT 1 AS x) SELECT * FROM a")
    (call,) = find_predicts(tree)
    assert to_sql(call.data) == "SELECT * FROM b"


def test_predict_inside_data_belongs_to_the_outer_call() -> None:
    (tree,) = parse("SELECT * FROM PREDICT(MODEL = @a, DATA = (SELECT * FROM PREDICT(MODEL = @b, DATA = t) AS i) AS d) AS p")
    (outer,) = find_predicts(tree)
    (inner,) = find_predicts(outer.data)
    assert (outer.model.value, inner.model.value) == ("a", "b")


def test_dbo_maps_to_the_default_schema_unless_it_exists() -> None:
    (tree,) = parse("SELECT * FROM dbo.t JOIN sales.u ON t.id = u.id")
    assert apply((map_default_schema,), tree, Context(schema_exists=lambda s: False)).sql("duckdb") == "SELECT * FROM t JOIN sales.u ON t.id = u.id"
    assert apply((map_default_schema,), tree, Context(schema_exists=lambda s: True)).sql("duckdb") == "SELECT * FROM dbo.t JOIN sales.u ON t.id = u.id"


@pytest.mark.parametrize(
    ("sql", "line", "col", "fragment"),
    [
        ("SELECT *\nFROM PREDICT(MODEL = @m, DATA = t AS d WITH (x INT) AS p", 2, 50, "Expecting )"),
        ("SELECT * FROM PREDICT(MODEL = @m) AS p", 1, 33, "PREDICT needs DATA"),
        ("SELECT * FROM PREDICT(MODEL = @m, DATA = t, MODEL = @n)", 1, 49, "given twice"),
    ],
)
def test_parse_errors_carry_line_and_column(sql: str, line: int, col: int, fragment: str) -> None:
    with pytest.raises(SQLSyntaxError, match=re.escape(fragment)) as raised:
        parse(sql)
    assert (raised.value.line, raised.value.col) == (line, col)
    assert f"line {line}, column {col}" in str(raised.value)


def test_unknown_runtime_is_refused() -> None:
    (tree,) = parse("SELECT * FROM PREDICT(MODEL = @m, DATA = t, RUNTIME = TORCH)")
    with pytest.raises(BindError, match="RUNTIME = ONNX"):
        find_predicts(tree)


def load_relations() -> dict[str, dict[str, str]]:
    """fixtures/relations.sql: per title, the SQL each engine gets for a PREDICT's relation."""
    cases = {}
    for block in (FIXTURES / "relations.sql").read_text().strip().split("\n\n"):
        title, *parts = re.split(r"^-- expect (\w+)\n", block.strip(), flags=re.MULTILINE)
        cases[title.removeprefix("-- title: ").split(" ")[0].rstrip(":")] = {engine: sql.strip() for engine, sql in zip(parts[0::2], parts[1::2], strict=True)}
    return cases


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_relation_sql_goldens(engine: str) -> None:
    """The INLINE SQL of a logistic regression with known coefficients, and the UDF relation, for each engine."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from sklearn.linear_model import LogisticRegression
    from sqlglot import exp

    import predictsql
    from predictsql.engine import sessions
    from predictsql.engine.binding import OutputRequest, bind
    from predictsql.engine.sources import resolve
    from predictsql.sql.rewrite import function_relation
    from predictsql.udfs import inline

    frame = pd.DataFrame({"x0": [0.0, 1.0, 2.0, 3.0], "x1": [1.0, 0.0, 1.0, 0.0]})
    estimator = LogisticRegression().fit(frame, [0, 0, 1, 1])
    estimator.coef_, estimator.intercept_ = np.array([[0.5, -0.25]]), np.array([0.125])
    model = sessions.load(resolve(predictsql.export(estimator, frame, outputs={"score": "Score"}), "m"))
    assert model.inline is not None
    plan = bind(pa.schema([("id", pa.int64()), ("x0", pa.float32()), ("x1", pa.float64())]), model, [OutputRequest("Score", "FLOAT")])
    expected = load_relations()
    rendered = inline.relation(exp.select("*").from_("t"), plan, model.inline, engine, lambda error: type(error).__name__)
    assert rendered.sql(dialect=engine) == expected["INLINE"][engine]
    function = function_relation(exp.select("*").from_("t"), "score_fn", ["x0", "x1"], ["id", "x0", "x1"], [("Score", "Score")])
    assert function.sql(dialect=engine) == expected["UDF"][engine]


def test_declare_items_and_what_a_value_may_be() -> None:
    from predictsql.sql.statements import Declared, declared

    (statement,) = read("DECLARE @a VARBINARY(MAX) = (SELECT model FROM models), @b INT = 3, @c FLOAT = 2.5, @d VARCHAR = 'x', @e VARBINARY = 0x0A, @f INT = @b, @g BLOB", "duckdb")
    assert statement.reading == "tsql"  # 0x0A is T-SQL's, not DuckDB's
    items = declared(not_none(statement.tree), {})
    assert [i.name for i in items] == list("abcdefg")
    assert items[0].query is not None and to_sql(items[0].query) == "SELECT model FROM models"
    typed = ["SELECT CAST(3 AS INT)", "SELECT CAST(2.5 AS DOUBLE)", "SELECT CAST('x' AS TEXT)", None, "SELECT CAST(@b AS INT)", None]  # cast to the declared type
    assert [to_sql(i.query) if i.query is not None else None for i in items[1:]] == typed
    assert items[4] == Declared("e", value=b"\n") and items[6] == Declared("g")  # binary is never cast: a model stays its bytes
    (untyped,) = parse("DECLARE @x = 1 + 2")
    assert [to_sql(not_none(i.query)) for i in declared(untyped, {})] == ["SELECT 1 + 2"]  # the engine computes an expression
    (bad,) = parse("DECLARE @x INT = COUNT(*)")
    with pytest.raises(BindError, match=r"DECLARE @x = .*COUNT\(\*\).*: an aggregate needs its rows"):
        declared(bad, {})
