"""The sql layer alone: PREDICT grammar round trips, rewrite goldens, DATA queries, parse errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from predictsql.engine.errors import BindError, SQLSyntaxError
from predictsql.sql.bind import find_predicts
from predictsql.sql.dialect import parse, to_sql
from predictsql.sql.plan import Output, Relation
from predictsql.sql.rewrite import map_default_schema, rewrite

FIXTURES = Path(__file__).parent / "fixtures"
# Every golden PREDICT reads a relation with DATA columns id, x, label and outputs label, Score.
RELATION = Relation("", ("id", "x", "label"), (Output("label", "label_1"), Output("Score", "Score")))


def load_cases(name: str) -> list[tuple[str, list[str]]]:
    """Blocks of `-- title: …` then SQL, parts split by `-- expect`; one case per block."""
    cases = []
    for block in (FIXTURES / name).read_text().strip().split("\n\n"):
        title, *lines = block.strip().splitlines()
        parts = "\n".join(lines).split("-- expect")
        cases.append(pytest.param(title.removeprefix("-- title: "), [p.strip() for p in parts], id=title.removeprefix("-- title: ")))
    return cases


@pytest.mark.parametrize(("title", "parts"), load_cases("roundtrip.sql"))
def test_round_trip(title: str, parts: list[str]) -> None:
    (sql,) = parts
    (tree,) = parse(sql)
    assert to_sql(tree) == sql


@pytest.mark.parametrize(("title", "parts"), load_cases("rewrite.sql"))
def test_rewrite(title: str, parts: list[str]) -> None:
    source, expected = parts
    (tree,) = parse(source)
    calls = find_predicts(tree)
    relations = {c.index: Relation(f"__predict_{c.index}", RELATION.data_columns, RELATION.outputs) for c in calls}
    assert rewrite(tree, relations, {"m": b"\x01", "low": 10}, materialize_ctes=True).sql(dialect="duckdb") == expected


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
    assert map_default_schema(tree.copy(), lambda s: False).sql("duckdb") == "SELECT * FROM t JOIN sales.u ON t.id = u.id"
    assert map_default_schema(tree.copy(), lambda s: True).sql("duckdb") == "SELECT * FROM dbo.t JOIN sales.u ON t.id = u.id"


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
