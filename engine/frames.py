"""pandas frames as Arrow tables the way a model's library reads them: a float NaN stays NaN (pyarrow's pandas
conversion makes it NULL, which the library never sees: an imputer in the model replaces NaN)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from predictsql.engine.errors import PredictSQLError


def from_pandas(frame: Any, door: str) -> pa.Table:
    """A pandas DataFrame as Arrow, NaN kept; `door` (predict(), export()) names the caller in errors."""
    if len({str(name) for name in frame.columns}) != len(frame.columns):  # before frame[name] reads a repeat as a frame
        raise PredictSQLError(f"{door} needs distinct column names; the frame has {list(frame.columns)}")
    columns = {}
    for name in frame.columns:
        try:
            columns[str(name)] = pa.array(frame[name], from_pandas=False)
        except pa.ArrowNotImplementedError as e:  # complex numbers: neither Arrow nor SQL has the type
            raise PredictSQLError(f"{door} cannot read column '{name}' ({frame[name].dtype}): Arrow has no such type ({e}); drop the column, or pass what the model reads as numbers") from e
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise PredictSQLError(f"{door} cannot read column '{name}' ({frame[name].dtype}) as one Arrow type: {e}; give it a single type, e.g. frame['{name}'].astype(float)") from e
    return pa.table(columns)
