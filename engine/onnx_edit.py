"""Edits every exported model gets, whatever library made it: one probability tensor, our output names, a `score`
output, one default-domain import and the metadata PREDICT binds by."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from predictsql.engine.errors import ExportError
from predictsql.engine.signature import CLASSES_KEY, INPUTS_KEY

SCORE = "score"
PROBABILITIES = ("probabilities", "probability")  # skl2onnx, onnxmltools and CatBoost; onnxmltools' Spark converter
DECISION_SCORES = "scores"  # a classifier's decision_function where it has no probabilities (export_sklearn)
_DEFAULT_DOMAINS = ("", "ai.onnx")
_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)


def drop_zipmap(model: onnx.ModelProto) -> None:
    """Replace each ZipMap output (a list of {class: p} dicts per row) by the [N,C] tensor it was made from: what
    PREDICT reads per class, and far cheaper to build (CatBoost and onnxmltools write ZipMaps by default)."""
    graph = model.graph
    for node in [n for n in graph.node if n.op_type == "ZipMap"]:
        output = next((o for o in graph.output if o.name == node.output[0]), None)
        if output is None:
            continue
        tensor = node.input[0]
        graph.node.remove(node)
        for other in graph.node:
            other.output[:] = [node.output[0] if name == tensor else name for name in other.output]
            other.input[:] = [node.output[0] if name == tensor else name for name in other.input]
        output.CopyFrom(onnx.helper.make_tensor_value_info(output.name, onnx.TensorProto.FLOAT, [None, len(_labels(node))]))


def _labels(zipmap: onnx.NodeProto) -> list:
    return next(onnx.helper.get_attribute_value(a) for a in zipmap.attribute if a.name.startswith("classlabels"))


def rename_outputs(model: onnx.ModelProto, names: Mapping[str, str] | Sequence[str]) -> None:
    """Rename outputs {old: new} (the pseudo-output `score` adds one), or name all of them in order from a list."""
    graph = model.graph
    existing = [o.name for o in graph.output]
    if isinstance(names, str) or not isinstance(names, (Mapping, Sequence)):
        raise ExportError(f"outputs is {names!r}: give {{old: new}} names, or a list of one name per output ({existing})")
    if not isinstance(names, Mapping):
        if len(names) != len(existing):
            raise ExportError(f"outputs lists {len(names)} names but the model has {len(existing)} outputs ({existing}); give one name per output, in order")
        names = dict(zip(existing, names, strict=True))
    names = dict(names)
    unknown = [old for old in names if old not in existing and old != SCORE]
    if unknown:
        raise ExportError(f"outputs names {unknown}, which the model does not have; its outputs are {existing} and '{SCORE}'")
    not_names = [new for new in names.values() if not isinstance(new, str) or not new]
    if not_names:
        raise ExportError(f"outputs gives {not_names[0]!r} as an output's name: each name is a non-empty string")
    inputs = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    passed = next((old for old in names if old in inputs), None)
    if passed is not None:
        raise ExportError(f"output '{passed}' is the model's input of that name, passed through: it keeps its name")
    kept = ({n for node in graph.node for n in node.output} | inputs) - set(names)  # every other tensor keeps its name
    final = [names.get(name, name).lower() for name in existing] + ([names[SCORE].lower()] if SCORE in names else [])  # WITH reads them case-insensitively
    clash = next((new for new in names.values() if new in kept or final.count(new.lower()) > 1), None)
    if clash is not None:
        raise ExportError(f"outputs names '{clash}' for two tensors of the model (its outputs are {existing}; output names match case-insensitively): give each output a name of its own")
    if SCORE in names:
        _add_score(model, names.pop(SCORE))
    for node in graph.node:  # all at once, so that two outputs may swap names
        node.output[:] = [names.get(n, n) for n in node.output]
        node.input[:] = [names.get(n, n) for n in node.input]
    for output in graph.output:
        output.name = names.get(output.name, output.name)


def _add_score(model: onnx.ModelProto, name: str) -> None:
    """A [N] output: column 1 of a binary classifier's probabilities (or, without them, of its decision scores), or a
    single-valued regressor's prediction."""
    graph = model.graph
    floats = [o for o in graph.output if o.type.tensor_type.elem_type in _FLOATS]
    per_class = [o for name in (*PROBABILITIES, DECISION_SCORES) for o in floats if o.name == name and _width(o) != 1]  # an isolation forest's [N,1] scores are its value
    classifier = bool(per_class)
    source: onnx.ValueInfoProto | None
    if classifier:
        source = per_class[0]
        binary = _width(source) == 2
    else:
        source = floats[0] if len(floats) == 1 else None
        binary = source is not None and all(d.dim_value in (0, 1) for d in source.type.tensor_type.shape.dim[1:])
    if source is None or not binary:
        raise ExportError(f"'{SCORE}' is defined for binary classifiers and single-valued regressors; this model's outputs are {[o.name for o in graph.output]}")
    elem = source.type.tensor_type.elem_type
    _import_default_domain(model)
    if classifier:
        index = _constant(graph, "predictsql_score_column", np.array(1, dtype=np.int64))
        graph.node.append(onnx.helper.make_node("Gather", [source.name, index], [name], axis=1, name="predictsql_score"))
    else:
        shape = _constant(graph, "predictsql_score_shape", np.array([-1], dtype=np.int64))
        graph.node.append(onnx.helper.make_node("Reshape", [source.name, shape], [name], name="predictsql_score"))
    graph.output.append(onnx.helper.make_tensor_value_info(name, elem, [None]))


