"""Executor-side scorer cache for Spark: load once per Python worker, score many batches.

Contract:
- This module is imported once per Python worker process; what is shipped to executors is
  `score_batches` bound with functools.partial (inside the type-hinted function arrow_udf
  needs), so only small arguments are pickled.
- Model bytes travel as a Spark broadcast variable, fetched by an executor once; a worker
  reads `broadcast.value` only on a cache miss.
- The cache maps (sha256, input schema, requested outputs, NULL rule, session options) to a bound
  Scorer whose InferenceSession comes from predictsql.engine.sessions (one per sha256 per
  process); it keeps at most MAX_BYTES of model bytes, evicting the least recently used.
- `stats` counts loads, hits and evictions so tests can prove reuse across tasks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from predictsql.engine import sessions
from predictsql.engine.binding import OutputRequest, bind
from predictsql.engine.errors import BindError
from predictsql.engine.scoring import Scorer
from predictsql.engine.sessions import SessionOptions
from predictsql.engine.sources import ModelSource

MAX_BYTES = 2 << 30  # of model bytes kept loaded per worker process; the least recently used go first
stats = {"loads": 0, "hits": 0, "evictions": 0}
_scorers: OrderedDict[tuple, tuple[Scorer, int]] = OrderedDict()
_lock = threading.Lock()


def scorer(model: Any, sha256: str, label: str, schema: pa.Schema, requested: Sequence[OutputRequest] | None, nulls: str, options: SessionOptions) -> Scorer:
    """The cached Scorer for this model, input schema and session options; `model` is a broadcast of the ONNX bytes."""
    key = (sha256, schema.serialize().to_pybytes(), tuple(requested or ()), nulls, options)
    with _lock:
        cached = _scorers.get(key)
        if cached is not None:
            _scorers.move_to_end(key)
            stats["hits"] += 1
            return cached[0]
        data = model.value
        loaded = sessions.load(ModelSource(data, label), options)
        _scorers[key] = (Scorer(bind(schema, loaded, requested, nulls)), len(data))
        stats["loads"] += 1
        while len(_scorers) > 1 and sum(size for _, size in _scorers.values()) > MAX_BYTES:
            _scorers.popitem(last=False)
            stats["evictions"] += 1
        return _scorers[key][0]


def score_batches(
    model: Any,
    sha256: str,
    label: str,
    names: Sequence[str],
    requested: Sequence[OutputRequest] | None,
    nulls: str,
    options: SessionOptions,
    struct: bool,
    batches: Iterator[tuple[pa.Array, ...] | pa.Array],
) -> Iterator[pa.Array]:
    """Iterator Arrow UDF body over one partition: the input columns of each batch → a STRUCT of its outputs (`struct`),
    or its one output; batch index and row offset go into error messages."""
    offset, current = 0, None
    for index, batch in enumerate(batches):
        columns = list(batch) if isinstance(batch, tuple) else [batch]
        if current is None:  # once per partition
            if len(columns) != len(names):
                raise BindError(f"{label} takes {len(names)} arguments ({', '.join(names)}) but was called with {len(columns)}: argument_names(model) lists them")
            schema = pa.schema([pa.field(name, column.type) for name, column in zip(names, columns, strict=True)])
            current = scorer(model, sha256, label, schema, requested, nulls, options)
        outputs = current.score_columns(columns, index, offset)
        offset += len(columns[0])
        yield outputs if struct else outputs.field(0)
