"""MLflow as a model store: models:/ and runs:/ URIs become ONNX bytes; log_model registers ONNX.

Only the ONNX flavour is read: the MLmodel file is YAML, the model file goes through the same
validation as any other, and no pickle or pyfunc is ever loaded. A registered version (and a
run's artefact) never changes, so its bytes are cached per process; an alias is looked up on
every resolution, which is once per statement.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa

from predictsql.engine.errors import ModelSourceError
from predictsql.engine.signature import Signature
from predictsql.engine.sources import Lookup, ModelSource, RegistryRef, parse_ref
from predictsql.engine.types import ONNX_TO_ARROW, numpy_dtype
from predictsql.engine.validate import self_contained

ONNX_FLAVOR = "onnx"
ARTIFACT_PATH = "model"
EXPERIMENT = "predictsql"
LIST_SCHEMA = pa.schema([("name", pa.string()), ("version", pa.int32()), ("aliases", pa.list_(pa.string())), ("source", pa.string()), ("created", pa.timestamp("ms", "UTC"))])
SPARK_FLAVOR = "spark"
HOW_TO_LOG = "log it with predictsql.log_model(estimator, name, sample=X) or mlflow.onnx.log_model(onnx_model, ...)"


def _mlflow() -> Any:
    """The mlflow module, imported on first use (it takes a second) without its import-time warnings."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mlflow.artifacts
            import mlflow.onnx
            import mlflow.pyfunc  # noqa: F401  (imported here so its import-time warnings stay silent)
    except ImportError as e:
        raise ModelSourceError(f"MLflow is not installed: pip install 'predictsql[mlflow]' ({e})") from e
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables...": not the caller's news
    return mlflow


