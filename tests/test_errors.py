"""Bad input: each error names the model, the column and the fix, is raised before scoring where it
can be, returns no partial rows, writes nothing, and leaves the connection usable. Cases that take
`backend` run on DuckDB and on Spark; those that take `con` test DuckDB's own behaviour."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

import predictsql
from predictsql.engine.errors import (
    AmbiguousColumnError,
    BindError,
    MissingColumnError,
    ModelError,
    ModelSourceError,
    NullInputError,
    PredictSQLError,
    ScoringError,
    SQLSyntaxError,
    TypeMismatchError,
    UnknownOutputError,
    UnsafeModelError,
)

from conftest import PROBA_TOLERANCE, expected_scores, no_stream_on_spark, not_none, onnx_model

SCORE = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = {data} AS d) WITH (Score FLOAT) AS p"
SCORE_WITH_PLAN = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = {data} AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"


def assert_usable(con) -> None:
    """After a failure the same connection still runs PREDICT and plain SQL."""
    assert not_none(con.sql("SELECT count(*) FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients) WITH (Score FLOAT) AS p")).fetchone() == (569,)


def assert_backend_usable(backend) -> None:
    """The same, on either engine of the shared suite."""
    assert not_none(backend.sql("SELECT count(*) AS n FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients) WITH (Score FLOAT) AS p")).n[0] == 569




def run(con, logreg, data: str, **params):
    return con.sql(SCORE.format(data=data), params={"m": logreg.onnx, **params})


def run_plan(con, model, data: str, plan: str):
    return con.sql(SCORE_WITH_PLAN.format(data=data, plan=plan), params={"m": model.onnx})


def test_missing_column_suggests_the_close_name(con, logreg) -> None:
    with pytest.raises(MissingColumnError) as raised:
        run(con, logreg, "(SELECT * RENAME (mean_radius AS mean_radus) FROM patients)")
    message = str(raised.value)
    assert "'mean_radius'" in message and "model @m, sha" in message
    assert "did you mean 'mean_radus'? Write it AS mean_radius" in message
    assert_usable(con)


def test_ambiguous_column(logreg, breast_cancer) -> None:
    frame = breast_cancer.features.drop(columns=["band", "mean_radius"]).assign(MEAN_RADIUS=1.0, Mean_Radius=2.0)
    with pytest.raises(AmbiguousColumnError, match="'mean_radius'.*matches DATA columns 'MEAN_RADIUS', 'Mean_Radius'"):
        predictsql.predict(logreg.onnx, frame)


def test_case_insensitive_match_binds(con, logreg, breast_cancer) -> None:
    rows = run(con, logreg, "(SELECT id, * EXCLUDE (id, mean_radius), mean_radius AS MEAN_RADIUS FROM patients)").df()
    np.testing.assert_allclose(rows.Score, expected_scores(logreg), atol=PROBA_TOLERANCE)


def test_unknown_output_lists_outputs(backend, logreg) -> None:
    with pytest.raises(UnknownOutputError) as raised:
        backend.sql("SELECT p.Scor FROM PREDICT(MODEL = @m, DATA = patients) WITH (Scor FLOAT) AS p", params={"m": logreg.onnx})
    assert "Did you mean Score?" in str(raised.value)
    assert "Outputs: label, probabilities, Score, probabilities_0, probabilities_1" in str(raised.value)
    assert_backend_usable(backend)


def test_multi_valued_output_as_scalar_says_how_to_declare_it(backend, logreg) -> None:
    with pytest.raises(BindError, match=r"declare it as probabilities FLOAT\[\] or pick one class, e.g. probabilities_1 FLOAT"):
        backend.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = patients) WITH (probabilities FLOAT) AS p", params={"m": logreg.onnx})


def test_unrelated_type_names_the_cast(con, logreg) -> None:
    with pytest.raises(TypeMismatchError) as raised:
        run(con, logreg, "(SELECT * REPLACE ('x' || mean_radius AS mean_radius) FROM patients)")
    message = str(raised.value)
    assert "'mean_radius' (part of model input 'X') (model @m" in message
    assert "is VARCHAR in DATA but the model expects float: write CAST(mean_radius AS FLOAT) in the DATA query" in message
    assert_usable(con)


@pytest.mark.parametrize("plan", ["STREAM", "UDF", "INLINE"])
def test_a_boolean_is_read_as_zero_or_one(con, logreg, plan: str) -> None:
    """As scikit-learn reads a bool column: the same scores as the query that casts it."""
    scored = run_plan(con, logreg, "(SELECT * REPLACE (mean_radius > 14 AS mean_radius) FROM patients)", plan).df()
    cast = run_plan(con, logreg, "(SELECT * REPLACE (CAST(mean_radius > 14 AS FLOAT) AS mean_radius) FROM patients)", plan).df()
    assert scored.Score.nunique() > 100
    np.testing.assert_array_equal(scored.sort_values("id").Score.to_numpy(), cast.sort_values("id").Score.to_numpy())


@pytest.mark.parametrize("plan", ["STREAM", "UDF", "INLINE"])
def test_exact_integer_widening_is_implicit(con, logreg, breast_cancer, plan: str) -> None:
    rows = run_plan(con, logreg, "(SELECT * REPLACE (floor(mean_area)::BIGINT AS mean_area) FROM patients)", plan).df()
    table = breast_cancer.table.assign(mean_area=np.floor(breast_cancer.table.mean_area))
    np.testing.assert_allclose(rows.Score, expected_scores(logreg, table), atol=PROBA_TOLERANCE)


@pytest.mark.parametrize("value", [16777217, 16777218, -(2**24) - 1, 2**63 - 1])
@pytest.mark.parametrize("plan", ["STREAM", "UDF", "INLINE"])
def test_integer_that_float32_cannot_hold_is_an_error(backend, logreg, plan: str, value: int, request: pytest.FixtureRequest) -> None:
    """Beyond ±2^24 every integer is refused, even one FLOAT happens to hold (16777218), as pyarrow's safe cast does."""
    no_stream_on_spark(backend, plan, request)
    data = f"(SELECT id, CAST(CASE WHEN id = 300 THEN {value} ELSE 1 END AS BIGINT) AS mean_area, * EXCEPT (id, mean_area) FROM patients)"
    with pytest.raises(ScoringError, match=r"'mean_area'.*cannot hold exactly.*CAST\(mean_area AS FLOAT\)"):
        backend.sql(SCORE_WITH_PLAN.format(data=data, plan=plan), params={"m": logreg.onnx})
    assert_backend_usable(backend)


