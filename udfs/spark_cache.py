"""Executor-side scorer cache for Spark: load once per Python worker, score many batches.

Contract:
- This module is imported once per Python worker process; what is shipped to executors is
  `score_batches` bound with functools.partial (inside the type-hinted function arrow_udf
  needs), so only small arguments are pickled.
- Model bytes travel as a Spark broadcast variable, fetched by an executor once; a worker
  reads `broadcast.value` only on a cache miss.
- The cache maps (sha256, input schema, requested outputs, NULL rule) to a bound Scorer whose
  InferenceSession comes from predictsql.engine.sessions (one per sha256 per process).
- `stats` counts loads and hits so tests can prove reuse across tasks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

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


def score_batches(
    model: Any, sha256: str, label: str, names: Sequence[str], requested: Sequence[OutputRequest] | None, nulls: str, struct: bool, batches: Iterator[tuple[pa.Array, ...] | pa.Array]
) -> Iterator[pa.Array]:
    """Iterator Arrow UDF body over one partition: the input columns of each batch → a STRUCT of its outputs (`struct`),
    or its one output; batch index and row offset go into error messages."""
    offset, current = 0, None
    for index, batch in enumerate(batches):
        columns = list(batch) if isinstance(batch, tuple) else [batch]
        if current is None:  # once per partition
            schema = pa.schema([pa.field(name, column.type) for name, column in zip(names, columns, strict=True)])
            current = scorer(model, sha256, label, schema, requested, nulls)
        outputs = current.score_columns(columns, index, offset)
        offset += len(columns[0])
        yield outputs if struct else outputs.field(0)
