"""The shared suite: every case runs on DuckDB and on Spark (`backend`), checked against
scikit-learn; cases one engine cannot run say why (duckdb_only)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

import predictsql
from predictsql.engine.errors import (
    AmbiguousColumnError,
    BindError,
    MissingColumnError,
    ModelError,
    ModelSourceError,
    NullInputError,
    TypeMismatchError,
    UnknownOutputError,
)

from conftest import PROBA_TOLERANCE, Fitted, assert_scores, duckdb_only, expected_scores, fit, not_none, numeric

# --- conformance shapes (../shared/conformance/README.md), with this project's tables ---


def test_shape_1_sql_server_form_without_runtime(backend, logreg, breast_cancer) -> None:
    rows = backend.sql("SELECT d.*, p.Score FROM PREDICT(MODEL = @model, DATA = dbo.patients AS d) WITH (Score FLOAT) AS p;", params={"model": logreg.onnx})
    assert list(rows.columns) == [*breast_cancer.table.columns, "Score"]
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_shape_2_synapse_declare_from_a_table(backend, logreg, breast_cancer) -> None:
    rows = backend.sql(
        """
        DECLARE @model VARBINARY(max) = (SELECT model FROM models WHERE id = 1);

        SELECT d.*, p.Score
        FROM PREDICT(MODEL = @model,
            DATA = dbo.patients AS d, RUNTIME = ONNX) WITH (Score FLOAT) AS p;
        """
    )
    assert len(rows) == len(breast_cancer.table)
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_shape_3_view_with_scalar_subquery_model(backend, logreg, breast_cancer) -> None:
    backend.sql(
        """
        CREATE VIEW predictions
        AS
        SELECT d.*, p.Score
        FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1),
                     DATA = dbo.patients AS d, RUNTIME = ONNX) WITH (Score FLOAT) AS p;
        """
    )
    rows = backend.sql("SELECT id, Score FROM predictions WHERE Score > 0.5 ORDER BY id")
    assert list(rows.id) == list(np.flatnonzero(expected_scores(logreg, breast_cancer.table) > 0.5))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_shape_4_lower_case_type_and_mixed_case_names(backend, logreg, breast_cancer) -> None:
    rows = backend.sql(
        "SELECT d.*, p.Score FROM PREDICT(MODEL = (SELECT Model FROM Models WHERE Id = 1), "
        "DATA = dbo.Patients AS d, RUNTIME = ONNX) WITH (Score float) AS p;"
    )
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


# --- MODEL and DATA forms, optional parts ---


@pytest.mark.parametrize("form", ["variable", "subquery", "hex", "path"])
def test_model_forms(form: str, backend, logreg, breast_cancer, tmp_path: Path) -> None:
    path = tmp_path / "logreg.onnx"
    path.write_bytes(logreg.onnx)
    model = {"variable": "@model", "subquery": "(SELECT model FROM models WHERE name = 'logreg')", "hex": "0x" + logreg.onnx.hex(), "path": f"'{path}'"}[form]
    rows = backend.sql(f"SELECT d.id, p.Score FROM PREDICT(MODEL = {model}, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"model": logreg.onnx})
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_model_parameter_may_be_a_path_string(backend, logreg, breast_cancer, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(logreg.onnx)
    rows = backend.sql("SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p", params={"@m": str(path)})
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


@pytest.mark.parametrize("data", ["patients AS d", "dbo.patients AS d", "patient_view AS d", "recent AS d", "(SELECT * FROM patients WHERE id < 400) AS d"])
def test_data_forms(data: str, backend, logreg, breast_cancer) -> None:
    backend.execute("CREATE VIEW patient_view AS SELECT * FROM patients WHERE id < 400")
    rows = backend.sql(
        f"WITH recent AS (SELECT * FROM patients WHERE id < 400) "
        f"SELECT d.id, p.Score FROM PREDICT(MODEL = @model, DATA = {data}) WITH (Score FLOAT) AS p ORDER BY d.id",
        params={"model": logreg.onnx},
    )
    assert len(rows) == (len(breast_cancer.table) if data.split()[0].endswith("patients") else 400)
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_aliases_runtime_and_with_are_optional(backend, logreg, breast_cancer) -> None:
    rows = backend.sql("select * from predict(model = @m, data = patients)", params={"m": logreg.onnx})
    assert list(rows.columns) == [*breast_cancer.table.columns, "label", "probabilities_0", "probabilities_1", "Score"]
    assert_scores(logreg, breast_cancer, rows.id, rows.probabilities_1)
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_d_star_is_data_and_p_star_is_outputs(backend, logreg, breast_cancer) -> None:
    rows = backend.sql("SELECT p.*, d.* FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT, label BIGINT) AS p", params={"m": logreg.onnx})
    assert list(rows.columns) == ["Score", "label", *breast_cancer.table.columns]


def test_output_named_like_a_data_column_is_kept_apart(backend, logreg, breast_cancer) -> None:
    backend.load("labelled", breast_cancer.table.assign(label=breast_cancer.target.values))
    rows = backend.sql("SELECT d.label AS truth, p.label FROM PREDICT(MODEL = @m, DATA = labelled AS d) WITH (label BIGINT) AS p ORDER BY d.id", params={"m": logreg.onnx})
    np.testing.assert_array_equal(rows.truth, breast_cancer.target)
    np.testing.assert_array_equal(rows.label, logreg.estimator.predict(logreg.features))


@duckdb_only("Spark DataFrames have no row order unless the query orders them")
def test_row_order_and_count_follow_data(backend, logreg, breast_cancer) -> None:
    rows = backend.sql(
        "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT * FROM patients WHERE id % 3 = 0 ORDER BY id DESC) AS d) WITH (Score FLOAT) AS p",
        params={"m": logreg.onnx},
    )
    assert list(rows.id) == sorted(range(0, len(breast_cancer.table), 3), reverse=True)
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


# --- composition ---


def test_where_order_by_and_group_by_on_scores(backend, logreg, breast_cancer) -> None:
    rows = backend.sql(
        """
        DECLARE @model VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1);
        SELECT d.target, count(*) AS n, avg(p.Score) AS mean_score
        FROM PREDICT(MODEL = @model, DATA = patients AS d) WITH (Score FLOAT) AS p
        WHERE p.Score > 0.1
        GROUP BY d.target
        ORDER BY mean_score DESC
        """
    )
    frame = breast_cancer.table.assign(score=expected_scores(logreg, breast_cancer.table))
    expected = frame[frame.score > 0.1].groupby("target").score.agg(["count", "mean"]).sort_values("mean", ascending=False)
    assert list(rows.target) == list(expected.index)
    assert list(rows.n) == list(expected["count"])
    np.testing.assert_allclose(rows.mean_score, expected["mean"], atol=PROBA_TOLERANCE)


def test_predict_in_cte_and_join(backend, logreg, breast_cancer) -> None:
    rows = backend.sql(
        """
        WITH scored AS (SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p)
        SELECT x.id, x.target, s.Score FROM patients AS x JOIN scored AS s ON s.id = x.id
        WHERE x.target = 1 ORDER BY x.id
        """,
        params={"m": logreg.onnx},
    )
    assert list(rows.id) == list(np.flatnonzero(breast_cancer.target.values == 1))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_cte_over_predict_referenced_twice(backend, logreg, breast_cancer) -> None:
    rows = backend.sql(
        """
        WITH s AS (SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p)
        SELECT a.id, a.Score FROM s AS a JOIN s AS b ON a.id = b.id + 1 ORDER BY a.id
        """,
        params={"m": logreg.onnx},
    )
    assert list(rows.id) == list(range(1, len(breast_cancer.table)))
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_two_models_in_one_query(backend, logreg, breast_cancer) -> None:
    forest = fit("random_forest", breast_cancer)
    rows = backend.sql(
        """
        SELECT a.id, a.Score AS linear, b.Score AS forest
        FROM PREDICT(MODEL = @linear, DATA = patients AS d1) WITH (Score FLOAT) AS a
        JOIN PREDICT(MODEL = @forest, DATA = patients AS d2) WITH (Score FLOAT) AS b ON a.id = b.id
        ORDER BY a.id
        """,
        params={"linear": logreg.onnx, "forest": forest.onnx},
    )
    assert_scores(logreg, breast_cancer, rows.id, rows.linear)
    assert_scores(forest, breast_cancer, rows.id, rows.forest)


@pytest.mark.parametrize("outer_is_forest", [True, False], ids=["forest over linear", "linear over forest"])
def test_predict_over_predict(backend, logreg, breast_cancer, outer_is_forest: bool) -> None:
    forest = fit("random_forest", breast_cancer)
    outer, inner = (forest, logreg) if outer_is_forest else (logreg, forest)
    rows = backend.sql(
        """
        SELECT o.id, o.inner_score, p.Score AS outer_score
        FROM PREDICT(MODEL = @outer,
                     DATA = (SELECT d.*, i.Score AS inner_score FROM PREDICT(MODEL = @inner, DATA = patients AS d) WITH (Score FLOAT) AS i) AS o)
             WITH (Score FLOAT) AS p
        ORDER BY o.id
        """,
        params={"inner": inner.onnx, "outer": outer.onnx},
    )
    assert_scores(inner, breast_cancer, rows.id, rows.inner_score)
    assert_scores(outer, breast_cancer, rows.id, rows.outer_score)


def test_insert_select_create_table_as_and_select_into(backend, logreg, breast_cancer) -> None:
    backend.execute("CREATE TABLE scores (id BIGINT, score FLOAT)")
    predict = "PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p"
    assert backend.sql(f"INSERT INTO scores SELECT d.id, p.Score FROM {predict}") is None
    backend.sql(f"CREATE TABLE scores2 AS SELECT d.id, p.Score FROM {predict}")
    backend.sql(f"SELECT d.id, p.Score INTO scores3 FROM {predict}")
    backend.execute("CREATE TABLE scores4 (id BIGINT, score FLOAT)")  # a CTE the statement defines before INSERT, read by DATA
    backend.sql(f"WITH c AS (SELECT * FROM patients) INSERT INTO scores4 SELECT d.id, p.Score FROM {predict.replace('DATA = patients', 'DATA = c')}")
    for table, column in (("scores", "score"), ("scores2", "Score"), ("scores3", "Score"), ("scores4", "score")):
        rows = backend.sql(f"SELECT id, {column} AS s FROM {table} ORDER BY id")
        assert_scores(logreg, breast_cancer, rows.id, rows.s)


def test_a_struct_field_of_data_reads_through_the_alias_and_unqualified(backend, logreg, breast_cancer) -> None:
    """d.st.a (which sqlglot reads as table st of schema d) and st.a read field a of DATA's struct column st, in the
    select list and WHERE, as the engine reads them without PREDICT: both failed, and st was dropped from DATA."""
    struct = "named_struct('a', mean_radius)" if backend.name == "spark" else "{'a': mean_radius}"
    data = f"(SELECT *, {struct} AS st FROM patients)"
    rows = not_none(backend.sql(
        f"SELECT d.id, d.st.a AS a, st.a AS b, p.Score FROM PREDICT(MODEL = @m, DATA = {data} AS d) WITH (Score FLOAT) AS p WHERE d.st.a > 15 ORDER BY d.id",
        params={"m": logreg.onnx},
    ))
    expected = breast_cancer.table[breast_cancer.table.mean_radius > 15]
    assert rows.id.tolist() == expected.id.tolist() and len(rows) > 50
    np.testing.assert_array_equal(rows.a, expected.mean_radius)
    np.testing.assert_array_equal(rows.b, expected.mean_radius)
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_declared_variables_persist_across_calls(backend, logreg, breast_cancer) -> None:
    backend.sql("DECLARE @kept VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1)")
    rows = backend.sql("SELECT d.id, p.Score FROM PREDICT(MODEL = @kept, DATA = patients AS d) WITH (Score FLOAT) AS p")
    assert_scores(logreg, breast_cancer, rows.id, rows.Score)


def test_models_as_functions_in_plain_sql(backend, logreg, breast_cancer) -> None:
    """register: arguments in the model's input order, a scalar for one output, a STRUCT for several, in the engine's own SQL."""
    predictsql.register(backend.target, "malignancy", logreg.onnx, outputs=["Score"])
    predictsql.register(backend.target, "diagnose", logreg.onnx, outputs=["label", "Score"])
    arguments = predictsql.argument_names(logreg.onnx)
    assert arguments == list(logreg.features.columns)
    args = ", ".join(arguments)
    rows = backend.query(f"SELECT id, malignancy({args}) AS s, diagnose({args}) AS both FROM patients ORDER BY id")
    assert_scores(logreg, breast_cancer, rows.id, rows.s)
    np.testing.assert_array_equal([b["label"] for b in rows.both], logreg.estimator.predict(logreg.features))
    np.testing.assert_allclose([b["Score"] for b in rows.both], expected_scores(logreg), atol=PROBA_TOLERANCE)


@duckdb_only("Spark has no predictsql connection: its registered functions run in Spark's own SQL")
def test_a_registered_functions_null_is_a_null_input_error_on_a_predictsql_connection(backend, logreg) -> None:
    """On a predictsql connection a registered function's failure is predictsql's error, as PREDICT's is (it was DuckDB's
    InvalidInputException carrying the message as text), and the connection goes on."""
    predictsql.register(backend.target, "malignancy", logreg.onnx, outputs=["Score"])
    args = ", ".join(predictsql.argument_names(logreg.onnx))
    failing = f"SELECT malignancy({args.replace('mean_radius', 'CASE WHEN id = 3 THEN NULL ELSE mean_radius END', 1)}) FROM patients"
    for connection in (backend.target, backend.target.cursor()):  # a cursor too, whose calls run on the same function
        with pytest.raises(NullInputError, match=r"PREDICT input 'mean_radius'.* is NULL in 1 of the \d+ rows of one call"):
            connection.sql(failing)
    beside_predict = failing.replace(" FROM patients", ", p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d) WITH (Score FLOAT) AS p")
    with pytest.raises(NullInputError, match=r"PREDICT input 'mean_radius'.* is NULL in 1 of the \d+ rows of one call"):
        backend.target.sql(beside_predict, params={"m": logreg.onnx})  # in a statement of predictsql's too
    rows = not_none(backend.target.sql(f"SELECT id, malignancy({args}) AS s FROM patients ORDER BY id")).df()
    np.testing.assert_allclose(rows.s, expected_scores(logreg), atol=PROBA_TOLERANCE)


@duckdb_only("a plain duckdb connection is DuckDB's own")
def test_register_on_a_plain_duckdb_connection(backend, db_path, logreg, forest, breast_cancer) -> None:
    """A duckdb connection that never saw predictsql scores a model by name, replaced when registered again."""
    con = duckdb.connect(str(db_path))
    args = ", ".join(predictsql.argument_names(logreg.onnx))
    for model in (logreg, forest):
        predictsql.register(con, "score", model.onnx, outputs=["Score"])
        rows = not_none(con.sql(f"SELECT id, score({args}) AS s FROM patients WHERE id % 2 = 0 ORDER BY id")).df()
        assert_scores(model, breast_cancer, rows.id, rows.s)
    message = r"NullInputError: PREDICT input 'mean_radius'.* is NULL in \d+ of the \d+ rows of one call: filter them \(WHERE mean_radius IS NOT NULL\) or fill them"
    with pytest.raises(duckdb.Error, match=message) as raised:
        con.sql(f"SELECT score({args.replace('mean_radius', 'NULL::DOUBLE', 1)}) FROM patients").fetchall()
    assert "PROPAGATE" not in str(raised.value)  # a function of plain SQL has no NULLS option, and no statement of ours counts its rows
    con.close()


# --- errors: the same classes and messages on both engines ---


def test_missing_column_suggests_the_close_name(backend, logreg) -> None:
    backend.load("renamed", backend.sql("SELECT * FROM patients").rename(columns={"mean_radius": "mean_radus"}))
    with pytest.raises(MissingColumnError, match="'mean_radius'.*model @m, sha.*did you mean 'mean_radus'\\? Write it AS mean_radius"):
        backend.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = renamed) AS p", params={"m": logreg.onnx})


def test_unknown_output(backend, logreg) -> None:
    with pytest.raises(UnknownOutputError, match="Did you mean Score\\?"):
        backend.sql("SELECT p.Scor FROM PREDICT(MODEL = @m, DATA = patients) WITH (Scor FLOAT) AS p", params={"m": logreg.onnx})


def test_a_name_that_is_both_a_data_column_and_an_output_must_be_qualified(backend, logreg) -> None:
    """Unqualified, it is ambiguous (T-SQL's error; DuckDB's for the join of the two): it read DATA's column."""
    data = "(SELECT target AS label, * EXCLUDE (target) FROM patients)" if backend.name == "duckdb" else "(SELECT target AS label, * FROM patients)"
    query = f"SELECT {{select}} FROM PREDICT(MODEL = @m, DATA = {data} AS d) WITH (label BIGINT) AS p ORDER BY d.id"
    with pytest.raises(AmbiguousColumnError, match=r"column label is both a DATA column and an output of PREDICT p \(model @m, sha \w+\): write d.label or p.label"):
        backend.sql(query.format(select="d.id, label"), params={"m": logreg.onnx})
    rows = backend.sql(query.format(select="d.label AS truth, p.label AS label"), params={"m": logreg.onnx})
    np.testing.assert_array_equal(rows["label"].to_numpy(), logreg.estimator.predict(logreg.features))