def test_double_beyond_float_range_scores_as_infinity_under_both_plans(con, logreg) -> None:
    """DOUBLE → FLOAT rounds 1e39 to inf (onnxruntime's input), rather than failing the query."""
    data = "(SELECT * REPLACE (CASE WHEN id = 300 THEN 1e39 ELSE mean_area END AS mean_area) FROM patients ORDER BY id)"
    streamed, inlined = (run_plan(con, logreg, data, plan).df() for plan in ("STREAM", "INLINE"))
    assert streamed.Score[300] == inlined.Score[300] and streamed.Score[300] in (0.0, 1.0)
    np.testing.assert_allclose(inlined.Score, streamed.Score, atol=PROBA_TOLERANCE)


@pytest.mark.parametrize("plan", ["STREAM", "UDF", "INLINE"])
def test_a_regressor_value_beyond_float_range_is_infinity_as_onnxruntime_gives(backend, plan: str, request: pytest.FixtureRequest) -> None:
    """y = 1e30·x in FLOAT overflows for |x| = 1e10: onnxruntime gives ±inf, and so does every plan (DuckDB's own cast
    would raise)."""
    import onnxruntime as ort
    from sklearn.linear_model import LinearRegression

    no_stream_on_spark(backend, plan, request)
    sample = pd.DataFrame({"x": np.array([1.0, 2.0], np.float32)})
    regressor = LinearRegression().fit(sample, [1.0, 2.0])
    regressor.coef_, regressor.intercept_ = np.array([1e30]), 0.0
    model = predictsql.export(regressor, sample, outputs={"score": "y"})
    values = np.array([1e10, -1e10, 1.0, 0.0], np.float32)
    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(["y"], {"X": values.reshape(-1, 1)})[0].ravel()
    assert np.isinf(expected[:2]).all()
    backend.load("wide", pd.DataFrame({"id": range(4), "x": values}))
    rows = not_none(backend.sql(f"SELECT d.id, p.y FROM PREDICT(MODEL = @m, DATA = wide AS d, PLAN = {plan}) WITH (y FLOAT) AS p ORDER BY d.id", params={"m": model}))
    np.testing.assert_allclose(rows.y.to_numpy(np.float64), expected.astype(np.float64), rtol=1e-6)


