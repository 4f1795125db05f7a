"""Any library's fitted model → ONNX bytes with the metadata PREDICT binds by.

Each library's own converter does the conversion (export_sklearn: scikit-learn, XGBoost and LightGBM through
skl2onnx and onnxmltools; export_native: CatBoost, torch and Keras exporters; ONNX made elsewhere as is); this
module decides the DATA column names once for all of them:
- the names the model was fitted on where its library keeps them (sklearn's feature_names_in_, the boosters'
  feature names), which a contradicting `sample` or `columns` cannot override;
- else `columns`, else the sample's column names.
Then every model gets the same finish (onnx_edit): one [N,C] probability tensor, the `outputs` names, metadata; and
a library's model is scored on the sample and compared with its own predictions (export_check).
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import pyarrow as pa

from predictsql.engine import export_check, onnx_edit
from predictsql.engine.errors import ExportError
from predictsql.engine.signature import INPUTS_KEY
from predictsql.engine.sources import resolve
from predictsql.engine.validate import load_model

Outputs = Mapping[str, str] | Sequence[str] | None
Columns = Sequence[str] | Mapping[str, Sequence[str]] | None

# the library a model's class comes from → the module that converts it, and the extra that installs its converter
_CONVERTERS = {
    "sklearn": ("export_sklearn", "export"),
    "xgboost": ("export_sklearn", "xgboost"),
    "lightgbm": ("export_sklearn", "lightgbm"),
    "catboost": ("export_native", "catboost"),
    "torch": ("export_native", "torch"),
    "keras": ("export_native", "keras"),
}


_CHECKED = ("sklearn", "xgboost", "lightgbm", "catboost")  # libraries whose predict() on the sample is the reference (export_check)


@dataclass(frozen=True)
class Converted:
    """A library converter's result: the graph, DATA columns per [N,k] input, and class labels if it is a classifier."""

    model: onnx.ModelProto
    columns: dict[str, list[str]]
    classes: Sequence[object] | None


def export(model: Any, sample: Any = None, outputs: Outputs = None, columns: Columns = None) -> bytes:
    """A fitted model (or ONNX bytes, a path or a ModelProto made elsewhere) as ONNX bytes PREDICT binds by name.

    `sample` (a DataFrame or Arrow table) names the columns where the model does not know them and gives their
    types; `columns` names them without a sample: a list for a model with one [N,k] input, {input: [names]} else.
    `outputs` renames outputs ({old: new}; `score` adds P(positive class) or the regressor's value) or names all
    of them in order (a list, for torch and Keras models whose outputs have no useful names).
    """
    foreign = isinstance(model, (bytes, bytearray, str, os.PathLike, onnx.ModelProto))
    if foreign:
        return finish(_foreign(model, columns), outputs, None)
    library = library_of(model)
    module, extra = _CONVERTERS[library]
    converter = importlib.import_module(f"predictsql.engine.{module}")
    frame = _as_frame(sample)
    try:
        converted = converter.convert(model, frame, columns, library)
    except ImportError as e:
        raise ExportError(f"exporting a {library} model needs {(e.name or 'its converter').split('.')[0]}: pip install 'predictsql[{extra}]'") from e
    exported = finish(converted, outputs, type(model).__name__)
    if library in _CHECKED:
        export_check.check(model, frame, exported, type(model).__name__)
    return exported


def finish(converted: Converted, outputs: Outputs, made_by: str | None) -> bytes:
    """The edits every exported model gets, then onnx.checker: only a valid model leaves export."""
    model = converted.model
    onnx_edit.drop_zipmap(model)
    onnx_edit.flat_labels(model)
    onnx_edit.tree_targets(model)
    onnx_edit.one_default_domain(model)
    onnx_edit.record(model, converted.columns, converted.classes, made_by)
    if outputs:
        onnx_edit.rename_outputs(model, outputs)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the exported {made_by or 'model'} is not a valid ONNX model: {e}") from e
    return model.SerializeToString()


