"""An export scored on its sample's rows and compared with its own library's predictions before it leaves export().

The converters are wrong without a warning for some models and settings (measured on held-out rows: a scikit-learn
forest fitted on NaN 0.47 off in probability, isotonic calibration 0.74, LightGBM's random-forest boosting 0.88,
its linear trees 76% in value, XGBoost after a sparse one-hot encoding 192), and a model that scores wrongly must not
reach PREDICT. The bounds catch a converter's mistake, not float32 rounding: a FLOAT input rounds large unscaled
values by up to about 1e-4 in probability, which the library does not, and that is no reason to refuse a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from predictsql.engine import frames, sessions
from predictsql.engine.binding import OutputRequest, bind
from predictsql.engine.errors import BindError, ExportError, ModelError, NullInputError, PredictSQLError
from predictsql.engine.scoring import Scorer
from predictsql.engine.sources import ModelSource

ROWS = 256  # the sample's first rows: enough to meet a converter's mistake, cheap for any library's predict
PROBABILITY = 1e-3  # beyond, a probability is the converter's mistake, not rounding
VALUE = 1e-3  # likewise for a value, relative to the largest the library predicts
_REFERENCE = sessions.SessionOptions(compiled_trees=False)  # onnxruntime alone: compiling a forest here cost 0.5 s an export
_FIX = "it would score differently from the library in PREDICT: export a setting the converter supports, or convert the model yourself and pass the ONNX to export"


def check(model: Any, sample: Any, exported: bytes, made_by: str) -> None:
    """ExportError where `exported` does not reproduce `model` on the sample's first rows (a classifier's probabilities
    and its labels where the top two classes are apart, or a regressor's values); nothing to compare without a sample."""
    if sample is None or len(sample) == 0:
        return
    rows = sample.head(ROWS)
    table = frames.from_pandas(rows, "export()")
    try:
        loaded = sessions.load(ModelSource(exported, f"the exported {made_by}"), _REFERENCE)
        plan = bind(table.schema, loaded, [OutputRequest(spec.name) for spec in loaded.signature.outputs])
    except BindError as e:
        if any(pa.types.is_dictionary(f.type) for f in table.schema):
            return  # a pandas category, which no SQL column is: the sample cannot stand for DATA here
        raise ExportError(f"the exported {made_by} cannot read its own sample as DATA: {e}") from e
    except ModelError as e:
        raise ExportError(f"the exported {made_by} is a model onnxruntime cannot run: {e}") from e
    try:
        scored = Scorer(plan).score(table.combine_chunks().to_batches()[0])
    except NullInputError:
        return  # a None in the sample: PREDICT refuses it as NULL, whatever the model
    except PredictSQLError as e:
        raise ExportError(f"the exported {made_by} does not score its sample: {e}") from e
    outputs = {spec.name: _matrix(scored.column(out.field)) for spec, out in zip(loaded.signature.outputs, plan.outputs, strict=True)}
    if (hasattr(model, "predict_proba") or hasattr(model, "decision_function")) and getattr(model, "classes_", None) is not None:
        _check_classifier(model, rows, outputs, made_by)
    elif _is_regressor(model):
        _check_regressor(model, rows, outputs, made_by)


def _library(method: Any, rows: Any, model: Any) -> np.ndarray | None:
    """The library's own predictions on the sample's rows (in the column order it was fitted on, which a sample need not
    keep); None where it cannot make them (then there is nothing to compare)."""
    names = getattr(model, "feature_names_in_", None)
    for frame in (rows, rows[[str(n) for n in names]] if names is not None and set(map(str, names)) <= set(rows.columns) else None):
        if frame is None:
            continue
        try:
            return np.asarray(method(frame))
        except Exception:  # each library's own error types: a sample it cannot read as given
            continue
    return None