@pytest.mark.parametrize("plan", ["STREAM", "UDF"])
def test_a_label_wider_than_its_with_type_is_a_scoring_error(backend, plan: str, request: pytest.FixtureRequest) -> None:
    """Labels 0, 300 and 70000 into WITH (label TINYINT): a ScoringError naming the output and the type to declare (it
    was pyarrow's raw ArrowInvalid, inside DuckDB's error); the labels fit BIGINT, as scikit-learn predicts them."""
    from sklearn.linear_model import LogisticRegression

    no_stream_on_spark(backend, plan, request)
    sample = pd.DataFrame({"x": np.arange(30, dtype=np.float32)})
    labels = np.repeat([0, 300, 70000], 10)
    classifier = LogisticRegression(max_iter=1000).fit(sample, labels)
    model = predictsql.export(classifier, sample)
    backend.load("ranked", sample.assign(id=range(30)))
    query = f"SELECT d.id, p.label FROM PREDICT(MODEL = @m, DATA = ranked AS d, PLAN = {plan}) WITH (label {{type}}) AS p ORDER BY d.id"
    with pytest.raises(ScoringError, match=r"output label .* has a value TINYINT cannot hold .*: declare it BIGINT in WITH"):
        backend.sql(query.format(type="TINYINT"), params={"m": model})
    rows = not_none(backend.sql(query.format(type="BIGINT"), params={"m": model}))
    assert rows.label.tolist() == classifier.predict(sample).tolist() and set(rows.label) == {0, 300, 70000}


@pytest.mark.parametrize(("kind", "column"), [("regressor", "age"), ("regressor", "s6"), ("classifier", "s6")])
def test_a_null_reaching_an_inline_linear_model_names_its_column(backend, kind: str, column: str) -> None:
    """A scaled linear regressor (its value) or logistic regression (its probability, 1 / (1 + exp(-s))) tests NULL once,
    on the output (NULL exactly where an input is), not per column: a NULL in the first or the last input still fails the
    statement with the NullInputError that names it, on both engines."""
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_diabetes(as_frame=True)
    estimator = Ridge() if kind == "regressor" else LogisticRegression()
    target = data.target if kind == "regressor" else data.target > data.target.median()
    model = predictsql.export(make_pipeline(StandardScaler(), estimator).fit(data.data, target), data.data, outputs={"score": "y"})
    frame = data.data.head(50).assign(id=range(50))
    frame.loc[frame.id == 30, column] = None
    backend.load("diabetes", frame)
    query = "SELECT d.id, p.y FROM PREDICT(MODEL = @m, DATA = diabetes AS d, PLAN = INLINE) WITH (y FLOAT) AS p"
    with pytest.raises(NullInputError, match=rf"PREDICT input '{column}' \(model @m, sha \w+\) is NULL: filter the rows \(WHERE {column} IS NOT NULL\)"):
        backend.sql(query, params={"m": model})
    assert len(not_none(backend.sql(f"{query} WHERE d.id <> 30", params={"m": model}))) == 49


