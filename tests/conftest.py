"""Shared fixtures: real bundled datasets, fitted scikit-learn models with their ONNX exports,
and a real DuckDB database file holding both the data and the models (as BLOBs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import predictsql

PROBA_TOLERANCE = 1.5e-5
MARGIN = 1e-4

T = TypeVar("T")


def not_none(value: T | None) -> T:
    """`value`, which must not be None: what Connection.sql() and udfs.spark.sql() return for a statement with rows."""
    assert value is not None
    return value


def onnx_model(nodes: list, inputs: list, outputs: list, initializers: list | tuple = ()) -> bytes:
    """A hand-made model's bytes: one graph of `nodes` in the default domain at opset 17."""
    import onnx

    graph = onnx.helper.make_graph(nodes, "hand-made", inputs, outputs, list(initializers))
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


@dataclass(frozen=True)
class Dataset:
    name: str
    features: pd.DataFrame  # what the model reads, column names as stored in DuckDB
    target: pd.Series

    @property
    def table(self) -> pd.DataFrame:
        """The DuckDB table: an id, the features and the true class."""
        return self.features.assign(id=np.arange(len(self.features)), target=self.target.values)


def _with_band(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Add a real string column (tertile band of `column`) so one-hot pipelines have text to encode."""
    bands = pd.qcut(frame[column], 3, labels=["low", "mid", "high"]).astype(str)
    return frame.assign(band=bands.values)


def _load(name: str) -> Dataset:
    loader = {"breast_cancer": load_breast_cancer, "wine": load_wine}[name]
    bunch = loader(as_frame=True)
    features = bunch.data.rename(columns=lambda c: c.replace(" ", "_"))
    band_source = "mean_radius" if name == "breast_cancer" else "alcohol"
    return Dataset(name, _with_band(features, band_source), bunch.target)


DATASETS = ("breast_cancer", "wine")


@pytest.fixture(scope="session", params=DATASETS)
def dataset(request: pytest.FixtureRequest) -> Dataset:
    return _load(request.param)


@pytest.fixture(scope="session")
def breast_cancer() -> Dataset:
    return _load("breast_cancer")


def numeric(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="band")


def one_hot_pipeline(frame: pd.DataFrame):
    numeric_columns = [c for c in frame.columns if c != "band"]
    transform = ColumnTransformer([("num", StandardScaler(), numeric_columns), ("cat", OneHotEncoder(handle_unknown="ignore"), ["band"])])
    return make_pipeline(transform, LogisticRegression(max_iter=2000))


MODEL_KINDS = {
    "logistic_regression": lambda: LogisticRegression(max_iter=5000),
    "random_forest": lambda: RandomForestClassifier(n_estimators=20, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
    # MLPs are trained on scaled inputs; raw breast-cancer areas (~2500) cost 1.9e-5 in float32 input rounding.
    "mlp": lambda: make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0)),
    "scaler_pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
}


class Classifier(Protocol):
    """What the tests read of a fitted scikit-learn classifier (or a pipeline ending in one)."""

    @property
    def classes_(self) -> np.ndarray: ...

    def predict(self, X: Any) -> np.ndarray: ...

    def predict_proba(self, X: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class Fitted:
    estimator: Classifier
    features: pd.DataFrame  # the columns it was trained on
    onnx: bytes


def fit(kind: str, data: Dataset) -> Fitted:
    """Fit one model kind on a dataset and export it; the one-hot kind also reads the string column."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    features = data.features if kind == "one_hot_pipeline" else numeric(data.features)
    estimator = one_hot_pipeline(features) if kind == "one_hot_pipeline" else MODEL_KINDS[kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(features, data.target)
    outputs = {"score": "Score"} if data.target.nunique() == 2 else None
    return Fitted(estimator, features, predictsql.export(estimator, features, outputs=outputs))


@pytest.fixture(scope="session")
def logreg(breast_cancer: Dataset) -> Fitted:
    """The workhorse model: scaled logistic regression on breast cancer, with a Score output."""
    return fit("scaler_pipeline", breast_cancer)


@pytest.fixture
def db_path(tmp_path: Path, breast_cancer: Dataset, logreg: Fitted) -> Path:
    """A real DuckDB file with `patients` (data) and `models` (ONNX BLOBs, id 1 = logreg)."""
    path = tmp_path / "shop.duckdb"
    with predictsql.connect(str(path)) as con:
        con.duckdb.register("frame", breast_cancer.table)
        con.duckdb.sql("CREATE TABLE patients AS SELECT * FROM frame")
        con.duckdb.unregister("frame")
        con.duckdb.sql("CREATE TABLE models (id INTEGER, name VARCHAR, model BLOB)")
        con.duckdb.execute("INSERT INTO models VALUES (1, 'logreg', ?)", [logreg.onnx]).fetchall()
    return path


@pytest.fixture
def con(db_path: Path):
    with predictsql.connect(str(db_path)) as connection:
        yield connection


@pytest.fixture
def large_data_con(db_path: Path):
    """A connection that plans every DATA as DATA of many rows (small_data_rows=0): for AUTO's rules beyond small DATA."""
    with predictsql.connect(str(db_path), small_data_rows=0) as connection:
        yield connection


def expected_scores(fitted: Fitted, rows: pd.DataFrame | None = None) -> np.ndarray:
    """scikit-learn's P(class 1) for the given rows (default: all training rows)."""
    return fitted.estimator.predict_proba(fitted.features if rows is None else rows[fitted.features.columns])[:, 1]


def assert_scores(fitted: Fitted, data: Dataset, ids, scores) -> None:
    """Scores for the given ids equal scikit-learn's P(class 1) within tolerance."""
    table = data.table.set_index("id").loc[np.asarray(ids)]
    np.testing.assert_allclose(np.asarray(scores, dtype=np.float64), expected_scores(fitted, table), atol=PROBA_TOLERANCE, rtol=0)


def assert_parity(estimator: Classifier, features: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray) -> None:
    """Probabilities within 1.5e-5 of scikit-learn; labels equal wherever the top-class margin exceeds 1e-4."""
    expected = estimator.predict_proba(features)
    np.testing.assert_allclose(probabilities, expected, atol=PROBA_TOLERANCE, rtol=0)
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > MARGIN
    np.testing.assert_array_equal(labels[clear], estimator.predict(features)[clear])


# --- backends: one shared suite runs on DuckDB and on Spark ---


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """One local[2] SparkSession for the whole run (start-up is paid once)."""
    from predictsql.udfs import spark as ps

    warehouse = tmp_path_factory.mktemp("warehouse")
    session = ps.session(
        "local[2]",
        **{
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}",
        },
    )
    session.sparkContext.setLogLevel("OFF")
    yield session
    session.stop()


BACKENDS = ("duckdb", "spark")


def no_stream_on_spark(backend, plan: str, request: pytest.FixtureRequest) -> None:
    """A shared case under PLAN = STREAM is a strict xfail on Spark, which has no STREAM plan (its BindError says so)."""
    from predictsql.engine.errors import BindError

    if backend.name == "spark" and plan == "STREAM":
        request.applymarker(pytest.mark.xfail(raises=BindError, strict=True, reason="Spark scores every PREDICT that is not INLINE in an Arrow UDF: it has no STREAM plan"))


def duckdb_only(reason: str):
    """Run a shared-suite case on DuckDB alone; `reason` says why Spark cannot run it."""
    assert reason
    return pytest.mark.parametrize("backend", [pytest.param("duckdb", id="duckdb")], indirect=True)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, db_path: Path, breast_cancer: Dataset, logreg: Fitted):
    """`patients` (data) and `models` (id 1 = logreg as a BLOB / BINARY) on the chosen engine."""
    from backends import DuckDBBackend, SparkBackend

    engine: DuckDBBackend | SparkBackend
    if request.param == "duckdb":
        engine = DuckDBBackend(db_path)
    else:
        engine = SparkBackend(request.getfixturevalue("spark"))
        engine.load("patients", breast_cancer.table)
        engine.load("models", pd.DataFrame({"id": [1], "name": ["logreg"], "model": [logreg.onnx]}))
    yield engine
    engine.close()


# --- model stores: a real MLflow registry (sqlite) ---


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real MLflow tracking + registry store (sqlite) whose artefacts live in a temp folder."""
    from predictsql.engine.mlflow_registry import MlflowRegistry

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # the Default experiment keeps its artefacts under the working folder of its creation
        MlflowRegistry(uri).client(create=True).search_experiments()
    return uri


@pytest.fixture(scope="session")
def forest(breast_cancer: Dataset) -> Fitted:
    """A second, different model on the same data: versions of one registered name can be told apart."""
    return fit("random_forest", breast_cancer)
