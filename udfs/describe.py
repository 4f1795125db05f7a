"""DESCRIBE MODEL: what a model takes and gives in SQL terms, and a WITH clause to paste.

One row per input and output (name, ONNX type, shape, matching SQL type, the DATA columns an
input reads or the per-class columns an output offers), a `model` row first and a `with` row last.
"""

from __future__ import annotations

import pyarrow as pa

from predictsql.engine.binding import OutputColumn, default_outputs
from predictsql.engine.sessions import Model
from predictsql.engine.signature import TensorSpec
from predictsql.engine.sources import ModelSource
from predictsql.engine.types import ONNX_TO_ARROW, sql_name
from predictsql.sql.dialect import with_clause

SCHEMA = pa.schema([(name, pa.string()) for name in ("kind", "name", "onnx_type", "shape", "sql_type", "detail")])


def signature_rows(model: Model) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Inputs and outputs as {name, onnx_type, shape, sql_type} rows (what the catalog stores)."""
    signature = model.signature
    return [_tensor(spec, per_row=False) for spec in signature.inputs], [_tensor(spec, per_row=True) for spec in signature.outputs]


def describe(model: Model, source: ModelSource) -> pa.Table:
    """The DESCRIBE MODEL result for a loaded model and the source it came from."""
    signature = model.signature
    rows = [{"kind": "model", "name": source.label, "detail": f"{len(source.data):,} bytes, sha256 {source.sha256}"}]
    for spec in signature.inputs:
        rows.append({"kind": "input", **_tensor(spec, per_row=False), "detail": _input_detail(spec, signature.input_columns.get(spec.name))})
    defaults = default_outputs(model)
    for index, spec in enumerate(signature.outputs):
        picks = [o for o in defaults if o.source == index and o.pick is not None]
        detail = f"or one column per class: {', '.join(o.name for o in picks)}" if picks else ""
        rows.append({"kind": "output", **_tensor(spec, per_row=True), "detail": detail})
    rows.append({"kind": "with", "detail": with_clause(_pasteable(model, defaults))})
    return pa.Table.from_pylist(rows, SCHEMA)


def _pasteable(model: Model, defaults: list[OutputColumn]) -> list[tuple[str, str]]:
    """WITH's columns: every default output, but an output whose per-class names differ only in case (classes 'X' and
    'x'), which SQL reads as one name, as its whole list (a ZipMap, which has no list form, by its first such class)."""
    lowered = [o.name.lower() for o in defaults]
    clashing = {o.source for o in defaults if o.pick is not None and lowered.count(o.name.lower()) > 1}
    columns: list[tuple[str, str]] = []
    for o in defaults:
        spec = model.signature.outputs[o.source]
        if o.source not in clashing or (spec.elem_type == "zipmap" and all(n.lower() != o.name.lower() for n, _ in columns)):
            columns.append((o.name, sql_name(o.arrow_type)))
        elif spec.elem_type == "zipmap":
            continue
        elif (spec.name, sql_name(o.arrow_type) + "[]") not in columns:
            columns.append((spec.name, sql_name(o.arrow_type) + "[]"))
    return columns


def _input_detail(spec: TensorSpec, columns: tuple[str, ...] | None) -> str:
    """The DATA columns an input reads, or plainly that it cannot be bound by name."""
    if columns is not None:
        return f"DATA column{'s' if len(columns) > 1 else ''}: {', '.join(columns)}"
    if spec.width == 1:
        return f"DATA column: {spec.name}"
    width = spec.width or "k"
    return f"no column names recorded, so it cannot be bound by name: feed a list column {spec.name} of {width} values, or record names with predictsql.export(model, columns=[...])"


def _tensor(spec: TensorSpec, per_row: bool) -> dict[str, str]:
    """An input's SQL type is that of each DATA column it reads; a multi-valued output's is a list."""
    arrow_type = ONNX_TO_ARROW.get(spec.elem_type, pa.float32() if spec.elem_type == "zipmap" else None)
    sql_type = "" if arrow_type is None else sql_name(arrow_type) + ("[]" if per_row and spec.width != 1 else "")
    return {"name": spec.name, "onnx_type": spec.elem_type, "shape": spec.dims, "sql_type": sql_type}
