"""Bind a model to DATA: Arrow schema + model signature (+ WITH columns) → a ScoringPlan.

Everything that can be wrong about a PREDICT without reading a row is found here: missing or
ambiguous input columns, lossy or unrelated types, unknown outputs, list-vs-scalar mismatches.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from predictsql.engine.errors import (
    AmbiguousColumnError,
    BindError,
    MissingColumnError,
    ModelError,
    TypeMismatchError,
    UnknownOutputError,
)
from predictsql.engine.sessions import Model
from predictsql.engine.signature import TensorSpec
from predictsql.engine.types import ONNX_TO_ARROW, SQL_TO_ARROW, Cast, input_cast, output_cast_allowed, sql_name

NULLS_ERROR = "ERROR"
NULLS_PROPAGATE = "PROPAGATE"


@dataclass(frozen=True)
class OutputRequest:
    """A WITH column: an output name (or <output>_<class>) and its SQL type ('FLOAT', 'FLOAT[]').

    Without a type the output keeps its own: a scalar, or a list for a multi-valued output.
    """

    name: str
    type_name: str | None = None


@dataclass(frozen=True)
class InputFeed:
    """One ONNX input fed from one or more DATA columns."""

    name: str
    columns: tuple[int, ...]
    arrow_type: pa.DataType
    casts: tuple[Cast, ...]
    rank: int
    whole: bool = False  # one DATA list column holds all of a [N,k] input's values


@dataclass(frozen=True)
class OutputColumn:
    """One result column cut from an ONNX output."""

    name: str  # the name the query uses (p.<name>)
    field: str  # the name in the scored relation; differs from name only on a clash with DATA
    source: int  # index into the session's outputs
    pick: int | str | None  # class index of an [N,C] tensor, or ZipMap key; None for the whole output
    as_list: bool
    arrow_type: pa.DataType


@dataclass(frozen=True)
class ScoringPlan:
    model: Model
    data_schema: pa.Schema
    inputs: tuple[InputFeed, ...]
    outputs: tuple[OutputColumn, ...]
    nulls: str

    @property
    def schema(self) -> pa.Schema:
        """DATA columns followed by the output columns."""
        return pa.schema(list(self.data_schema) + [pa.field(o.field, o.arrow_type) for o in self.outputs])

    def describe(self) -> list[str]:
        lines = []
        for feed in self.inputs:
            cols = ", ".join(f"{self.data_schema.field(i).name} {sql_name(self.data_schema.field(i).type)}" for i in feed.columns)
            lines.append(f"input {feed.name} {sql_name(feed.arrow_type)}[{len(feed.columns)}] <- {cols}")
        for out in self.outputs:
            source = self.model.signature.outputs[out.source].name
            pick = f"[{out.pick!r}]" if out.pick is not None else ""
            lines.append(f"output {out.name} {sql_name(out.arrow_type)} <- {source}{pick}")
        return lines


def check_nulls(nulls: str, display: str) -> None:
    """A NULLS option is ERROR or PROPAGATE, for every runtime."""
    if nulls not in (NULLS_ERROR, NULLS_PROPAGATE):
        raise BindError(f"NULLS = {nulls} is not an option for {display}; use NULLS = ERROR or NULLS = PROPAGATE")


def bind(schema: pa.Schema, model: Model, requested: Sequence[OutputRequest] | None = None, nulls: str = NULLS_ERROR) -> ScoringPlan:
    """Match model inputs to DATA columns and WITH columns to model outputs, or raise a BindError."""
    check_nulls(nulls, model.display)
    inputs = tuple(_bind_input(schema, model, spec) for spec in model.signature.inputs)
    outputs = _bind_outputs(model, requested) if requested else default_outputs(model)
    return ScoringPlan(model, schema, inputs, _unclash(outputs, schema.names), nulls)


def _bind_input(schema: pa.Schema, model: Model, spec: TensorSpec) -> InputFeed:
    target = ONNX_TO_ARROW.get(spec.elem_type)
    if target is None:
        raise ModelError(f"{model.display}: input '{spec.name}' has type {spec.elem_type}, which PREDICT cannot feed from SQL")
    listed = _list_column(schema, spec.name)
    if listed is not None and len(spec.shape) == 2:
        return _bind_list(schema.field(listed), listed, target, model, spec)
    names = model.signature.input_columns.get(spec.name)
    if names is None:
        if spec.width != 1:
            raise BindError(unnamed_input(model.display, spec))
        names = (spec.name,)
    elif spec.width is not None and spec.width != len(names):
        raise ModelError(f"{model.display}: input '{spec.name}' has {spec.width} columns but its metadata names {len(names)}")
    columns = tuple(_find_column(schema, name, model, spec.name) for name in names)
    casts = tuple(_input_cast(schema.field(i), target, model, spec.name) for i in columns)
    return InputFeed(spec.name, columns, target, casts, len(spec.shape) or 1)


def unnamed_input(display: str, spec: TensorSpec) -> str:
    """What to do about an [N,k] input with no recorded column names: feed it a list, or record the names."""
    width = spec.width or "k"
    names = ", ".join(f"c{i}" for i in range(spec.width)) if spec.width and spec.width <= 4 else "c0, c1, …"
    element = sql_name(ONNX_TO_ARROW.get(spec.elem_type, pa.float32()))
    return (
        f"{display} has input '{spec.name}' of shape {spec.dims} and no column names recorded, so PREDICT cannot bind it by name. "
        f"Either feed it one list column named {spec.name} of {width} values (DuckDB: [{names}]::{element}[{width}] AS {spec.name}; "
        f"Spark: array({names}) AS {spec.name}), or record the names once: predictsql.export(model, columns=[...{width} DATA column names]), "
        "or `predictsql models register --columns` on the command line"
    )


def _list_column(schema: pa.Schema, name: str) -> int | None:
    """The DATA column of a list type named like an input (exact, else the one case-insensitive match), if any."""
    matches = [i for i, n in enumerate(schema.names) if n.lower() == name.lower()]
    exact = [i for i in matches if schema.names[i] == name]
    found = exact or matches
    if len(found) != 1:
        return None
    kind = schema.field(found[0]).type
    return found[0] if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind) else None


def _bind_list(field: pa.Field, index: int, target: pa.DataType, model: Model, spec: TensorSpec) -> InputFeed:
    """A list column fed whole to an [N,k] input: its element type cast as a column would be, its size checked now if fixed."""
    size = field.type.list_size if pa.types.is_fixed_size_list(field.type) else None
    if size is not None and spec.width is not None and size != spec.width:
        raise TypeMismatchError(
            f"DATA column '{field.name}' holds {size} values per row but input '{spec.name}' of {model.display} takes {spec.width} ({spec.dims})"
        )
    cast = _input_cast(pa.field(field.name, field.type.value_type), target, model, spec.name)
    return InputFeed(spec.name, (index,), target, (cast,), 2, whole=True)


def _find_column(schema: pa.Schema, name: str, model: Model, input_name: str) -> int:
    """Exact name first, then a unique case-insensitive match."""
    if schema.get_field_index(name) >= 0 and schema.names.count(name) == 1:
        return schema.get_field_index(name)
    matches = [i for i, n in enumerate(schema.names) if n.lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    what = f"PREDICT input '{name}'" + (f" (part of model input '{input_name}')" if input_name != name else "")
    if matches:
        found = ", ".join(f"'{schema.names[i]}'" for i in matches)
        raise AmbiguousColumnError(f"{what} ({model.display}) matches DATA columns {found}: select exactly one of them in the DATA query")
    close = difflib.get_close_matches(name.lower(), [n.lower() for n in schema.names], n=1)
    hint = f"; did you mean '{next(n for n in schema.names if n.lower() == close[0])}'? Write it AS {name} in the DATA query" if close else ""
    raise MissingColumnError(f"{what} ({model.display}) has no DATA column of that name{hint}. DATA columns: {', '.join(schema.names)}")


def _input_cast(field: pa.Field, target: pa.DataType, model: Model, input_name: str) -> Cast:
    cast = input_cast(field.type, target)
    if cast is None:
        part = f" (part of model input '{input_name}')" if input_name != field.name else ""
        raise TypeMismatchError(
            f"PREDICT input '{field.name}'{part} ({model.display}) is {sql_name(field.type)} in DATA but the model expects "
            f"{target}: write CAST({field.name} AS {sql_name(target)}) in the DATA query"
        )
    return cast


def default_outputs(model: Model) -> list[OutputColumn]:
    """Without WITH: every output, [N,C] tensors and ZipMaps expanded to one column per class."""
    columns: list[OutputColumn] = []
    for index, spec in enumerate(model.signature.outputs):
        labels = _class_labels(model, spec)
        if labels is None:
            natural = _natural_type(model, spec)
            columns.append(OutputColumn(spec.name, spec.name, index, None, spec.width != 1, natural))
            continue
        element = pa.float32() if spec.elem_type == "zipmap" else _natural_type(model, spec)
        for pick, label in enumerate(labels):
            key = label if spec.elem_type == "zipmap" else pick
            columns.append(OutputColumn(f"{spec.name}_{label}", f"{spec.name}_{label}", index, key, False, element))
    return columns


def output_requests(outputs: object, door: str) -> list[OutputRequest] | None:
    """The `outputs` of a Python door (predict(), register()) as WITH columns: an output's name, a list of names or
    {name: SQL type}, each once; None or empty: all outputs."""
    if outputs is None:
        return None
    if isinstance(outputs, Mapping):
        pairs = list(outputs.items())
    elif isinstance(outputs, str) or (isinstance(outputs, Sequence) and not isinstance(outputs, (bytes, bytearray))):
        pairs = [(name, None) for name in ([outputs] if isinstance(outputs, str) else outputs)]
    else:
        raise BindError(f"{door} outputs={outputs!r:.60}: give an output's name, a list of names or {{name: SQL type}}")
    bad = next(((n, t) for n, t in pairs if not isinstance(n, str) or not n or not isinstance(t, (str, type(None)))), None)
    if bad is not None:
        raise BindError(f"{door} outputs has {bad[0]!r}" + (f": {bad[1]!r}" if bad[1] is not None else "") + ": names and SQL types are strings, e.g. {'Score': 'FLOAT'}")
    lowered = [name.lower() for name, _ in pairs]
    repeated = next((name for name, _ in pairs if lowered.count(name.lower()) > 1), None)
    if repeated is not None:
        raise BindError(f"{door} outputs names {repeated} twice: name each output once")
    return [OutputRequest(name, type_name) for name, type_name in pairs] or None


def _bind_outputs(model: Model, requested: Sequence[OutputRequest]) -> list[OutputColumn]:
    outputs = model.signature.outputs
    columns = []
    for req in requested:
        index = _find_output(outputs, req.name)
        if index is None:
            index, pick = _find_class_output(model, req.name)
        else:
            pick = None
        spec = outputs[index]
        natural = pa.float32() if spec.elem_type == "zipmap" else _natural_type(model, spec)
        if req.type_name is None:
            target = pa.list_(natural) if pick is None and spec.width != 1 else natural
        else:
            target = _with_type(req.name, req.type_name, model)
        as_list = pa.types.is_list(target)
        if pick is None and spec.elem_type == "zipmap":
            raise BindError(f"output '{spec.name}' of {model.display} is a ZipMap (one value per class): pick a class with {spec.name}_<class> FLOAT")
        if pick is None and not as_list and spec.width != 1:
            labels = _class_labels(model, spec) or ["0"]
            raise BindError(
                f"output '{spec.name}' of {model.display} has {spec.width or 'several'} values per row: declare it as "
                f"{req.name} {sql_name(natural)}[] or pick one class, e.g. {spec.name}_{labels[-1]} FLOAT"
            )
        if pick is not None and as_list:
            raise BindError(f"WITH column {req.name} picks one class of output '{spec.name}' ({model.display}), so its type cannot be a list")
        element = target.value_type if as_list else target
        if not output_cast_allowed(natural, element):
            raise TypeMismatchError(
                f"output '{req.name}' of {model.display} is {sql_name(natural)} and cannot be returned as {req.type_name} without losing its value: "
                f"declare it {sql_name(natural)} in WITH and write CAST(p.{req.name} AS {req.type_name}) in the query"
            )
        columns.append(OutputColumn(req.name, req.name, index, pick, as_list, target))
    return columns


def _find_output(outputs: Sequence[TensorSpec], name: str) -> int | None:
    exact = [i for i, o in enumerate(outputs) if o.name == name]
    folded = [i for i, o in enumerate(outputs) if o.name.lower() == name.lower()]
    found = exact or folded
    return found[0] if len(found) == 1 else None


def _find_class_output(model: Model, name: str) -> tuple[int, int | str]:
    """Resolve `<output>_<classlabel>` to (output index, class index or ZipMap key)."""
    found: dict[str, tuple[int, int | str]] = {}
    for index, spec in enumerate(model.signature.outputs):
        for pick, label in enumerate(_class_labels(model, spec) or []):
            found.setdefault(f"{spec.name}_{label}", (index, label if spec.elem_type == "zipmap" else pick))
    folded = [candidate for candidate in found if candidate.lower() == name.lower()]
    if name in found or len(folded) == 1:  # exact, then a unique case-insensitive match (classes 'X' and 'x')
        return found[name if name in found else folded[0]]
    if folded:
        raise BindError(f"WITH column '{name}' of {model.display} matches {' and '.join(folded)}, which differ only in case: write one of them exactly")
    available = [o.name for o in model.signature.outputs] + list(found)
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise UnknownOutputError(f"WITH column '{name}' names no output of {model.display}.{hint} Outputs: {', '.join(available)}")


def _class_labels(model: Model, spec: TensorSpec) -> list[str] | None:
    """Class labels of a multi-valued output, or None for a single-valued (or unknown-width) one."""
    classes = model.signature.classes
    if spec.elem_type == "zipmap":
        if classes is None:
            raise ModelError(f"{model.display}: ZipMap output '{spec.name}' has no class labels in the model")
        return list(classes)
    if spec.width is None or spec.width == 1:
        return None
    if classes is not None and len(classes) == spec.width:
        return list(classes)
    return [str(i) for i in range(spec.width)]


def _natural_type(model: Model, spec: TensorSpec) -> pa.DataType:
    arrow_type = ONNX_TO_ARROW.get(spec.elem_type)
    if arrow_type is None:
        raise ModelError(f"{model.display}: output '{spec.name}' has type {spec.elem_type}, which PREDICT cannot return to SQL")
    return arrow_type


def _with_type(name: str, type_name: str, model: Model) -> pa.DataType:
    base, is_list = (type_name[:-2], True) if type_name.endswith("[]") else (type_name, False)
    arrow_type = SQL_TO_ARROW.get(base.strip().upper())  # as SQL reads a type name: float is FLOAT
    if arrow_type is None:
        raise BindError(f"WITH column {name} ({model.display}) has type {type_name}; use FLOAT, DOUBLE, INT, BIGINT, VARCHAR, BOOLEAN or a list such as FLOAT[]")
    return pa.list_(arrow_type) if is_list else arrow_type


def _unclash(outputs: list[OutputColumn], data_names: Sequence[str]) -> tuple[OutputColumn, ...]:
    """Give an output whose name a DATA column already uses a distinct field name (label → label_1)."""
    taken = {n.lower() for n in data_names}
    result = []
    for out in outputs:
        field, n = out.field, 0
        while field.lower() in taken:
            n += 1
            field = f"{out.name}_{n}"
        taken.add(field.lower())
        result.append(OutputColumn(out.name, field, out.source, out.pick, out.as_list, out.arrow_type))
    return tuple(result)


def argument_schema(model: Model) -> pa.Schema:
    """A model function's positional arguments (`register` on either engine): each input's DATA columns, a [N,k] input
    expanded into the names its metadata records, in the model's input order, each of the input's type."""
    signature = model.signature
    fields = []
    for spec in signature.inputs:
        arrow_type = ONNX_TO_ARROW.get(spec.elem_type)
        if arrow_type is None:
            raise ModelError(f"{model.display}: input '{spec.name}' has type {spec.elem_type}, which SQL cannot pass")
        fields += [pa.field(column, arrow_type) for column in signature.input_columns.get(spec.name, [spec.name])]
    return pa.schema(fields)
