"""Where model bytes come from: raw bytes (a BLOB, a parameter, a 0x literal), a file path, or a URI.

A source yields the bytes, a label for messages, and for files the folder that external data
must stay inside. URIs name registries and are never paths:

    models:/name/3  models:/name@alias  models:/name  (latest)   an MLflow registry
    runs:/<run id>/<path>                                         an MLflow run's artefact
    catalog:/name/3 catalog:/name@alias catalog:/name (latest)    predictsql's in-database catalog

A Resolver serves one statement and pins each URI to the version it first resolved to, so one
statement scores one version even if an alias moves meanwhile; the next statement looks again.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from predictsql.engine.errors import ModelError, ModelSourceError

URI_SCHEMES = ("models", "runs", "catalog")
_URI = re.compile(r"^(models|runs|catalog):/")
_REF = re.compile(r"^(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[^/@]+))?$")


@dataclass(frozen=True)
class ModelSource:
    """Model bytes plus what we know of their origin."""

    data: bytes
    label: str
    base_dir: Path | None = None

    @functools.cached_property
    def sha256(self) -> str:
        """Hashed once per source (a model may be 1 GiB)."""
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class RegistryRef:
    """`<scheme>:/name`, `…/name/<version>` or `…/name@<alias>`; neither version nor alias means latest."""

    scheme: str
    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        suffix = f"/{self.version}" if self.version is not None else f"@{self.alias}" if self.alias else ""
        return f"{self.scheme}:/{self.name}{suffix}"

    def pinned(self, version: int) -> str:
        """How messages name what this reference resolved to."""
        return f"'{self}'" + ("" if self.version is not None else f" (version {version})")


Lookup = Callable[[str], ModelSource]  # a URI → its model
Resolve = Callable[[object, str], ModelSource]  # a MODEL value and its label → its model


def uri_scheme(value: object) -> str | None:
    """'models', 'runs' or 'catalog' when `value` is such a URI, else None (a path or bytes)."""
    match = _URI.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def parse_ref(uri: str) -> RegistryRef:
    """Split a models:/ or catalog:/ URI into name and version or alias."""
    scheme = uri_scheme(uri)
    match = _REF.match(uri[len(f"{scheme}:/") :]) if scheme in ("models", "catalog") else None
    if scheme is None or match is None:
        raise ModelSourceError(f"'{uri}' is not a model reference: write {scheme or 'catalog'}:/name, {scheme or 'catalog'}:/name/<version> or {scheme or 'catalog'}:/name@<alias>")
    version = match.group("version")
    return RegistryRef(scheme, match.group("name"), int(version) if version and version != "latest" else None, match.group("alias"))


def resolve(value: object, label: str, lookups: Mapping[str, Lookup] | None = None) -> ModelSource:
    """Turn a MODEL value (bytes, a path, or a URI that `lookups` knows) into a ModelSource."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ModelSource(bytes(value), label)
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        proto = ": give its bytes, model.SerializeToString()" if hasattr(value, "SerializeToString") else ""  # an onnx.ModelProto
        raise ModelSourceError(f"MODEL {label} is a {type(value).__name__}; expected ONNX bytes (a BLOB), a file path or a models:/ or catalog:/ URI{proto}")
    scheme = uri_scheme(value)
    if scheme is not None:
        lookup = (lookups or {}).get(scheme)
        if lookup is None:
            raise ModelSourceError(f"MODEL {label}: {scheme}:/ models cannot be read here; {_ELSEWHERE.get(scheme, 'no MLflow registry is configured')}")
        return lookup(value)
    path = Path(value).expanduser()
    if is_spark_pipeline(path):
        raise ModelError(
            f"model '{value}' (MODEL {label}) is a saved Spark MLlib PipelineModel; PREDICT scores ONNX: convert it once with "
            "predictsql.export(PipelineModel.load(path), sample=<a Spark DataFrame of its input columns>)"
        )
    if not path.is_file():
        raise ModelError(f"model file '{value}' not found (from MODEL {label}; relative paths start at {Path.cwd()})")
    return ModelSource(path.read_bytes(), f"'{path.name}'" if label == f"'{value}'" else label, path.parent)


def is_spark_pipeline(path: Path) -> bool:
    """Whether a folder holds a saved Spark ML pipeline (metadata/ and stages/, as PipelineModel.save writes them)."""
    return (path / "metadata").is_dir() and (path / "stages").is_dir()


_ELSEWHERE = {"catalog": "the catalog lives in a predictsql DuckDB file (predictsql.connect(path).models); here use models:/ (MLflow), a path or bytes"}


class Resolver:
    """Resolves the MODEL values of one statement, pinning each URI to one version."""

    def __init__(self, lookups: Mapping[str, Lookup]) -> None:
        self.lookups = lookups
        self._pinned: dict[str, ModelSource] = {}

    def __call__(self, value: object, label: str) -> ModelSource:
        if not isinstance(value, str) or uri_scheme(value) is None:
            return resolve(value, label)
        if value not in self._pinned:
            self._pinned[value] = resolve(value, label, self.lookups)
        return self._pinned[value]
