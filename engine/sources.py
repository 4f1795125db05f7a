"""Where model bytes come from: raw bytes (a BLOB, a parameter, a 0x literal) or a file path.

A source yields the bytes, a label for messages, and for files the folder that external data
must stay inside.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from predictsql.engine.errors import ModelError, ModelSourceError

URI_SCHEMES = ("models:/", "runs:/")


@dataclass(frozen=True)
class ModelSource:
    """Model bytes plus what we know of their origin."""

    data: bytes
    label: str
    base_dir: Path | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def resolve(value: object, label: str) -> ModelSource:
    """Turn a MODEL value (bytes or a path string) into a ModelSource."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ModelSource(bytes(value), label)
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise ModelSourceError(f"MODEL {label} is a {type(value).__name__}; expected ONNX bytes (a BLOB), a file path or a models:/ URI")
    if value.startswith(URI_SCHEMES):
        raise ModelSourceError(f"MODEL {label} is the MLflow URI '{value}', which needs MLflow registry support; load the ONNX file or bytes instead")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ModelError(f"model file '{value}' not found (from MODEL {label}; relative paths start at {Path.cwd()})")
    return ModelSource(path.read_bytes(), f"'{path.name}'" if label == f"'{value}'" else label, path.parent)
