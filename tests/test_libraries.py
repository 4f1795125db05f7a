"""Models from every library the Synapse runtime ships, exported by predictsql.export and scored by PREDICT on DuckDB
and on Spark, against the library's own predictions on the same rows (real bundled datasets, real column names)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import predictsql

from conftest import MARGIN, PROBA_TOLERANCE, not_none

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on torch: CI installs torch, not tensorflow

REGRESSION_RTOL = 2e-6  # float32 outputs of float64 sums: the measured worst is 3.5e-7 (README)


@dataclass(frozen=True)
class Task:
    """A dataset as a table: features with SQL-friendly real names, the target, and whether it is a classification."""

    features: pd.DataFrame
    target: pd.Series
    classes: int  # 0 for a regression

    @property
    def table(self) -> pd.DataFrame:
        return self.features.assign(id=np.arange(len(self.features)))


def _task(loader: Callable[..., Any], classes: int) -> Task:
    bunch = loader(as_frame=True)
    return Task(bunch.data.rename(columns=lambda c: c.replace(" ", "_").replace("/", "_")), bunch.target, classes)


TASKS = {"binary": (load_breast_cancer, 2), "multiclass": (load_wine, 3), "regressor": (load_diabetes, 0)}


@dataclass(frozen=True)
class Case:
    """A fitted model, its ONNX export with outputs named `probabilities` (classifiers) or `value` (regressors), and
    the library's own predictions: class probabilities, or values."""

    onnx: bytes
    expected: np.ndarray
    labels: np.ndarray | None  # the library's predicted class, where the model has a label output


def _sklearn_api(model: Any, task: Task) -> Case:
    """XGBoost, LightGBM and CatBoost estimators (and scikit-learn pipelines of them): fitted, exported, predicted."""
    model.fit(task.features, task.target)
    if task.classes:
        return Case(predictsql.export(model, task.features), model.predict_proba(task.features), np.asarray(model.predict(task.features)).ravel())
    renamed = {"predictions": "value"} if type(model).__module__.startswith("catboost") else {"variable": "value"}
    return Case(predictsql.export(model, task.features, outputs=renamed), np.asarray(model.predict(task.features)), None)


def _xgboost(task: Task, pipeline: bool) -> Case:
    import xgboost

    estimator = (xgboost.XGBClassifier if task.classes else xgboost.XGBRegressor)(n_estimators=30, max_depth=4, random_state=0)
    return _sklearn_api(make_pipeline(StandardScaler(), estimator) if pipeline else estimator, task)


def _lightgbm(task: Task, pipeline: bool) -> Case:
    import lightgbm

    estimator = (lightgbm.LGBMClassifier if task.classes else lightgbm.LGBMRegressor)(n_estimators=60, random_state=0, verbose=-1)
    return _sklearn_api(make_pipeline(StandardScaler(), estimator) if pipeline else estimator, task)


def _catboost(task: Task, pipeline: bool) -> Case:
    import catboost

    assert not pipeline, "CatBoost models are exported alone"
    estimator = (catboost.CatBoostClassifier if task.classes else catboost.CatBoostRegressor)(iterations=40, depth=4, random_seed=0, verbose=0, allow_writing_files=False)
    return _sklearn_api(estimator, task)


def _torch(task: Task, pipeline: bool) -> Case:
    """A small MLP whose first layer standardises its inputs (the preprocessing lives in the module), trained briefly."""
    import torch

    torch.manual_seed(0)
    x = torch.tensor(task.features.to_numpy(np.float32))
    mean, std = x.mean(0), x.std(0)
    head = torch.nn.Softmax(dim=1) if task.classes else torch.nn.Identity()
    body = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 16), torch.nn.ReLU(), torch.nn.Linear(16, task.classes or 1), head)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body
            self.mean = torch.nn.Parameter(mean, requires_grad=False)
            self.std = torch.nn.Parameter(std, requires_grad=False)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.body((features - self.mean) / self.std)

    net = Net()
    target = torch.tensor(task.target.to_numpy(), dtype=torch.long if task.classes else torch.float32)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(30):
        optimiser.zero_grad()
        out = net(x)
        loss = torch.nn.functional.nll_loss(torch.log(out), target) if task.classes else torch.nn.functional.mse_loss(out.ravel(), target)
        loss.backward()
        optimiser.step()
    expected = net(x).detach().numpy()
    return Case(predictsql.export(net, task.features, outputs=["probabilities" if task.classes else "value"]), expected if task.classes else expected.ravel(), None)


