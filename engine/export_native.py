"""Models whose library writes ONNX itself: CatBoost (`save_model(format="onnx")`), torch (`torch.onnx.export`,
the dynamo exporter with a dynamic batch dimension) and Keras 3 (`Model.export(format="onnx")`).

Each has one [N,k] float input; CatBoost keeps the names it was fitted on, torch and Keras keep none, so those take
`columns` or a sample's column names.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx

from predictsql.engine.errors import ExportError
from predictsql.engine.export import Columns, Converted, column_names, float_sample, listed


def convert(model: Any, sample: Any, columns: Columns, library: str) -> Converted:
    """`model` converted by its own library's exporter (see export.export)."""
    return {"catboost": _catboost, "torch": _torch, "keras": _keras}[library](model, sample, columns)


def _catboost(model: Any, sample: Any, columns: Columns) -> Converted:
    if not model.is_fitted():
        raise ExportError(f"{type(model).__name__} is not fitted: call fit(X, y) on it before export")
    names = model.feature_names_
    fitted = names if not all(str(n).isdigit() for n in names) else None  # numpy-fitted models name them 0, 1, …
    names = column_names(fitted, sample, listed(columns), type(model).__name__, len(names))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        try:
            model.save_model(str(path), format="onnx")
        except Exception as e:  # CatBoostError: categorical features, text features, …
            raise ExportError(f"CatBoost cannot export {type(model).__name__} as ONNX: {str(e).strip()}") from e
        proto = onnx.load(str(path))
    return Converted(proto, {proto.graph.input[0].name: names}, getattr(model, "classes_", None) if hasattr(model, "predict_proba") else None)


def _torch(module: Any, sample: Any, columns: Columns) -> Converted:
    import torch

    names = column_names(None, sample, listed(columns), type(module).__name__)
    dtype = next((p.dtype for p in module.parameters()), torch.float32)
    example = torch.from_numpy(float_sample(sample, names)) if sample is not None else torch.zeros(2, len(names))
    example = example.to(dtype)
    with _quiet():
        program = torch.onnx.export(
            module.eval(), (example,), input_names=["input"], dynamic_shapes=({0: torch.export.Dim("N")},), dynamo=True, verbose=False
        )
    if program is None:  # torch returns None only when given a file to write
        raise ExportError("torch.onnx.export returned no program")
    return Converted(program.model_proto, {"input": names}, None)


def _keras(model: Any, sample: Any, columns: Columns) -> Converted:
    names = column_names(None, sample, listed(columns), type(model).__name__)
    with tempfile.TemporaryDirectory() as folder, _quiet():
        path = Path(folder) / "model.onnx"
        try:
            model.export(str(path), format="onnx", verbose=False)
        except ValueError as e:  # "The model provided has never called"
            raise ExportError(f"Keras could not export model {model.name} ({e}): fit it, or call it once on a batch, first") from e
        proto = onnx.load(str(path))
    return Converted(proto, {proto.graph.input[0].name: names}, None)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress to stdout, log notes and warn about their own internals; a library call should not."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