class MlflowRegistry:
    """One MLflow tracking/registry configuration: a registry URI given by the caller (its runs too), else
    MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI)."""

    def __init__(self, registry_uri: str | None = None) -> None:
        self.registry_uri = registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or os.environ.get("MLFLOW_TRACKING_URI")
        # the caller's URI holds the runs as well: MLFLOW_TRACKING_URI there put a logged model's run in another store
        self.tracking_uri = registry_uri or os.environ.get("MLFLOW_TRACKING_URI") or self.registry_uri

    @property
    def lookups(self) -> dict[str, Lookup]:
        return {"models": self.model_version, "runs": self.run_artifact}

    def client(self, create: bool = False) -> Any:
        """An MlflowClient on this registry; see `check`."""
        self.check(create)
        ml = _mlflow()
        with _translate(f"opening MLflow registry {self.where}"):
            return ml.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def check(self, create: bool = False) -> None:
        """MLflow creates a missing local store on first contact, and ./mlflow.db when no registry is named: so every
        use needs a registry named explicitly, and a read (`create` False) one whose store exists."""
        for uri in {self.tracking_uri, self.registry_uri}:
            store = _local_store(uri)
            if uri is None:
                raise ModelSourceError("no MLflow registry is configured: pass registry_uri='sqlite:///path/mlflow.db' (the CLI's --registry) or set MLFLOW_TRACKING_URI")
            if store is not None and not create and not store.exists():
                raise ModelSourceError(f"MLflow registry {uri} does not exist (nothing at {store}): log a model to it first, or name the registry that holds the model")

    def model_version(self, uri: str) -> ModelSource:
        """`models:/name/3`, `models:/name@alias` or `models:/name` (latest) → that version's ONNX bytes."""
        ref = parse_ref(uri)
        version = self.version(ref)
        with _translate(f"MODEL '{ref}' (MLflow registry {self.where})"):
            location = self.client().get_model_version_download_uri(ref.name, str(version))
        return ModelSource(_download(self.tracking_uri, location, f"models:/{ref.name}/{version}"), ref.pinned(version))  # one cache entry per version, however named

    @contextlib.contextmanager
    def spark_model(self, uri: str) -> Iterator[tuple[Path, str]]:
        """A models:/ URI's Spark MLlib flavour: the folder of its saved PipelineModel (for the block's duration) and
        the label it resolved to. Only the MLmodel YAML is read here; Spark loads the folder."""
        ref = parse_ref(uri)
        version = self.version(ref)
        label = f"models:/{ref.name}/{version}"
        ml = _mlflow()
        with tempfile.TemporaryDirectory() as folder:
            with _translate(f"MODEL '{ref}' (MLflow registry {self.where})"):
                location = self.client().get_model_version_download_uri(ref.name, str(version))
                path = Path(ml.artifacts.download_artifacts(artifact_uri=location, dst_path=folder, tracking_uri=self.tracking_uri))
                flavors = ml.models.Model.load(str(path / "MLmodel")).flavors if (path / "MLmodel").is_file() else {}
            if SPARK_FLAVOR not in flavors:
                raise ModelSourceError(f"MLflow model '{label}' has no spark flavour ({', '.join(flavors) or 'no MLmodel file'}): RUNTIME = SPARKML scores models logged with mlflow.spark.log_model")
            yield path / flavors[SPARK_FLAVOR]["model_data"], ref.pinned(version)

    def run_artifact(self, uri: str) -> ModelSource:
        """`runs:/<run id>/<path>` → the ONNX bytes of the MLflow model logged there."""
        self.check()
        return ModelSource(_download(self.tracking_uri, uri, uri), f"'{uri}'")

    def version(self, ref: RegistryRef) -> int:
        """The version number a reference names now: the alias's target, or the latest version."""
        client = self.client()
        with _translate(f"MODEL '{ref}' (MLflow registry {self.where})"):
            if ref.alias is not None:
                return int(client.get_model_version_by_alias(ref.name, ref.alias).version)
            if ref.version is not None:
                return int(client.get_model_version(ref.name, str(ref.version)).version)
            found = client.search_model_versions(f"name = {_quoted(ref.name)}", order_by=["version_number DESC"], max_results=1)
        if not found:
            raise ModelSourceError(f"MLflow registry {self.where} has no registered model '{ref.name}'; {HOW_TO_LOG}")
        return int(found[0].version)

    def list(self) -> pa.Table:
        """Every registered version: name, version, aliases, the run it came from, and when."""
        client = self.client()
        with _translate(f"listing MLflow registry {self.where}"):
            versions = client.search_model_versions(order_by=["name ASC", "version_number ASC"])
            pointers = [(m.name, str(v), a) for m in client.search_registered_models() for a, v in (m.aliases or {}).items()]  # searches omit aliases
        rows = [
            {
                "name": v.name,
                "version": int(v.version),
                "aliases": sorted(a for name, version, a in pointers if (name, version) == (v.name, str(v.version))),
                "source": v.source,
                "created": datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc),
            }
            for v in versions
        ]
        return pa.Table.from_pylist(rows, LIST_SCHEMA)

    def remove(self, name: str, version: int | None = None) -> builtins.list[int]:  # `list` here is the method above
        """Delete one version, or the whole registered model; returns the versions deleted."""
        client = self.client()
        with _translate(f"removing '{name}' from MLflow registry {self.where}"):
            if version is not None:
                client.delete_model_version(name, str(version))
                return [version]
            versions = sorted(int(v.version) for v in client.search_model_versions(f"name = {_quoted(name)}"))
            client.delete_registered_model(name)
        return versions

    @property
    def where(self) -> str:
        return self.registry_uri or "(mlflow's default)"

    def log_model(self, onnx_bytes: bytes, signature: Signature, name: str, alias: str | None = None) -> str:
        """Log ONNX bytes as an MLflow model with the onnx flavour, register a version, set the alias; returns its URI."""
        import onnx

        if "@" in name or "/" in name or not name.strip():
            raise ModelSourceError(f"model name '{name}' cannot be read back as models:/{name} (an '@' starts an alias, a '/' a version): choose a name without them")
        ml = _mlflow()
        client = self.client(create=True)
        with _translate(f"logging model '{name}' to MLflow registry {self.where}"):
            with tempfile.TemporaryDirectory() as folder:
                local = Path(folder) / ARTIFACT_PATH
                ml.onnx.save_model(onnx.ModelProto.FromString(onnx_bytes), str(local), signature=_mlflow_signature(signature), save_as_external_data=False)
                run = client.create_run(self._experiment(client), tags={"predictsql.model": name})
                client.log_artifacts(run.info.run_id, str(local), ARTIFACT_PATH)
                client.set_terminated(run.info.run_id)
            if not client.search_registered_models(f"name = {_quoted(name)}"):
                client.create_registered_model(name)
            version = client.create_model_version(name, f"runs:/{run.info.run_id}/{ARTIFACT_PATH}", run_id=run.info.run_id).version
            if alias:
                client.set_registered_model_alias(name, alias, version)
        return f"models:/{name}/{version}"


    def _experiment(self, client: Any) -> str:
        """MLFLOW_EXPERIMENT_ID, else for a sqlite registry its own 'predictsql' experiment with artefacts in
        mlartifacts/ beside the database (MLflow's default experiment there writes to ./mlruns of whatever the
        current directory was when the database was made), else the default experiment."""
        if "MLFLOW_EXPERIMENT_ID" in os.environ:
            return os.environ["MLFLOW_EXPERIMENT_ID"]
        store = _local_store(self.tracking_uri)
        if store is None or not str(self.tracking_uri).startswith("sqlite:"):
            return "0"
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return str(found.experiment_id)
        return str(client.create_experiment(EXPERIMENT, artifact_location=(store.resolve().parent / "mlartifacts").as_uri()))