@pytest.mark.parametrize("plan", ["INLINE", "STREAM"])
def test_a_null_fails_a_predict_that_reads_only_its_second_output_or_is_also_beyond_float(con, plan: str) -> None:
    """The fused NULL test sits in the first output, which DuckDB drops when the query reads only the second: with two
    outputs INLINE keeps its per-row input test, so the NULL still fails the statement, as under STREAM. A row with a
    NULL and a BIGINT beyond FLOAT's exact integers gets the NULL's error under both plans."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sample = pd.DataFrame({"a": np.arange(20, dtype=np.int64), "b": np.arange(20, dtype=np.int64) % 7})
    model = predictsql.export(make_pipeline(StandardScaler(), Ridge()).fit(sample, sample.a * 2.0 - sample.b), sample, outputs={"score": "y"})
    con.duckdb.sql(f"CREATE OR REPLACE TABLE two (id INTEGER, a BIGINT, b BIGINT); INSERT INTO two VALUES (1, 3, 4), (2, NULL, 5), (3, {2**25 + 1}, NULL)")
    two_outputs = f"SELECT d.id, p.variable FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM two WHERE id < 3) AS d, PLAN = {plan}) WITH (y FLOAT, variable FLOAT) AS p"
    with pytest.raises(NullInputError, match="'a'"):
        con.sql(two_outputs, params={"m": model})
    both_faults = f"SELECT d.id, p.y FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM two WHERE id <> 2) AS d, PLAN = {plan}) WITH (y FLOAT) AS p"
    with pytest.raises(NullInputError, match="'b'"):
        con.sql(both_faults, params={"m": model})
    assert_usable(con)


def test_null_under_a_streamed_predict_over_an_inline_one_keeps_its_class(con, logreg, forest) -> None:
    inner = "(SELECT * REPLACE (CASE WHEN id = 300 THEN NULL ELSE mean_texture END AS mean_texture) FROM patients)"
    query = f"SELECT p.Score FROM PREDICT(MODEL = @f, DATA = (SELECT d.*, i.Score AS linear FROM PREDICT(MODEL = @m, DATA = {inner} AS d) WITH (Score FLOAT) AS i)) WITH (Score FLOAT) AS p"
    with pytest.raises(NullInputError, match="'mean_texture'"):
        con.sql(query, params={"m": logreg.onnx, "f": forest.onnx})
    assert_usable(con)


def test_null_input_reports_column_count_and_row(con, logreg) -> None:
    """STREAM sees each batch whole, so it counts the NULLs and names the first row."""
    with pytest.raises(NullInputError) as raised:
        run_plan(con, logreg, "(SELECT * REPLACE (CASE WHEN id IN (300, 310) THEN NULL ELSE mean_texture END AS mean_texture) FROM patients ORDER BY id)", "STREAM")
    message = str(raised.value)
    assert "'mean_texture'" in message and "is NULL in 2 rows" in message and "first at row 300" in message
    assert "NULLS = PROPAGATE" in message
    assert_usable(con)


def test_nulls_propagate_scores_the_other_rows(con, logreg, breast_cancer) -> None:
    rows = not_none(con.sql(
        "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT * REPLACE (CASE WHEN id % 10 = 0 THEN NULL ELSE mean_texture END AS mean_texture) FROM patients) AS d, "
        "NULLS = PROPAGATE) WITH (Score FLOAT) AS p ORDER BY d.id",
        params={"m": logreg.onnx},
    )).df()
    nulls = rows.id % 10 == 0
    assert rows.Score[nulls].isna().all()
    np.testing.assert_allclose(rows.Score[~nulls], expected_scores(logreg)[~nulls.values], atol=PROBA_TOLERANCE)


def test_null_input_inline_names_the_column_and_the_fix(con, logreg) -> None:
    """INLINE checks each row inside DuckDB's own expression; the error comes back as NullInputError."""
    with pytest.raises(NullInputError, match=r"PREDICT input 'mean_texture' \(model @m, sha \w+\) is NULL: filter the rows \(WHERE mean_texture IS NOT NULL\).*NULLS = PROPAGATE"):
        run_plan(con, logreg, "(SELECT * REPLACE (CASE WHEN id = 300 THEN NULL ELSE mean_texture END AS mean_texture) FROM patients)", "INLINE")
    assert_usable(con)


