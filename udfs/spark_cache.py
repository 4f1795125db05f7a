"""Executor-side scorer cache for Spark: load once per Python worker, score many batches.

Contract:
- This module is imported once per Python worker process; functions shipped to executors are
  module-level functions bound with functools.partial, so only small arguments are pickled.
- Model bytes travel as a Spark broadcast variable, fetched by an executor once; a worker
  reads `broadcast.value` only on a cache miss.
- The cache maps (sha256, input schema, requested outputs, NULL rule) to a bound Scorer whose
  InferenceSession comes from predictsql.engine.sessions (one per sha256 per process).
- `stats` counts loads and hits so tests can prove reuse across tasks.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Sequence

import pyarrow as pa

from predictsql.engine import sessions
from predictsql.engine.binding import OutputRequest, bind
from predictsql.engine.scoring import Scorer
from predictsql.engine.sources import ModelSource

stats = {"loads": 0, "hits": 0}
_scorers: dict[tuple, Scorer] = {}
_lock = threading.Lock()


def scorer(model: Any, sha256: str, label: str, schema: pa.Schema, requested: Sequence[OutputRequest] | None, nulls: str) -> Scorer:
    """The cached Scorer for this model and input schema; `model` is a broadcast of the ONNX bytes."""
    key = (sha256, schema.serialize().to_pybytes(), tuple(requested or ()), nulls)
    with _lock:
        cached = _scorers.get(key)
        if cached is not None:
            stats["hits"] += 1
            return cached
        loaded = sessions.load(ModelSource(model.value, label))
        cached = _scorers[key] = Scorer(bind(schema, loaded, requested, nulls))
        stats["loads"] += 1
        return cached


def score_partition(model: Any, sha256: str, label: str, requested: Sequence[OutputRequest] | None, nulls: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: each batch of a partition gets the model's output columns appended."""
    offset, current = 0, None
    for index, batch in enumerate(batches):
        if current is None or not batch.schema.equals(current.plan.data_schema):  # once per partition
            current = scorer(model, sha256, label, batch.schema, requested, nulls)
        yield current.score(batch, index, offset)
        offset += batch.num_rows


def score_columns(model: Any, sha256: str, label: str, names: Sequence[str], requested: Sequence[OutputRequest] | None, *columns: pa.Array) -> pa.Array:
    """Arrow UDF body: positional argument columns → one output array, or a struct of outputs."""
    batch = pa.RecordBatch.from_arrays(list(columns), names=list(names))
    scored = scorer(model, sha256, label, batch.schema, requested, "ERROR").score(batch)
    outputs = scored.columns[len(names) :]
    if len(outputs) == 1:
        return outputs[0]
    return pa.StructArray.from_arrays(outputs, names=scored.schema.names[len(names) :])
