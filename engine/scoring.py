"""Score Arrow batches: RecordBatch → numpy feeds → InferenceSession.run → RecordBatch with outputs appended.

`score_stream` keeps row order while scoring up to `workers` batches at once (run() releases the
GIL), so memory stays bounded by batch size × (workers + 1), never by the table. Sessions are
single-threaded (see sessions.py) and a lone row is scored as two, so every result is
bit-identical whatever the batch size and worker count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predictsql.engine.binding import NULLS_PROPAGATE, InputFeed, OutputColumn, ScoringPlan
from predictsql.engine.errors import NullInputError, PredictSQLError, ScoringError
from predictsql.engine.types import Cast, numpy_dtype, sql_name

DEFAULT_BATCH_SIZE = 65536


class Scorer:
    """Scores batches for one ScoringPlan; stateless per batch, so threads may share it."""

    def __init__(self, plan: ScoringPlan, propagate: str | None = "add NULLS = PROPAGATE", positions: bool = True) -> None:
        """`propagate` says how this door asks for a NULL input's outputs to be NULL (None: it cannot); without
        `positions` (a function of plain SQL, whose calls no statement of predictsql's counts) errors name no row numbers."""
        self.plan = plan
        self._propagate = propagate
        self._positions = positions
        self.schema = plan.schema
        self._session = plan.model.runner
        self._output_names = [o.name for o in plan.model.signature.outputs]
        self._input_columns = sorted({i for feed in plan.inputs for i in feed.columns})
        self._dtypes = {feed.name: numpy_dtype(feed.arrow_type) for feed in plan.inputs}
        self._widths = {spec.name: spec.width for spec in plan.model.signature.inputs}
        self._used_outputs = sorted({o.source for o in plan.outputs})
        self._declared_widths = [spec.width for spec in plan.model.signature.outputs]
        self._fields = [pa.field(o.field, o.arrow_type) for o in plan.outputs]
        batches = {spec.shape[0] for spec in plan.model.signature.inputs if spec.shape}
        self._fixed_batch = next(iter(batches)) if len(batches) == 1 and None not in batches else None  # [1,k] inputs: fed in chunks

    def score(self, batch: pa.RecordBatch, index: int = 0, offset: int = 0) -> pa.RecordBatch:
        """Append the plan's output columns to `batch` (batch `index`, first row `offset`)."""
        return pa.RecordBatch.from_arrays(batch.columns + self._outputs(batch, index, offset), schema=self.schema)

    def score_columns(self, columns: Sequence[pa.Array | pa.ChunkedArray], index: int = 0, offset: int = 0) -> pa.StructArray:
        """The outputs, as one STRUCT column, of DATA columns given in the plan's schema order: the body of
        an in-query scoring function (DuckDB's Arrow UDF, Spark's Arrow UDF)."""
        batch = pa.RecordBatch.from_arrays([_array(c) for c in columns], schema=self.plan.data_schema)
        return pa.StructArray.from_arrays(self._outputs(batch, index, offset), fields=self._fields)

    def _outputs(self, batch: pa.RecordBatch, index: int, offset: int) -> list[pa.Array]:
        """The plan's output columns for one batch; a row with a NULL input is NULL in each (PROPAGATE)."""
        valid = self._valid_rows(batch, offset)
        scored = batch if valid is None else batch.filter(valid)
        rows = scored.num_rows
        try:
            feeds = {feed.name: self._feed(scored, feed, offset) for feed in self.plan.inputs}
            if rows == 1:  # one row takes MLAS's GEMV path, which rounds differently: score two copies
                feeds = {name: np.repeat(value, 2, axis=0) for name, value in feeds.items()}
            raw = [value[:rows] for value in self._run(feeds)] if rows else None
        except PredictSQLError:
            raise
        except Exception as e:  # onnxruntime's own error types are not importable in a stable way
            raise ScoringError(
                f"{self.plan.model.display} failed on batch {index} (rows {offset}-{offset + batch.num_rows - 1}): {e}"
            ) from e
        columns = [self._output(raw, out, rows) for out in self.plan.outputs]
        if valid is None:
            return columns
        positions = pa.array(np.cumsum(valid.to_numpy(zero_copy_only=False)) - 1, pa.int64())
        positions = pc.if_else(valid, positions, pa.scalar(None, pa.int64()))
        return [pc.take(c, positions) for c in columns]

    def _run(self, feeds: dict[str, np.ndarray]) -> list:
        """onnxruntime's outputs for these feeds (in chunks where the model has a fixed batch size), each output the
        plan reads checked to give one row per row fed."""
        rows = len(next(iter(feeds.values())))
        results = self._session.run(self._output_names, feeds) if self._fixed_batch is None else self._run_chunked(feeds, rows, self._fixed_batch)
        for index in self._used_outputs:
            name, value = self._output_names[index], results[index]
            if len(value) != rows:
                raise ScoringError(f"{self.plan.model.display} returned {len(value)} rows of output '{name}' for {rows} rows fed: PREDICT needs one output row per input row")
            declared = self._declared_widths[index]
            width = value.shape[1] if isinstance(value, np.ndarray) and value.ndim == 2 else 1
            if declared is not None and width != declared:
                raise ScoringError(
                    f"{self.plan.model.display} returned {width} values per row of output '{name}', which its graph declares to have {declared}: "
                    "the model does not run as it was exported"
                )
        return results

    def _run_chunked(self, feeds: dict[str, np.ndarray], rows: int, size: int) -> list:
        """A model with a fixed batch size ([1,k] inputs) run on chunks of that size, the last padded with its own last row."""
        outputs: list[list] = [[] for _ in self._output_names]
        for start in range(0, rows, size):
            chunk = {name: value[start : start + size] for name, value in feeds.items()}
            short = size - len(next(iter(chunk.values())))
            if short:
                chunk = {name: np.concatenate([value, np.repeat(value[-1:], short, axis=0)]) for name, value in chunk.items()}
            for collected, value in zip(outputs, self._session.run(self._output_names, chunk), strict=True):
                collected.append(value[: size - short])
        return [parts[0] if len(parts) == 1 else (sum(parts, []) if isinstance(parts[0], list) else np.concatenate(parts)) for parts in outputs]

    def _valid_rows(self, batch: pa.RecordBatch, offset: int) -> pa.BooleanArray | None:
        """None when no input is NULL; else the rows to score (PROPAGATE) or a NullInputError."""
        nullable = [i for i in self._input_columns if batch.column(i).null_count]
        if not nullable:
            return None
        if self.plan.nulls != NULLS_PROPAGATE:
            column = batch.column(nullable[0])
            name = batch.schema.field(nullable[0]).name
            first = offset + pc.index(column.is_null(), True).as_py()
            where, fill = f"filter them (WHERE {name} IS NOT NULL)", f"fill them (COALESCE({name}, ...)) in the DATA query"
            fix = f"{where}, {fill}, or {self._propagate} to score them as NULL" if self._propagate else f"{where} or {fill}"
            where_in = f"rows of the batch starting at row {offset}, first at row {first}" if self._positions else f"of the {batch.num_rows} rows of one call"
            raise NullInputError(f"PREDICT input '{name}' ({self.plan.model.display}) is NULL in {column.null_count} {where_in}: {fix}")
        valid = pc.is_valid(batch.column(nullable[0]))
        for i in nullable[1:]:
            valid = pc.and_(valid, pc.is_valid(batch.column(i)))
        return valid

    def _feed(self, batch: pa.RecordBatch, feed: InputFeed, offset: int) -> np.ndarray:
        if feed.whole:
            return self._matrix(batch, feed, offset)
        arrays = [self._cast(batch, i, feed, cast, offset) for i, cast in zip(feed.columns, feed.casts, strict=True)]
        if len(arrays) == 1:
            values = arrays[0]
        else:
            values = np.empty((batch.num_rows, len(arrays)), dtype=arrays[0].dtype)
            for j, array in enumerate(arrays):
                values[:, j] = array
        return values.reshape(-1, 1) if feed.rank == 2 and values.ndim == 1 else values

    def _matrix(self, batch: pa.RecordBatch, feed: InputFeed, offset: int) -> np.ndarray:
        """A list column's values as the [rows, k] matrix of its input, every list checked to hold k non-NULL values."""
        column, name = batch.column(feed.columns[0]), batch.schema.field(feed.columns[0]).name
        lengths = pc.list_value_length(column)
        width = self._widths[feed.name] or (lengths[0].as_py() if len(column) else 0)
        wrong = pc.not_equal(lengths, width)
        if pc.any(wrong).as_py():
            row = pc.index(wrong, True).as_py()
            raise ScoringError(
                f"PREDICT input '{name}' ({self.plan.model.display}) holds {lengths[row].as_py()} values at row {offset + row}, but input '{feed.name}' takes {width}"
            )
        values = column.flatten()
        if values.null_count:
            raise NullInputError(f"PREDICT input '{name}' ({self.plan.model.display}) has NULL values inside its lists in the batch starting at row {offset}: fill them in the DATA query")
        flat = self._cast(pa.RecordBatch.from_arrays([values], names=[name]), 0, feed, feed.casts[0], offset)
        return flat.reshape(len(column), -1)

    def _cast(self, batch: pa.RecordBatch, i: int, feed: InputFeed, cast: Cast, offset: int) -> np.ndarray:
        column = batch.column(i)
        if pa.types.is_decimal(column.type) and pa.types.is_floating(feed.arrow_type):
            return _decimal_floats(column).astype(self._dtypes[feed.name])
        if cast is not Cast.NONE or column.type != feed.arrow_type:
            try:
                column = pc.cast(column, feed.arrow_type, safe=cast is not Cast.ROUNDING)
            except pa.ArrowInvalid as e:
                name = batch.schema.field(i).name
                raise ScoringError(
                    f"PREDICT input '{name}' ({self.plan.model.display}) has a value in the batch starting at row {offset} that "
                    f"{feed.arrow_type} cannot hold exactly ({e}): write CAST({name} AS {sql_name(feed.arrow_type)}) in the DATA query to accept rounding"
                ) from e
        return column.to_numpy(zero_copy_only=False).astype(self._dtypes[feed.name], copy=False)

    def _output(self, raw: list | None, out: OutputColumn, rows: int) -> pa.Array:
        if raw is None:
            return pa.nulls(0, out.arrow_type)
        value = raw[out.source]
        if isinstance(value, list):  # ZipMap: one {class: probability} dict per row
            key = next((k for k in value[0] if str(k) == str(out.pick)), out.pick) if value else out.pick
            array = pa.array(np.fromiter((row[key] for row in value), np.float32, count=rows))
        elif out.as_list:
            matrix = value.reshape(rows, -1)
            offsets = pa.array(np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int32))
            array = pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1)))
        elif out.pick is not None:
            array = pa.array(np.ascontiguousarray(value[:, out.pick]))
        else:
            array = pa.array(value.reshape(-1))
        if array.type == out.arrow_type:
            return array
        try:
            return pc.cast(array, out.arrow_type)
        except pa.ArrowInvalid as e:  # a narrower integer than the model's values (WITH (label TINYINT) of label 300)
            natural = sql_name(array.type.value_type if out.as_list else array.type)
            raise ScoringError(f"PREDICT output {out.name} ({self.plan.model.display}) has a value {sql_name(out.arrow_type)} cannot hold ({e}): declare it {natural} in WITH") from e