def _keras(task: Task, pipeline: bool) -> Case:
    """A Keras 3 model with a Normalization layer in front, trained briefly; its inputs named by `columns`."""
    import keras

    keras.utils.set_random_seed(0)
    x = task.features.to_numpy(np.float32)
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Normalization(mean=x.mean(0), variance=x.var(0)), keras.layers.Dense(16, activation="relu")]
        + [keras.layers.Dense(task.classes, activation="softmax") if task.classes else keras.layers.Dense(1)]
    )
    model.compile("adam", "sparse_categorical_crossentropy" if task.classes else "mse")
    model.fit(x, task.target.to_numpy(), epochs=2, verbose=0)
    expected = model.predict(x, verbose=0)
    onnx_bytes = predictsql.export(model, columns=list(task.features.columns), outputs=["probabilities" if task.classes else "value"])
    return Case(onnx_bytes, expected if task.classes else expected.ravel(), None)


LIBRARIES: dict[str, Callable[[Task, bool], Case]] = {"xgboost": _xgboost, "lightgbm": _lightgbm, "catboost": _catboost, "torch": _torch, "keras": _keras}
PIPELINES = ("xgboost", "lightgbm")  # scikit-learn pipelines; torch and Keras carry preprocessing as layers (above)
CASES = [(library, kind, False) for library in LIBRARIES for kind in TASKS] + [(library, kind, True) for library in PIPELINES for kind in ("binary", "regressor")]


@pytest.fixture(scope="module")
def fitted() -> Callable[[str, str, bool], tuple[Task, Case]]:
    """Fit each (library, task, pipeline) once for both engines."""
    cache: dict[tuple[str, str, bool], tuple[Task, Case]] = {}

    def get(library: str, kind: str, pipeline: bool) -> tuple[Task, Case]:
        if (library, kind, pipeline) not in cache:
            task = _task(*TASKS[kind])
            cache[library, kind, pipeline] = (task, LIBRARIES[library](task, pipeline))
        return cache[library, kind, pipeline]

    return get


