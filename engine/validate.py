"""Check that bytes are a self-contained, well-formed ONNX model before any runtime sees them.

Only ONNX reaches the scoring path: pickles are refused by name, never loaded; external data is
allowed only next to a model file and inside its folder; operators must come from ai.onnx or
ai.onnx.ml, the domains onnxruntime implements for scikit-learn models.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from predictsql.engine.errors import ModelError, UnsafeModelError
from predictsql.engine.onnx_edit import one_default_domain

DEFAULT_MAX_MODEL_BYTES = 1 << 30
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_PICKLE_PREFIXES = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def load_model(data: bytes, label: str, base_dir: Path | None = None, max_bytes: int = DEFAULT_MAX_MODEL_BYTES) -> onnx.ModelProto:
    """Parse and check ONNX bytes; inline external data from base_dir (file models only)."""
    if len(data) > max_bytes:
        raise ModelError(f"model {label} is {len(data):,} bytes, over the {max_bytes:,}-byte cap; raise max_model_bytes in predictsql.connect(...) if it is trusted")
    if data.startswith(_PICKLE_PREFIXES):
        raise ModelError(f"model {label} is a Python pickle; predictsql never unpickles models: export it to ONNX with predictsql.export(estimator, sample)")
    model = _parse(data, label)
    if not model.graph.node or not model.graph.output or not model.opset_import:
        raise ModelError(f"model {label} is not an ONNX model or is truncated ({len(data):,} bytes): it has no graph, outputs or opset")
    _check_domains(model, label)
    if _has_external_data(model):
        _load_external_data(model, label, base_dir)
    one_default_domain(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"model {label} is not a valid ONNX model: {str(e).splitlines()[0]}") from e
    return model


def self_contained(data: bytes, label: str, base_dir: Path) -> bytes:
    """Model bytes with any external data (from inside base_dir) inlined, so a store's folder need not outlive them."""
    model = _parse(data, label)
    if not _has_external_data(model):
        return data
    _load_external_data(model, label, base_dir)
    return model.SerializeToString()


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    try:
        return onnx.ModelProto.FromString(data)
    except DecodeError as e:
        raise ModelError(f"model {label} is not an ONNX model or is truncated ({len(data):,} bytes): {e}") from e


def _check_domains(model: onnx.ModelProto, label: str) -> None:
    domains = {op.domain for op in model.opset_import} | {n.domain for n in model.graph.node}
    for function in model.functions:
        domains |= {n.domain for n in function.node}
    banned = sorted(domains - ALLOWED_DOMAINS)
    if banned:
        raise UnsafeModelError(f"model {label} uses operators from {', '.join(banned)}; only ai.onnx and ai.onnx.ml are allowed")


def _has_external_data(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _load_external_data(model: onnx.ModelProto, label: str, base_dir: Path | None) -> None:
    """Read external tensors into the model, refusing blobs and any path outside the model's folder."""
    if base_dir is None:
        raise UnsafeModelError(
            f"model {label} references external data files, which a BLOB or bytes cannot carry: "
            "save it self-contained with onnx.save_model(model, path, save_as_external_data=False)"
        )
    root = base_dir.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(root):
            raise UnsafeModelError(f"model {label}: tensor '{tensor.name}' reads external data '{location}' outside the model's folder {root}")
        if not target.is_file():
            raise ModelError(f"model {label}: tensor '{tensor.name}' needs external data file '{location}', which is missing from {root}")
    onnx.external_data_helper.load_external_data_for_model(model, str(root))