def _check_classifier(model: Any, rows: Any, outputs: dict[str, np.ndarray], made_by: str) -> None:
    """The class probabilities, or the decision scores of a classifier without them (binary: [-d, d]), then the labels."""
    if hasattr(model, "predict_proba"):
        probabilities = _library(model.predict_proba, rows, model)
        if probabilities is None:
            return
        expected, bound, what = probabilities.astype(np.float64), PROBABILITY, "probability"
    else:
        decision = _library(model.decision_function, rows, model)
        if decision is None:
            return
        decision = decision.astype(np.float64)
        expected = np.column_stack([-decision, decision]) if decision.ndim == 1 else decision
        bound, what = VALUE * max(float(np.nanmax(np.abs(decision), initial=0.0)), 1e-12), "decision score"
    matrix = next((v for v in outputs.values() if v.dtype.kind == "f" and v.shape == expected.shape), None)
    if matrix is None:
        return  # no output of one value per class: nothing to compare
    _compare(matrix, expected, bound, what, made_by)
    top = np.sort(expected, axis=1)[:, -2:] if expected.shape[1] > 1 else None
    labels = next((v.ravel() for v in outputs.values() if v.dtype.kind in "iuUSOb" and v.size == len(expected)), None)
    if top is None or labels is None:
        return
    predicted = _library(model.predict, rows, model)
    if predicted is None:
        return
    predicted = predicted.ravel()
    clear = top[:, 1] - top[:, 0] > bound
    wrong = np.flatnonzero(clear & ~_same(labels, predicted))
    if len(wrong):
        i = int(wrong[0])
        raise ExportError(f"the exported {made_by} labels sample row {i} {labels[i]!r} where the library predicts {predicted[i]!r}: {_FIX}")


def _same(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Label by label, equal as numbers (1 and True, 0 and 0.0) or else as text."""
    try:
        return labels.astype(np.float64) == predicted.astype(np.float64)
    except (TypeError, ValueError):
        return labels.astype(str) == predicted.astype(str)


def _check_regressor(model: Any, rows: Any, outputs: dict[str, np.ndarray], made_by: str) -> None:
    predicted = _library(model.predict, rows, model)
    if predicted is None:
        return
    expected = predicted.astype(np.float64).reshape(len(predicted), -1)
    values = next((v for v in outputs.values() if v.dtype.kind == "f" and v.shape == expected.shape), None)
    if values is None:
        raise ExportError(f"the exported {made_by} has no output of the {expected.shape[1]} value(s) per row the library predicts: {_FIX}")
    _compare(values, expected, VALUE * max(float(np.nanmax(np.abs(expected), initial=0.0)), 1e-12), "value", made_by)


def _compare(got: np.ndarray, expected: np.ndarray, bound: float, what: str, made_by: str) -> None:
    """ExportError naming the first sample row where `got` is beyond `bound` of `expected` (NaN only where expected)."""
    off = np.abs(got.astype(np.float64) - expected)
    beyond = (off > bound) | (np.isnan(got) != np.isnan(expected))
    if beyond.any():
        i, j = (int(k) for k in np.argwhere(beyond)[0])
        raise ExportError(f"the exported {made_by} gives {what} {got[i, j]:.6g} for sample row {i} where the library gives {expected[i, j]:.6g}: {_FIX}")


def _matrix(column: pa.Array) -> np.ndarray:
    """An output column as rows × values (a list column stacked; a scalar one as one value per row)."""
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        return np.stack(column.to_numpy(zero_copy_only=False)) if len(column) else np.empty((0, 0))
    return column.to_numpy(zero_copy_only=False).reshape(len(column), -1)


def _is_regressor(model: Any) -> bool:
    """scikit-learn's regressors and pipelines ending in one, the boosters' regressors and CatBoost's."""
    if type(model).__name__.endswith("Regressor"):
        return True
    try:
        from sklearn.base import is_regressor
    except ImportError:  # a CatBoost model needs no scikit-learn
        return False
    return bool(is_regressor(model))