def test_an_output_named_twice_in_with_is_refused(backend, logreg) -> None:
    with pytest.raises(BindError, match="PREDICT WITH names Score twice: name each output once"):
        backend.sql("SELECT p.Score FROM PREDICT(MODEL = @m, DATA = patients) WITH (Score FLOAT, score DOUBLE) AS p", params={"m": logreg.onnx})


def test_a_column_list_on_predicts_alias_says_to_rename_in_the_select_list(backend, logreg) -> None:
    with pytest.raises(BindError, match=r"PREDICT \.\.\. AS p\(k\): PREDICT's outputs keep their names; rename them in the select list \(p.Score AS k\)"):
        backend.sql("SELECT p.k FROM PREDICT(MODEL = @m, DATA = patients) WITH (Score FLOAT) AS p(k)", params={"m": logreg.onnx})


def test_unrelated_type_names_the_cast(backend, logreg) -> None:
    with pytest.raises(TypeMismatchError, match=r"'band' \(part of model input 'X'\).*is VARCHAR in DATA.*CAST\(band AS FLOAT\)"):
        backend.sql("SELECT * FROM PREDICT(MODEL = @m, DATA = (SELECT band AS mean_radius_x, * FROM patients) AS d) AS p", params={"m": _with_band_input(logreg)})