@pytest.mark.parametrize(("library", "kind", "pipeline"), CASES, ids=[f"{lib}-{kind}{'-pipeline' if p else ''}" for lib, kind, p in CASES])
def test_predict_equals_the_library(backend, fitted, library: str, kind: str, pipeline: bool) -> None:
    task, case = fitted(library, kind, pipeline)
    backend.load("rows", task.table)
    output = "probabilities FLOAT[]" if task.classes else "value FLOAT"
    label = ", label BIGINT" if case.labels is not None else ""
    rows = not_none(backend.sql(f"SELECT d.id, p.* FROM PREDICT(MODEL = @m, DATA = rows AS d) WITH ({output}{label}) AS p ORDER BY d.id", params={"m": case.onnx}))
    if not task.classes:
        np.testing.assert_allclose(rows["value"].to_numpy(np.float64), case.expected, rtol=REGRESSION_RTOL, atol=REGRESSION_RTOL * np.abs(case.expected).max())
        return
    probabilities = np.stack(rows["probabilities"].to_numpy())
    np.testing.assert_allclose(probabilities, case.expected, atol=PROBA_TOLERANCE, rtol=0)
    if case.labels is not None:
        top2 = np.sort(case.expected, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > MARGIN
        np.testing.assert_array_equal(rows["label"].to_numpy()[clear], case.labels[clear])


@pytest.mark.parametrize("library", ["xgboost", "lightgbm", "catboost"])
def test_score_output_for_every_classifier_and_regressor(library: str) -> None:
    """`outputs={"score": ...}` is P(positive class) of a binary classifier and the value of a regressor, for each library."""
    for kind in ("binary", "regressor"):
        task = _task(*TASKS[kind])
        case = LIBRARIES[library](task, False)
        model = predictsql.export(case.onnx, outputs={"score": "Score"})
        scored = predictsql.predict(model, task.features, outputs=["Score"])["Score"].to_numpy()
        expected = np.asarray(case.expected)[:, 1] if task.classes else case.expected
        np.testing.assert_allclose(scored, expected, atol=PROBA_TOLERANCE if task.classes else REGRESSION_RTOL * np.abs(expected).max(), rtol=0)


def test_xgboost_multi_softmax_gives_the_probabilities_xgboost_gives() -> None:
    """multi:softmax predicts labels, and its predict_proba is the softmax of the margins: onnxmltools wrote the
    margins as the probabilities (1.88 where XGBoost gives 0.95), so the export was refused; it now adds the softmax."""
    import xgboost

    task = _task(*TASKS["multiclass"])
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, objective="multi:softmax", random_state=0).fit(task.features, task.target)
    scored = predictsql.predict(predictsql.export(model, task.features), task.features)
    probabilities = np.column_stack([scored[f"probabilities_{k}"].to_numpy() for k in range(3)])
    np.testing.assert_allclose(probabilities, model.predict_proba(task.features), atol=PROBA_TOLERANCE, rtol=0)
    np.testing.assert_array_equal(scored["label"].to_numpy().ravel(), model.predict(task.features))


@pytest.mark.parametrize("ensemble", ["voting", "stacking", "calibration"])
def test_xgboost_inside_an_ensemble_exports_with_its_real_column_names(ensemble: str) -> None:
    """onnxmltools wants an XGBoost model's features named f0, f1, …: the export hid the names of a final XGBoost
    model only, so one inside voting, stacking or calibration failed to convert; each equals scikit-learn now."""
    import xgboost
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier, StackingClassifier, VotingClassifier

    task = _task(*TASKS["binary"])
    booster = xgboost.XGBClassifier(n_estimators=10, max_depth=3, random_state=0)
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0)
    model = {
        "voting": lambda: VotingClassifier([("xgb", booster), ("rf", forest)], voting="soft", flatten_transform=False),
        "stacking": lambda: StackingClassifier([("xgb", booster), ("rf", forest)]),
        "calibration": lambda: CalibratedClassifierCV(booster, method="sigmoid"),
    }[ensemble]().fit(task.features, task.target)
    scored = predictsql.predict(predictsql.export(model, task.features), task.features)
    probabilities = np.column_stack([scored[f"probabilities_{k}"].to_numpy() for k in range(2)])
    np.testing.assert_allclose(probabilities, model.predict_proba(task.features), atol=PROBA_TOLERANCE, rtol=0)


def test_lightgbm_on_float64_data_is_exact_where_float_inputs_are_not() -> None:
    """LightGBM's thresholds are doubles: on values closer together than float32 can tell apart, a FLOAT export would
    send rows down the wrong branch; the export takes DOUBLE inputs and equals `predict`."""
    import lightgbm

    x = pd.DataFrame({"x": 0.3 + np.linspace(0, 1e-6, 2000)})  # ~34 distinct float32 values
    y = (x.x > 0.3 + 5e-7).astype(float) * 100
    model = lightgbm.LGBMRegressor(n_estimators=5, min_child_samples=5, verbose=-1).fit(x, y)
    scored = predictsql.predict(predictsql.export(model, x, outputs={"score": "value"}), x, outputs=["value"])["value"].to_numpy()
    expected = model.predict(x)
    assert np.count_nonzero(np.asarray(model.predict(x.astype(np.float32).astype(np.float64))) != expected) > 0  # what float32 inputs would give
    np.testing.assert_allclose(scored, expected, rtol=REGRESSION_RTOL, atol=REGRESSION_RTOL * np.abs(expected).max())