@pytest.mark.parametrize("plan", ["STREAM", "UDF", "INLINE"])
def test_failed_insert_select_inserts_nothing_and_returns_no_rows(db_path: Path, logreg, plan: str) -> None:
    """The NULL sits in a late batch (batch size 7), so earlier batches (STREAM) or rows were already scored."""
    with predictsql.connect(str(db_path), batch_size=7) as con:
        con.duckdb.sql("CREATE TABLE scores (id BIGINT, score FLOAT)")
        query = SCORE_WITH_PLAN.format(data="(SELECT * REPLACE (CASE WHEN id = 500 THEN NULL ELSE mean_texture END AS mean_texture) FROM patients ORDER BY id)", plan=plan)
        with pytest.raises(NullInputError, match="first at row 500" if plan == "STREAM" else "'mean_texture'"):
            con.sql(f"INSERT INTO scores {query}", params={"m": logreg.onnx})
        assert not_none(con.sql("SELECT count(*) FROM scores")).fetchone() == (0,)
        with pytest.raises(NullInputError):
            con.sql(query, params={"m": logreg.onnx})
        assert_usable(con)


def test_plan_option_is_checked(con, logreg, forest) -> None:
    with pytest.raises(BindError, match="PLAN = FAST .* is not a plan; use PLAN = AUTO, INLINE, UDF, STREAM"):
        run_plan(con, logreg, "patients", "FAST")
    with pytest.raises(BindError, match=r"PLAN = INLINE \(model @m, sha \w+\): a tree ensemble of [\d,]+ nodes is over INLINE's limit .*; use PLAN = AUTO, UDF or STREAM"):
        run_plan(con, forest, "patients", "INLINE")
    with pytest.raises(BindError, match=r"PLAN = INLINE .*WITH column Score asks for VARCHAR of a FLOAT output"):
        con.sql("SELECT p.Score FROM PREDICT(MODEL = @m, DATA = patients, PLAN = INLINE) WITH (Score VARCHAR) AS p", params={"m": logreg.onnx})


@pytest.mark.parametrize(("where", "message"), [("id = 99", "returned no row"), ("id >= 1", "returned more than one row")])
def test_model_subquery_must_return_one_row(con, logreg, where: str, message: str) -> None:
    con.duckdb.execute("INSERT INTO models VALUES (2, 'copy', ?)", [logreg.onnx]).fetchall()
    with pytest.raises(ModelSourceError, match=message):
        con.sql(f"SELECT * FROM PREDICT(MODEL = (SELECT model FROM models WHERE {where}), DATA = patients) WITH (Score FLOAT) AS p")
    if where == "id = 99":  # T-SQL sets a variable whose subquery finds no row to NULL
        with pytest.raises(ModelSourceError, match=r"MODEL @m is NULL \(a DECLARE … = \(SELECT …\) that finds no row sets NULL"):
            con.sql(f"DECLARE @m VARBINARY(MAX) = (SELECT model FROM models WHERE {where}); SELECT * FROM PREDICT(MODEL = @m, DATA = patients) AS p")
        assert not_none(con.sql("DECLARE @k INT = (SELECT id FROM models WHERE id = 99); SELECT @k IS NULL")).fetchall() == [(True,)]
    else:
        with pytest.raises(ModelSourceError, match="returned more than one row; a variable holds one value"):
            con.sql(f"DECLARE @m VARBINARY(MAX) = (SELECT model FROM models WHERE {where})")
    assert_usable(con)