def _with_band_input(logreg: Fitted) -> bytes:
    """The logreg model re-labelled to read its first feature from the string column `band`."""
    import json

    import onnx

    from predictsql.engine.signature import INPUTS_KEY

    model = onnx.load_from_string(logreg.onnx)
    meta = {p.key: p for p in model.metadata_props}
    columns = json.loads(meta[INPUTS_KEY].value)
    columns["X"][0] = "band"
    meta[INPUTS_KEY].value = json.dumps(columns)
    return model.SerializeToString()


@pytest.mark.parametrize(("plan", "message"), [("UDF", "is NULL in 1 rows of the batch"), ("INLINE", r"is NULL: filter the rows \(WHERE mean_texture IS NOT NULL\)")])
def test_null_input_fails_the_statement_with_column_and_count(backend, logreg, plan: str, message: str) -> None:
    """UDF counts a batch's NULLs; INLINE fails on the first NULL the engine meets. Both name the column and the fix."""
    with pytest.raises(NullInputError, match=f"'mean_texture'.*{message}.*NULLS = PROPAGATE"):
        backend.sql(
            "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT id, CASE WHEN id = 300 THEN NULL ELSE mean_texture END AS mean_texture, "
            f"* EXCEPT (id, mean_texture) FROM patients) AS d, PLAN = {plan}) WITH (Score FLOAT) AS p",
            params={"m": logreg.onnx},
        )
    rows = backend.sql("SELECT count(*) AS n FROM PREDICT(MODEL = @m, DATA = patients) WITH (Score FLOAT) AS p", params={"m": logreg.onnx})
    assert rows.n[0] == 569