def _decimal_floats(column: pa.Array) -> np.ndarray:
    """A DECIMAL column's values as the doubles nearest them (as DuckDB, pandas and float(Decimal) give): pyarrow's cast
    scales by an inexact power of ten, and its FLOAT 3.1 was one float32 step above 3.1's, across a tree's split (0.2
    off in probability). The quotient of the unscaled integer and 10^scale is correctly rounded while that integer is
    below 2^53 (any value of 15 digits), within a double's last bit up to 2^63; wider values go through Decimal."""
    kind = column.type
    if kind.bit_width != 128 or kind.scale > 22:  # 10^scale is a double exactly up to 10^22
        return np.array([float(v) for v in column.to_pylist()], dtype=np.float64)
    words = np.frombuffer(column.buffers()[1], dtype=np.int64)[2 * column.offset : 2 * (column.offset + len(column))]
    low, high = words[0::2], words[1::2]  # little-endian 128-bit two's complement
    values = low.astype(np.float64) / 10.0**kind.scale
    wide = np.flatnonzero(high != low >> 63)  # the high word more than the low word's sign: beyond 64 bits
    if len(wide):
        values[wide] = [float(column[int(i)].as_py()) for i in wide]
    return values


def _array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One Arrow array of a column; a ChunkedArray of one chunk (what DuckDB hands a function) is not copied."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def score_stream(batches: Iterable[pa.RecordBatch], scorer: Scorer, workers: int = 1) -> Iterator[pa.RecordBatch]:
    """Score batches in order, with up to `workers` in flight while the next one is read."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predictsql") as pool:
        pending: deque[Future[pa.RecordBatch]] = deque()
        offset = 0
        try:
            for index, batch in enumerate(batches):
                pending.append(pool.submit(scorer.score, batch, index, offset))
                offset += batch.num_rows
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class ScoredStream:
    """A RecordBatchReader over scored batches that remembers the error it raised.

    Engines report a Python exception raised inside a reader as text; keeping the exception
    lets the adapter re-raise the original PredictSQLError after the engine's query fails.
    """

    def __init__(self, batches: Iterable[pa.RecordBatch], scorer: Scorer, workers: int = 1) -> None:
        self.error: BaseException | None = None
        self._batches = self._run(batches, scorer, workers)
        self.reader = pa.RecordBatchReader.from_batches(scorer.schema, self._batches)

    def _run(self, batches: Iterable[pa.RecordBatch], scorer: Scorer, workers: int) -> Generator[pa.RecordBatch, None, None]:
        try:
            yield from score_stream(batches, scorer, workers)
        except BaseException as e:
            self.error = e
            raise

    def close(self) -> None:
        self._batches.close()
