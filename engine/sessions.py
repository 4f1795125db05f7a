"""Loaded models: one validated model and one InferenceSession per (sha256, options), shared by threads.

InferenceSession.run releases the GIL and is thread-safe, so a session is created once under a
lock and reused by every query, batch and worker thread in the process. A model whose tree ensemble
compiles (engine/forest.py) is scored by its ForestRunner, which runs the same way.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Protocol

import onnx
import onnxruntime as ort

from predictsql.engine import forest, trees
from predictsql.engine.errors import ModelError, PredictSQLError
from predictsql.engine.inline import NotInlinable, Program, compile_graph
from predictsql.engine.signature import Signature, read_signature
from predictsql.engine.sources import ModelSource
from predictsql.engine.validate import DEFAULT_MAX_MODEL_BYTES, load_model

CACHE_SIZE = 32


@dataclass(frozen=True)
class SessionOptions:
    """The knobs that make two sessions of one model differ."""

    # One thread per session: onnxruntime splits tree ensembles and GEMMs differently by batch size
    # when multi-threaded, changing the last bits; parallelism comes from scoring batches at once.
    intra_op_threads: int = 1
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES
    compiled_trees: bool = True  # score a tree ensemble by compiled code (engine/forest.py) where it compiles

    def __post_init__(self) -> None:
        whole_number("intra_op_threads", self.intra_op_threads, 0)  # 0: onnxruntime's default, a thread per core
        whole_number("max_model_bytes", self.max_model_bytes, 1)
        if not isinstance(self.compiled_trees, bool):
            raise PredictSQLError(f"compiled_trees={self.compiled_trees!r} must be True or False")


def whole_number(name: str, value: object, least: int) -> None:
    """Refuse a connection setting that is not a whole number of at least `least`, before a statement trips on it."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None and isinstance(value, float) and value.is_integer():
        number = int(value)  # 2e9 bytes
    if number is None or number < least:
        raise PredictSQLError(f"{name}={value!r} must be a whole number of at least {least}")


class Runner(Protocol):
    """What scores a model's feeds: an InferenceSession, or a ForestRunner."""

    def run(self, output_names: list[str], input_feed: dict) -> list: ...


@dataclass(frozen=True)
class Model:
    """A model ready to score: its runtime session, signature, SQL form if linear, and names for messages."""

    label: str
    sha256: str
    session: ort.InferenceSession
    signature: Signature
    inline: Program | None  # the INLINE plan's expressions; None when the graph has no SQL form
    inline_blocker: str  # why not, for EXPLAIN and PLAN = INLINE
    tree_nodes: int  # nodes of its tree ensembles: what a WHERE may prune (engine/trees.py)
    runner: Runner  # what scores it: the session, or its compiled trees
    runtime: str  # which, and why, for EXPLAIN

    @property
    def display(self) -> str:
        return f"model {self.label}, sha {self.sha256[:8]}"

    def with_label(self, label: str) -> Model:
        return replace(self, label=label)


_cache: OrderedDict[tuple[str, SessionOptions], Model] = OrderedDict()
_lock = threading.Lock()


def load(source: ModelSource, options: SessionOptions = SessionOptions()) -> Model:
    """The cached Model for these bytes, validating and creating the session on first use."""
    key = (source.sha256, options)
    with _lock:
        model = _cache.get(key)
        if model is None:
            model = _create(source, options)
            _cache[key] = model
            if len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        _cache.move_to_end(key)
    return model.with_label(source.label)


def _create(source: ModelSource, options: SessionOptions) -> Model:
    proto = load_model(source.data, source.label, source.base_dir, options.max_model_bytes)
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors: its warnings (an unused initializer removed) land on a SQL user's terminal, nothing to act on
    try:
        session = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
        raise ModelError(f"model {source.label} cannot be loaded by onnxruntime: {e}") from e
    try:
        inline, blocker = compile_graph(proto), ""
    except NotInlinable as e:
        inline, blocker = None, str(e)
    except Exception as e:  # INLINE is an optimisation: a graph it misreads must still score under STREAM
        inline, blocker = None, f"the INLINE compiler cannot read this graph ({e!r})"
    nodes = trees.node_count(proto)
    runner, runtime = _runner(proto, so, options, session) if nodes else (session, "onnxruntime")
    return Model(source.label, source.sha256, session, read_signature(session, proto), inline, blocker, nodes, runner, runtime)


def _runner(proto: onnx.ModelProto, so: ort.SessionOptions, options: SessionOptions, session: ort.InferenceSession) -> tuple[Runner, str]:
    """A tree model's compiled plan where its trees compile, else its session; and the runtime EXPLAIN names."""
    if not options.compiled_trees:
        return session, "onnxruntime (compiled trees off)"
    runner, why = forest.compile_forest(proto, so)
    return (runner, f"compiled trees ({runner.forest.kind}), the rest of the graph in onnxruntime") if runner else (session, f"onnxruntime (the trees do not compile: {why})")