@pytest.mark.parametrize("plan", ["UDF", "INLINE"])
def test_nulls_propagate_gives_null_lists_and_float32_doubles(backend, logreg, plan: str) -> None:
    """An unscored row's FLOAT[] output is NULL itself; a FLOAT output read as DOUBLE keeps its FLOAT value."""
    rows = backend.sql(
        "SELECT d.id, p.probabilities, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT id, CASE WHEN id % 10 = 0 THEN NULL ELSE mean_texture END AS mean_texture, "
        f"* EXCEPT (id, mean_texture) FROM patients) AS d, NULLS = PROPAGATE, PLAN = {plan}) WITH (probabilities FLOAT[], Score DOUBLE) AS p ORDER BY d.id",
        params={"m": logreg.onnx},
    )
    unscored = rows.id % 10 == 0
    assert rows.probabilities[unscored].isna().all() and rows.Score[unscored].isna().all()
    assert rows.probabilities[~unscored].map(len).eq(2).all()
    scores = rows.Score[~unscored].to_numpy()
    np.testing.assert_array_equal(scores.astype(np.float32).astype(np.float64), scores)
    np.testing.assert_allclose(scores, expected_scores(logreg)[~unscored.to_numpy()], atol=PROBA_TOLERANCE)


@pytest.mark.parametrize("plan", ["UDF", "INLINE"])
def test_a_predict_whose_outputs_are_never_read(backend, logreg, plan: str) -> None:
    """Whether unread outputs are still computed (so a NULL input still fails) is the engine's choice: both prune an
    unread scoring function and DuckDB an unread SQL expression, but Spark keeps INLINE's raise_error."""
    query = (
        "SELECT count(*) AS n FROM PREDICT(MODEL = @m, DATA = (SELECT id, CASE WHEN id = 300 THEN NULL ELSE mean_texture END AS mean_texture, "
        f"* EXCEPT (id, mean_texture) FROM patients) AS d, PLAN = {plan}) WITH (Score FLOAT) AS p"
    )
    if (backend.name, plan) in {("spark", "INLINE")}:
        with pytest.raises(NullInputError, match="'mean_texture'.*NULLS = PROPAGATE to score them as NULL$"):
            backend.sql(query, params={"m": logreg.onnx})
    else:
        assert backend.sql(query, params={"m": logreg.onnx}).n[0] == 569