def test_lightgbm_keeps_the_samples_spelling_of_names_it_sanitised() -> None:
    """LightGBM stores 'mean radius' as 'mean_radius'; with a sample the model binds the real column names."""
    import lightgbm

    bunch = load_breast_cancer(as_frame=True)
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(bunch.data, bunch.target)
    assert "mean_radius" in model.feature_names_in_
    scored = predictsql.predict(predictsql.export(model, bunch.data, outputs={"score": "Score"}), bunch.data, outputs=["Score"])
    np.testing.assert_allclose(scored["Score"].to_numpy(), np.asarray(model.predict_proba(bunch.data))[:, 1], atol=PROBA_TOLERANCE, rtol=0)


def test_columns_come_from_the_fitted_model_not_the_samples_order() -> None:
    """A sample whose columns are in another order still gives a model that reads each column as fitted."""
    import xgboost

    task = _task(load_breast_cancer, 2)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(task.features, task.target)
    shuffled = task.features[task.features.columns[::-1]]
    scored = predictsql.predict(predictsql.export(model, shuffled, outputs={"score": "Score"}), shuffled, outputs=["Score"])
    np.testing.assert_allclose(scored["Score"].to_numpy(), model.predict_proba(task.features)[:, 1], atol=PROBA_TOLERANCE, rtol=0)


def test_a_sample_or_columns_that_contradict_the_fitted_names_are_refused() -> None:
    import xgboost

    from predictsql.engine.errors import ExportError

    task = _task(load_breast_cancer, 2)
    model = xgboost.XGBClassifier(n_estimators=5).fit(task.features, task.target)
    with pytest.raises(ExportError, match="are not the columns XGBClassifier was fitted on"):
        predictsql.export(model, task.features.drop(columns=["mean_radius"]))
    with pytest.raises(ExportError, match="contradicts the columns XGBClassifier was fitted on"):
        predictsql.export(model, columns=list(task.features.columns[::-1]))


def test_torch_without_names_is_told_to_pass_a_sample_or_columns() -> None:
    import torch

    from predictsql.engine.errors import ExportError

    with pytest.raises(ExportError, match=r"does not record the names of the columns.*sample=.*columns="):
        predictsql.export(torch.nn.Linear(3, 1))


def test_integral_float_class_labels_name_columns_as_integers() -> None:
    """A classifier fitted on a float 0.0/1.0 target (common with pandas) gives probabilities_0 and probabilities_1."""
    from sklearn.linear_model import LogisticRegression

    task = _task(load_breast_cancer, 2)
    model = LogisticRegression(max_iter=5000).fit(task.features, task.target.astype(float))
    scored = predictsql.predict(predictsql.export(model, task.features), task.features)
    assert scored.column_names[-2:] == ["probabilities_0", "probabilities_1"]
    np.testing.assert_allclose(scored["probabilities_1"].to_numpy(), model.predict_proba(task.features)[:, 1], atol=PROBA_TOLERANCE, rtol=0)


def test_a_missing_converter_names_the_extra_to_install() -> None:
    """Without onnxmltools (hidden from a fresh interpreter), exporting an XGBoost model says which extra installs it."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['onnxmltools'] = None\n"  # import onnxmltools now raises ImportError, as when it is not installed
        "import xgboost, predictsql\n"
        "from sklearn.datasets import load_breast_cancer\n"
        "X, y = load_breast_cancer(return_X_y=True, as_frame=True)\n"
        "try:\n    predictsql.export(xgboost.XGBClassifier(n_estimators=2).fit(X, y))\n"
        "except predictsql.PredictSQLError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "exporting a xgboost model needs onnxmltools: pip install 'predictsql[xgboost]'" in done.stdout, done.stderr