def _width(output: onnx.ValueInfoProto) -> int:
    """Values per row of an output (0 where not declared)."""
    dims = output.type.tensor_type.shape.dim
    return dims[1].dim_value if len(dims) == 2 else 1


def flat_labels(model: onnx.ModelProto) -> None:
    """A label output taken from a 1-D constant of classes by ArrayFeatureExtractor is [1,N] (skl2onnx's
    QuadraticDiscriminantAnalysis, which then failed to score: 1 label row for N rows): reshaped to [N]."""
    graph = model.graph
    classes = {i.name for i in graph.initializer if len(i.dims) == 1}
    outputs = {o.name: o for o in graph.output}
    for node in list(graph.node):
        if node.op_type != "ArrayFeatureExtractor" or node.input[0] not in classes or node.output[0] not in outputs:
            continue
        label = node.output[0]
        node.output[0] = f"{label}_predictsql_row"
        shape = _constant(graph, f"{label}_predictsql_shape", np.array([-1], dtype=np.int64))
        graph.node.append(onnx.helper.make_node("Reshape", [node.output[0], shape], [label], name=f"{label}_predictsql_flat"))
        del outputs[label].type.tensor_type.shape.dim[:]
        outputs[label].type.tensor_type.shape.dim.add()


def tree_targets(model: onnx.ModelProto) -> None:
    """A tree ensemble regressor's output declared with as many values per row as it has targets: skl2onnx declares
    [N,1] for a multi-output forest, which then failed to score (2 values per row where 1 was declared)."""
    outputs = {o.name: o for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "TreeEnsembleRegressor" and node.output[0] in outputs:
            targets = next((a.i for a in node.attribute if a.name == "n_targets"), 1)
            dims = outputs[node.output[0]].type.tensor_type.shape.dim
            if len(dims) == 2 and dims[1].dim_value != targets:
                dims[1].Clear()
                dims[1].dim_value = targets


def _import_default_domain(model: onnx.ModelProto) -> None:
    """Graphs of ai.onnx.ml nodes only (CatBoost's, IR version 3) import no standard operators: import opset 13 for
    Gather/Reshape, at an IR version (7) whose initializers need not be graph inputs."""
    if not any(i.domain in _DEFAULT_DOMAINS for i in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("", 13))
        model.ir_version = max(model.ir_version, 7)


def _constant(graph: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    graph.initializer.append(onnx.numpy_helper.from_array(value, name))
    return name


def one_default_domain(model: onnx.ModelProto) -> None:
    """Merge '' and 'ai.onnx' imports (onnxmltools' Spark converter writes both) into one, at the version onnxruntime
    runs the model with (the highest), so onnx.checker accepts what onnxruntime already runs."""
    imports = [i for i in model.opset_import if i.domain in _DEFAULT_DOMAINS]
    if len(imports) < 2:
        return
    version = max(i.version for i in imports)
    for entry in imports:
        model.opset_import.remove(entry)
    model.opset_import.append(onnx.helper.make_opsetid("", version))
    for node in model.graph.node:
        if node.domain == "ai.onnx":
            node.domain = ""


def record(model: onnx.ModelProto, columns: Mapping[str, Sequence[str]], classes: Sequence[object] | None, made_by: str | None) -> None:
    """Write the DATA column names per input and the class labels into the model's metadata, keeping what is there."""
    props = {p.key: p.value for p in model.metadata_props}
    props[INPUTS_KEY] = json.dumps({name: list(names) for name, names in columns.items()})
    if classes is not None:
        props[CLASSES_KEY] = json.dumps([class_label(c) for c in classes])
    if made_by is not None:
        props["predictsql.estimator"] = made_by
    onnx.helper.set_model_props(model, props)


def class_label(value: object) -> str:
    """A class label as output columns name it: a float label that is integral (0.0, 1.0 from pandas) reads as 0, 1."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)