@pytest.mark.parametrize(("where", "message"), [("id = 99", "returned no row"), ("id >= 0", "returned more than one row")])
def test_model_subquery_must_return_one_row(backend, logreg, breast_cancer, where: str, message: str) -> None:
    backend.load("two_models", breast_cancer.table.head(2).assign(model=[logreg.onnx, logreg.onnx])[["id", "model"]])
    with pytest.raises(ModelSourceError, match=message):
        backend.sql(f"SELECT * FROM PREDICT(MODEL = (SELECT model FROM two_models WHERE {where}), DATA = patients) WITH (Score FLOAT) AS p")


def test_bytes_that_are_not_onnx(backend) -> None:
    with pytest.raises(ModelError, match="is not an ONNX model or is truncated"):
        backend.sql("SELECT * FROM PREDICT(MODEL = 0x0102030405, DATA = patients) AS p")


def test_per_column_models_and_regressor_scores_run_inline(backend, breast_cancer) -> None:
    """A per-column pipeline (one [N,1] input per column joined by Concat: the Synapse form) and a regressor's
    `score` (a Reshape) compile to SQL; INLINE equals scikit-learn and STREAM/UDF on the same rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = breast_cancer.features.drop(columns=["band"])
    per_column = make_pipeline(ColumnTransformer([("scaled", StandardScaler(), list(features.columns))]), LogisticRegression(max_iter=5000))
    per_column.fit(features, breast_cancer.target)
    ridge = Ridge().fit(features, breast_cancer.target.astype(float))
    query = "SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = patients AS d, PLAN = {plan}) WITH (Score FLOAT) AS p ORDER BY d.id"
    for estimator, expected in ((per_column, per_column.predict_proba(features)[:, 1]), (ridge, ridge.predict(features))):
        model = predictsql.export(estimator, features, outputs={"score": "Score"})
        inline = not_none(backend.sql(query.format(plan="INLINE"), params={"m": model}))  # PLAN = INLINE refuses a model without an SQL form
        np.testing.assert_allclose(inline["Score"], expected, atol=PROBA_TOLERANCE, rtol=1e-6)
        scored = not_none(backend.sql(query.format(plan="UDF"), params={"m": model}))
        np.testing.assert_allclose(inline["Score"], scored["Score"], atol=PROBA_TOLERANCE, rtol=1e-6)


@pytest.mark.parametrize("plan", ["INLINE", "UDF"])
def test_an_imputing_pipeline_is_inline_and_fills_nan_as_scikit_learn_does(backend, breast_cancer, plan: str) -> None:
    """SimpleImputer → StandardScaler → LogisticRegression: NaN (a value, unlike NULL) becomes the column's mean, under
    INLINE as SQL (ai.onnx.ml Imputer) and under UDF by onnxruntime, each against scikit-learn's own probabilities."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = numeric(breast_cancer.features).copy()
    gaps = breast_cancer.table.id.to_numpy() % 7 == 0
    features.loc[gaps, "mean_texture"] = np.nan
    pipeline = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=5000)).fit(features, breast_cancer.target)
    columns = ", ".join(c if c != "mean_texture" else "CASE WHEN id % 7 = 0 THEN CAST('NaN' AS DOUBLE) ELSE mean_texture END AS mean_texture" for c in features.columns)
    query = f"SELECT d.id, p.Score FROM PREDICT(MODEL = @m, DATA = (SELECT id, {columns} FROM patients) AS d, PLAN = {plan}) WITH (Score FLOAT) AS p ORDER BY d.id"
    rows = not_none(backend.sql(query, params={"m": predictsql.export(pipeline, features, outputs={"score": "Score"})}))
    np.testing.assert_allclose(rows.Score, pipeline.predict_proba(features)[:, 1], atol=PROBA_TOLERANCE)