@functools.lru_cache(maxsize=8)
def _download(tracking_uri: str | None, uri: str, label: str) -> bytes:
    """The self-contained ONNX bytes of the MLflow model at an artefact location or runs:/ URI (immutable, hence cached)."""
    ml = _mlflow()
    with _translate(f"MODEL '{label}' (MLflow tracking {tracking_uri})"), tempfile.TemporaryDirectory() as folder:
        path = Path(ml.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder, tracking_uri=tracking_uri))
        if not (path / "MLmodel").is_file():
            raise ModelSourceError(f"MODEL '{label}' is not an MLflow model (no MLmodel file at {uri}); {HOW_TO_LOG}")
        flavors = ml.models.Model.load(str(path / "MLmodel")).flavors  # YAML only: nothing is unpickled
        if ONNX_FLAVOR not in flavors and SPARK_FLAVOR in flavors:
            raise ModelSourceError(
                f"MLflow model '{label}' is a Spark MLlib model (spark flavour): on Spark, PREDICT(..., RUNTIME = SPARKML) scores it "
                "with Spark; elsewhere convert it once with predictsql.export(pipeline_model, sample=<a Spark DataFrame>) and log that"
            )
        if ONNX_FLAVOR not in flavors:
            raise ModelSourceError(
                f"MLflow model '{label}' has the flavours {', '.join(flavors)} but no onnx flavour; predictsql scores only ONNX "
                f"and never loads pickles or pyfunc models: {HOW_TO_LOG}"
            )
        model_file = path / flavors[ONNX_FLAVOR]["data"]
        return self_contained(model_file.read_bytes(), f"'{label}'", model_file.parent)


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """Any MLflow failure (a missing model, version or alias; an unreadable store; a failed download) as a
    ModelSourceError saying what was being done, registry URI included."""
    try:
        yield
    except ModelSourceError:
        raise
    except _mlflow().exceptions.MlflowException as e:
        raise ModelSourceError(f"{what}: {e.message}") from e
    except Exception as e:  # mlflow's stores raise their backends' own errors (SQLAlchemy, OSError, requests)
        raise ModelSourceError(f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else e!r}") from e


def _local_store(uri: str | None) -> Path | None:
    """The local file or folder a tracking/registry URI stores into (None: a server, or no URI)."""
    if uri is None:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a bare path (or a Windows drive letter)
        return Path(uri)
    return None


def _quoted(name: str) -> str:
    """A name as a string literal in an MLflow search filter."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _mlflow_signature(signature: Signature) -> Any:
    """The ONNX graph's inputs and outputs as an MLflow tensor signature (-1 for the row dimension)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    def specs(tensors: tuple) -> Any:
        return Schema([TensorSpec(numpy_dtype(ONNX_TO_ARROW[t.elem_type]), tuple(-1 if d is None else d for d in t.shape), t.name) for t in tensors if t.elem_type in ONNX_TO_ARROW])

    return ModelSignature(inputs=specs(signature.inputs), outputs=specs(signature.outputs))
