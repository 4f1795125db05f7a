"""scikit-learn → ONNX through skl2onnx, with the metadata PREDICT binds by.

- `zipmap=False`: class probabilities come out as one [N,C] float tensor.
- A ColumnTransformer pipeline gets one [N,1] input per DATA column (strings stay strings);
  any other estimator gets one [N,k] input whose column order is recorded in metadata.
- `outputs` renames skl2onnx outputs (label, probabilities, variable); the pseudo-output
  `score` adds a [N] float output: P(positive class) for a binary classifier, the prediction
  for a regressor.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import onnx
import pyarrow as pa

from predictsql.engine.errors import ExportError
from predictsql.engine.signature import CLASSES_KEY, INPUTS_KEY

MATRIX_INPUT = "X"
SCORE = "score"


def export(estimator: Any, sample: Any, outputs: Mapping[str, str] | None = None) -> bytes:
    """A fitted estimator or pipeline as ONNX bytes; `sample` (a DataFrame or Arrow table) names the columns."""
    from skl2onnx import to_onnx

    frame = _as_frame(sample)
    columnwise = _has_column_transformer(estimator)
    initial_types = _column_types(frame) if columnwise else [(MATRIX_INPUT, _float_type(len(frame.columns)))]
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    with _hist_gradient_boosting_fixup():
        model = to_onnx(estimator, initial_types=initial_types, options=options)
    meta = {INPUTS_KEY: json.dumps(_input_columns(model, frame, columnwise))}
    if hasattr(final, "classes_"):
        meta[CLASSES_KEY] = json.dumps([str(c) for c in final.classes_])
    onnx.helper.set_model_props(model, {**meta, "predictsql.estimator": type(estimator).__name__})
    _rename_outputs(model, dict(outputs or {}), hasattr(final, "classes_"))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _as_frame(sample: Any) -> Any:
    if isinstance(sample, (pa.Table, pa.RecordBatch)):
        return sample.to_pandas()
    if not hasattr(sample, "columns"):
        raise ExportError("export needs a sample with column names (a pandas DataFrame or pyarrow Table), so PREDICT can bind DATA columns by name")
    return sample


def _input_columns(model: onnx.ModelProto, frame: Any, columnwise: bool) -> dict[str, list[str]]:
    """DATA columns per ONNX input: all columns for the [N,k] input; for per-column inputs, those
    skl2onnx renamed (it sanitises names such as 'od280/od315' → 'od280_od315')."""
    columns = [str(c) for c in frame.columns]
    if not columnwise:
        return {MATRIX_INPUT: columns}
    inputs = [i.name for i in model.graph.input]
    if len(inputs) != len(columns):
        raise ExportError(f"skl2onnx made {len(inputs)} inputs for {len(columns)} sample columns; pass a sample with exactly the columns the pipeline reads")
    return {name: [column] for name, column in zip(inputs, columns, strict=True) if name != column}


def _has_column_transformer(estimator: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    first = estimator.steps[0][1] if hasattr(estimator, "steps") else estimator
    return isinstance(first, ColumnTransformer)


def _float_type(width: int) -> Any:
    from skl2onnx.common.data_types import FloatTensorType

    return FloatTensorType([None, width])


def _column_types(frame: Any) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import StringTensorType

    types = []
    for name, dtype in frame.dtypes.items():
        numeric = np.issubdtype(dtype, np.number) if isinstance(dtype, np.dtype) else False
        types.append((str(name), _float_type(1) if numeric else StringTensorType([None, 1])))
    return types


@contextlib.contextmanager
def _hist_gradient_boosting_fixup() -> Iterator[None]:
    """skl2onnx 1.20 writes numpy bools into an ints attribute, which onnx 1.23 refuses; coerce them."""
    from skl2onnx.operator_converters import random_forest

    original = random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting

    def fixed(attr_pairs: dict, *args: Any, **kwargs: Any) -> None:
        original(attr_pairs, *args, **kwargs)
        key = "nodes_missing_value_tracks_true"
        attr_pairs[key] = [int(v) for v in attr_pairs[key]]

    random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = fixed
    try:
        yield
    finally:
        random_forest.add_tree_to_attribute_pairs_hist_gradient_boosting = original


def _rename_outputs(model: onnx.ModelProto, names: dict[str, str], classifier: bool) -> None:
    graph = model.graph
    existing = [o.name for o in graph.output]
    unknown = set(names) - set(existing) - {SCORE}
    if unknown:
        raise ExportError(f"outputs names {sorted(unknown)}, which the model does not have; its outputs are {existing} and '{SCORE}'")
    if SCORE in names:
        _add_score(model, names.pop(SCORE), classifier)
    for old, new in names.items():
        for node in graph.node:
            node.output[:] = [new if n == old else n for n in node.output]
            node.input[:] = [new if n == old else n for n in node.input]
        next(o for o in graph.output if o.name == old).name = new


def _add_score(model: onnx.ModelProto, name: str, classifier: bool) -> None:
    """A [N] float output: column 1 of a binary classifier's probabilities, or a regressor's prediction."""
    graph = model.graph
    source = "probabilities" if classifier else "variable"
    spec = next((o for o in graph.output if o.name == source), None)
    dims = spec.type.tensor_type.shape.dim if spec is not None else []
    if spec is None or (classifier and (len(dims) != 2 or dims[1].dim_value != 2)):
        raise ExportError(f"'{SCORE}' is defined for binary classifiers and single-target regressors; this model's outputs are {[o.name for o in graph.output]}")
    index = "predictsql_score_column"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(1 if classifier else 0, dtype=np.int64), index))
    graph.node.append(onnx.helper.make_node("Gather", [source, index], [name], axis=1, name="predictsql_score"))
    graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None]))
