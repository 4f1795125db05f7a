"""What a model takes and gives: input/output names, element types and shapes, plus our metadata.

Metadata written by predictsql.export (ONNX metadata_props):
  predictsql.inputs   JSON {input name: [DATA column names]} for [N,k] inputs
  predictsql.classes  JSON [class labels] for classifiers' [N,C] outputs
Without `classes`, labels come from the ONNX-ML classifier node attributes, else 0..C-1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import onnx
import onnxruntime as ort

from predictsql.engine.types import onnx_elem_type

INPUTS_KEY = "predictsql.inputs"
CLASSES_KEY = "predictsql.classes"
_CLASS_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as onnxruntime reports it."""

    name: str
    elem_type: str  # 'float', 'int64', 'string', … or 'zipmap' for seq(map(...)) outputs
    shape: tuple[int | None, ...]

    @property
    def width(self) -> int | None:
        """Values per row: 1 for [N] and [N,1], k for [N,k], None when unknown."""
        if len(self.shape) <= 1:
            return 1
        return self.shape[1] if len(self.shape) == 2 else None

    @property
    def dims(self) -> str:
        """The shape as messages print it: [N,30]."""
        return "[" + ",".join("N" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_columns: dict[str, tuple[str, ...]]
    classes: tuple[str, ...] | None


def read_signature(session: ort.InferenceSession, model: onnx.ModelProto) -> Signature:
    meta = {p.key: p.value for p in model.metadata_props}
    input_columns = {k: tuple(v) for k, v in json.loads(meta.get(INPUTS_KEY, "{}")).items()}
    classes = json.loads(meta[CLASSES_KEY]) if CLASSES_KEY in meta else _graph_classes(model)
    return Signature(
        inputs=tuple(_spec(a) for a in session.get_inputs()),
        outputs=tuple(_spec(a) for a in session.get_outputs()),
        input_columns=input_columns,
        classes=tuple(str(c) for c in classes) if classes is not None else None,
    )


def _spec(arg: ort.NodeArg) -> TensorSpec:
    elem = "zipmap" if arg.type.startswith("seq(map(") else onnx_elem_type(arg.type)
    shape = tuple(d if isinstance(d, int) else None for d in (arg.shape or []))
    return TensorSpec(arg.name, elem, shape)


def _graph_classes(model: onnx.ModelProto) -> list | None:
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name in _CLASS_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attr)
                return [v.decode() if isinstance(v, bytes) else v for v in values]
    return None