def library_of(model: Any) -> str:
    """The library a model's class (or a base class: a torch.nn.Module subclass of the user's) comes from."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        if root in _CONVERTERS:
            return root
    known = ", ".join(sorted(_CONVERTERS))
    raise ExportError(f"export takes fitted {known} models, Spark MLlib PipelineModels or ONNX; got {type(model).__name__}")


def column_names(fitted: Sequence[str] | None, sample: Any, columns: Sequence[str] | None, model: str, width: int | None = None) -> list[str]:
    """The DATA columns of a model's one [N,k] input, in the order it was fitted (see the module docstring),
    exactly `width` of them where the model knows how many it was fitted on."""
    names = _distinct(_column_names(fitted, sample, columns, model), model)
    if width is not None and len(names) != width:
        raise ExportError(f"{model} was fitted on {width} columns but {len(names)} are named ({names}): name all {width}, in the order it was fitted")
    return names


def _distinct(names: list[str], model: str) -> list[str]:
    """`names` where none repeats: else each repeat would read one DATA column (names that differ in case only are
    refused by the engines that cannot hold both, as DuckDB's tables cannot)."""
    repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if repeated is not None:
        raise ExportError(f"{model}: columns name DATA column {repeated!r} twice: name each input column once, in the order it was fitted")
    return names


def _column_names(fitted: Sequence[str] | None, sample: Any, columns: Sequence[str] | None, model: str) -> list[str]:
    sample_names = [str(c) for c in sample.columns] if sample is not None else None
    if fitted is not None:
        fitted = [str(c) for c in fitted]
        if columns is not None and list(columns) != fitted:
            raise ExportError(f"columns={list(columns)} contradicts the columns {model} was fitted on, {fitted}: leave columns out")
        if sample_names is None:
            return fitted
        by_key = {_key(n): n for n in sample_names}
        if sorted(by_key) != sorted(_key(n) for n in fitted):
            raise ExportError(
                f"the sample's columns {sample_names} are not the columns {model} was fitted on, {fitted}: pass a sample of exactly those"
            )
        return [by_key[_key(n)] for n in fitted]  # the sample's spelling: LightGBM keeps 'mean radius' as 'mean_radius'
    if columns is not None:
        if sample_names is not None and list(columns) != sample_names:
            raise ExportError(f"columns={list(columns)} and the sample's columns {sample_names} disagree: pass one of them")
        return [str(c) for c in columns]
    if sample_names is None:
        raise ExportError(f"{model} does not record the names of the columns it was fitted on: pass sample=<a DataFrame of them> or columns=[...]")
    return sample_names


def listed(columns: Columns) -> Sequence[str] | None:
    """`columns` as one input's list (a library model's {input: names} form is refused where it is read)."""
    if isinstance(columns, Mapping):
        raise ExportError("this model has one input: give columns as a list of DATA column names")
    return columns


def _key(name: str) -> str:
    """A column name as libraries that sanitise names keep it (LightGBM writes spaces and punctuation as '_')."""
    return re.sub(r"[^\w]", "_", name)


def _as_frame(sample: Any) -> Any:
    """A pandas DataFrame of the sample, or None; a numpy array has no column names to bind by."""
    if sample is None:
        return None
    if isinstance(sample, (pa.Table, pa.RecordBatch)):
        return sample.to_pandas()
    if not hasattr(sample, "columns"):
        raise ExportError(f"export needs a sample with column names (a pandas DataFrame or pyarrow Table), not a {type(sample).__name__}, so PREDICT can bind DATA columns by name")
    return sample


def _foreign(model: Any, columns: Columns) -> Converted:
    """ONNX made elsewhere, with `columns` recorded for its [N,k] inputs."""
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    else:
        source = resolve(model if isinstance(model, (bytes, bytearray)) else os.fspath(model), "argument")
        proto = load_model(source.data, source.label, source.base_dir)
    inputs = {i.name: _width(i) for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}}
    recorded = json.loads(next((p.value for p in proto.metadata_props if p.key == INPUTS_KEY), "{}"))
    if columns is None:
        mapping: dict[str, list[str]] = {}
    elif isinstance(columns, Mapping):
        mapping = {name: [str(c) for c in names] for name, names in columns.items()}
    elif len(inputs) == 1:
        mapping = {next(iter(inputs)): [str(c) for c in columns]}
    else:
        raise ExportError(f"the model has {len(inputs)} inputs ({', '.join(inputs)}): give columns as {{input: [names]}}, one list per input")
    for name, names in mapping.items():
        _distinct(names, f"the ONNX model's input '{name}'")
        if name not in inputs:
            raise ExportError(f"columns names input '{name}', which the model does not have; its inputs are {', '.join(inputs)}")
        if inputs[name] not in (None, len(names)):
            raise ExportError(f"input '{name}' takes {inputs[name]} values per row but columns names {len(names)}: {names}")
    return Converted(proto, {**recorded, **mapping}, None)


def _width(value: onnx.ValueInfoProto) -> int | None:
    dims = value.type.tensor_type.shape.dim
    return dims[1].dim_value or None if len(dims) == 2 else 1


def float_sample(frame: Any, names: Sequence[str], dtype: type = np.float32) -> np.ndarray:
    """The sample's columns in model order as one matrix: what torch traces with."""
    return np.ascontiguousarray(frame[list(names)].to_numpy(dtype))