def test_undeclared_variable(backend) -> None:
    with pytest.raises(ModelSourceError, match="MODEL @nope is not declared: DECLARE @nope"):
        backend.sql("SELECT * FROM PREDICT(MODEL = @nope, DATA = patients) AS p")


def _external_data_model(folder: Path, location: str) -> bytes:
    """A tiny valid model whose weight lives in an external file at `location`."""
    weight = onnx.numpy_helper.from_array(np.ones((1, 1), np.float32), "w")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.external_data.add(key="location", value=location)
    return onnx_model(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"])],
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 1])],
        [weight],
    )


def _bad_models(logreg, tmp_path: Path) -> dict[str, tuple[object, type, str]]:
    foreign = onnx.load_from_string(logreg.onnx)
    foreign.graph.node[0].domain = "com.microsoft"
    foreign.opset_import.add(domain="com.microsoft", version=1)
    return {
        "not onnx": (b"definitely not a model", ModelError, "is not an ONNX model or is truncated"),
        "pickle": (pickle.dumps(logreg.estimator), ModelError, "is a Python pickle; predictsql never unpickles models"),
        "truncated": (logreg.onnx[: len(logreg.onnx) // 2], ModelError, "is not an ONNX model or is truncated"),
        "external data in a blob": (_external_data_model(tmp_path, "weights.bin"), UnsafeModelError, "save_as_external_data=False"),
        "foreign operator domain": (foreign.SerializeToString(), UnsafeModelError, "uses operators from com.microsoft"),
        "missing file": (str(tmp_path / "nope.onnx"), ModelError, "model file '.*nope.onnx' not found"),
    }


@pytest.mark.parametrize("case", ["not onnx", "pickle", "truncated", "external data in a blob", "foreign operator domain", "missing file"])
def test_bad_models_are_refused_before_scoring(backend, logreg, tmp_path: Path, case: str) -> None:
    model, error, message = _bad_models(logreg, tmp_path)[case]
    with pytest.raises(error, match=message):
        backend.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = patients) AS p", params={"m": model})
    assert_backend_usable(backend)


def test_external_data_next_to_a_file_loads_but_may_not_escape_its_folder(tmp_path: Path) -> None:
    inside = tmp_path / "model"
    inside.mkdir()
    np.ones(1, np.float32).tofile(inside / "weights.bin")
    np.ones(1, np.float32).tofile(tmp_path / "secret.bin")
    (inside / "ok.onnx").write_bytes(_external_data_model(inside, "weights.bin"))
    (inside / "escape.onnx").write_bytes(_external_data_model(inside, "../secret.bin"))
    frame = pd.DataFrame({"x": [2.0, 3.0]})
    assert predictsql.predict(str(inside / "ok.onnx"), frame)["y"].to_pylist() == [2.0, 3.0]
    with pytest.raises(UnsafeModelError, match="outside the model's folder"):
        predictsql.predict(str(inside / "escape.onnx"), frame)


def test_model_over_the_size_cap(db_path: Path, logreg) -> None:
    with predictsql.connect(str(db_path), max_model_bytes=1000) as con:
        with pytest.raises(ModelError, match=f"is {len(logreg.onnx):,} bytes, over the 1,000-byte cap"):
            con.sql("SELECT * FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients) AS p")


def test_parse_error_has_line_and_column(backend) -> None:
    with pytest.raises(SQLSyntaxError, match="line 3, column"):
        backend.sql("SELECT 1;\nSELECT d.*\nFROM PREDICT(MODEL = @m DATA = patients)")
    assert_backend_usable(backend)


def test_missing_data_relation(con, logreg) -> None:
    with pytest.raises(BindError, match="(?s)PREDICT DATA SELECT \\* FROM patiens .*Did you mean \"patients\""):
        run(con, logreg, "patiens")


def test_temp_tables_and_registered_frames_in_data_score_under_every_plan_that_sees_them(con, logreg, forest, breast_cancer) -> None:
    """INLINE and UDF run within the caller's statement, so they see TEMP tables and registered frames; a stream's
    cursor does not, so AUTO does not stream them and PLAN = STREAM says why."""
    con.duckdb.sql("CREATE TEMP TABLE scratch AS SELECT * FROM patients")
    con.duckdb.register("frame", breast_cancer.table)
    for data in ("scratch", "frame"):
        for model in (logreg, forest):
            rows = run(con, model, data).df()
            np.testing.assert_allclose(rows.Score, expected_scores(model), atol=PROBA_TOLERANCE)
        with pytest.raises(BindError, match=rf"PLAN = STREAM \(@m\) cannot stream: DATA reads {data}, a TEMP table or registered object .*use PLAN = UDF or AUTO"):
            run_plan(con, forest, data, "STREAM")
    nested = "(SELECT d.*, i.Score AS linear FROM PREDICT(MODEL = @m, DATA = scratch AS d) WITH (Score FLOAT) AS i)"
    np.testing.assert_allclose(run(con, logreg, nested).df().Score, expected_scores(logreg), atol=PROBA_TOLERANCE)
    with pytest.raises(BindError, match="DATA SELECT \\* FROM nowhere .* fails: Catalog Error"):
        run(con, logreg, "nowhere")
    assert_usable(con)


def test_every_error_is_a_predictsql_error() -> None:
    for error in (SQLSyntaxError, BindError, MissingColumnError, ModelError, ScoringError, NullInputError, UnsafeModelError):
        assert issubclass(error, PredictSQLError)


def _tiny_model(nodes: list, inputs: list, outputs: list) -> bytes:
    return onnx_model(nodes, inputs, outputs, [onnx.numpy_helper.from_array(np.array([0], np.int64), "axes")])


def _float(name: str, shape: list) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


@pytest.mark.parametrize("plan", ["STREAM", "UDF"])
def test_a_model_with_a_fixed_batch_of_one_scores_any_row_count(backend, plan: str, request: pytest.FixtureRequest) -> None:
    """Inputs of shape [1,1] are fed one row at a time; the sum is computed by hand."""
    no_stream_on_spark(backend, plan, request)
    model = _tiny_model([onnx.helper.make_node("Add", ["a", "b"], ["total"])], [_float("a", [1, 1]), _float("b", [1, 1])], [_float("total", [1, 1])])
    backend.load("pairs", pd.DataFrame({"id": range(7), "a": np.arange(7, dtype=np.float32), "b": np.full(7, 0.5, np.float32)}))
    rows = not_none(backend.sql(f"SELECT d.id, p.total FROM PREDICT(MODEL = @m, DATA = pairs AS d, PLAN = {plan}) WITH (total FLOAT) AS p ORDER BY d.id", params={"m": model}))
    assert rows.total.tolist() == [i + 0.5 for i in range(7)]


@pytest.mark.parametrize("plan", ["STREAM", "UDF"])
def test_a_model_returning_fewer_rows_than_it_was_given_is_a_scoring_error(backend, plan: str, request: pytest.FixtureRequest) -> None:
    no_stream_on_spark(backend, plan, request)
    model = _tiny_model([onnx.helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1)], [_float("x", [None, 1])], [_float("total", [None, 1])])
    backend.load("one_column", pd.DataFrame({"x": np.arange(5, dtype=np.float32)}))
    with pytest.raises(ScoringError, match=r"returned 1 rows of output 'total' for [2-5] rows fed: PREDICT needs one output row per input row"):
        backend.sql(f"SELECT p.total FROM PREDICT(MODEL = @m, DATA = one_column, PLAN = {plan}) WITH (total FLOAT) AS p", params={"m": model})
    assert_backend_usable(backend)
