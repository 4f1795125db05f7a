"""Properties over generated inputs (hypothesis): names of every shape survive the rewrite, scores do not
depend on how DATA is batched or split, and a model with a fixed batch size scores any row count."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictsql.sql.reading import read

from conftest import not_none, onnx_model

NAMES = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(lambda s: s.strip() and not s.lower().startswith("__predictsql"))
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@SETTINGS
@given(name=NAMES)
def test_a_name_with_quotes_semicolons_unicode_and_case_names_the_same_object(con, logreg, name: str) -> None:
    """A table and a column of any name: the statement stays one statement and reads that table and column."""
    con.duckdb.sql(f"CREATE OR REPLACE TABLE {quoted(name)} AS SELECT *, id * 2 AS {quoted(name)} FROM patients WHERE id < 5")
    sql = f"SELECT d.{quoted(name)} AS v, p.Score FROM PREDICT(MODEL = @m, DATA = {quoted(name)} AS d) WITH (Score FLOAT) AS p ORDER BY v"
    assert len(read(sql, "duckdb")) == 1
    rows = not_none(con.sql(sql, params={"m": logreg.onnx})).fetchall()
    assert [v for v, _ in rows] == [0, 2, 4, 6, 8]
    con.duckdb.sql(f"DROP TABLE {quoted(name)}")


@SETTINGS
@given(batch=st.integers(1, 700), split=st.integers(0, 569), plan=st.sampled_from(["STREAM", "UDF"]))
def test_scores_do_not_depend_on_batch_size_or_on_splitting_data(con, forest, batch: int, split: int, plan: str) -> None:
    """Bit for bit: any BATCH_SIZE gives the default's scores, and scoring A ∪ B gives scoring A, then B."""
    query = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = {data} AS d, PLAN = {plan}{batch}) WITH (Score FLOAT) AS p ORDER BY d.id"

    def scores(data: str, batch_size: int | None = None) -> list[tuple]:
        option = f", BATCH_SIZE = {batch_size}" if batch_size else ""
        return not_none(con.sql(query.format(data=data, plan=plan, batch=option), params={"m": forest.onnx})).fetchall()

    whole = scores("patients")
    assert scores("patients", batch) == whole
    parts = scores(f"(SELECT * FROM patients WHERE id < {split})", batch) + scores(f"(SELECT * FROM patients WHERE id >= {split})")
    assert parts == whole
    assert np.isfinite([s for _, s in whole]).all()


def _fixed_batch_model(size: int) -> bytes:
    """total = a * 2 + b on inputs of the fixed shape [size, 1]."""
    shape = [size, 1]
    inputs = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, shape) for n in ("a", "b")]
    total = onnx.helper.make_tensor_value_info("total", onnx.TensorProto.FLOAT, shape)
    two = onnx.numpy_helper.from_array(np.array([[2]], np.float32), "two")
    nodes = [onnx.helper.make_node("Mul", ["a", "two"], ["twice"]), onnx.helper.make_node("Add", ["twice", "b"], ["total"])]
    return onnx_model(nodes, inputs, [total], [two])


@SETTINGS
@given(size=st.integers(1, 9), rows=st.integers(0, 60), batch=st.integers(1, 70), plan=st.sampled_from(["STREAM", "UDF"]))
def test_a_model_with_a_fixed_batch_size_scores_any_row_count(con, size: int, rows: int, batch: int, plan: str) -> None:
    """Fed in chunks of its size, the last padded: every row gets its own a * 2 + b, computed here by hand."""
    sql = (
        f"SELECT d.i, p.total FROM PREDICT(MODEL = @m, DATA = (SELECT i, i::FLOAT AS a, (i % 7)::FLOAT AS b FROM range({rows}) r(i)) AS d, "
        f"PLAN = {plan}, BATCH_SIZE = {batch}) WITH (total FLOAT) AS p ORDER BY d.i"
    )
    scored = not_none(con.sql(sql, params={"m": _fixed_batch_model(size)})).fetchall()
    assert scored == [(i, float(i * 2 + i % 7)) for i in range(rows)]
