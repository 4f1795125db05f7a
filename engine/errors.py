"""The one error hierarchy of predictsql: every failure a user can cause is a PredictSQLError.

Pure Python (the standard library only), so every layer (sql, engine, udfs) may raise these.
Messages name the model, the column and the fix, in the spirit of skl2onnx's errors.
"""

from __future__ import annotations

import re

# Not inside a SQL literal (an engine may echo the query back); without Spark's " SQLSTATE: P0001" suffix.
_TEXT = re.compile(r"(?<!')predictsql\.engine\.errors\.(\w+): (.+?)(?: SQLSTATE: \w+)?$", re.MULTILINE)


class PredictSQLError(Exception):
    """Root of every error predictsql raises on purpose."""


class SQLSyntaxError(PredictSQLError):
    """The SQL text does not parse; the message carries line, column and the fragment."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


class BindError(PredictSQLError):
    """A PREDICT does not fit its DATA or its model; raised before any row is scored."""


class MissingColumnError(BindError):
    """A model input has no DATA column of that name."""


class AmbiguousColumnError(BindError):
    """A model input matches several DATA columns case-insensitively."""


class UnknownOutputError(BindError):
    """A WITH column names no output of the model."""


class TypeMismatchError(BindError):
    """A DATA column's type cannot feed the model input without a lossy or unrelated cast."""


class ModelError(PredictSQLError):
    """The model cannot be loaded: not found, not ONNX, truncated, too large or unsafe."""


class ModelSourceError(ModelError):
    """The MODEL expression did not yield exactly one model (no row, several rows, NULL, unknown variable)."""


class UnsafeModelError(ModelError):
    """The model references external data it may not read, or an operator domain we do not allow."""


class ExportError(PredictSQLError):
    """An estimator or sample cannot become an ONNX model that PREDICT can bind."""


class ScoringError(PredictSQLError):
    """Scoring failed on a batch; the statement is aborted with no partial rows."""


class NullInputError(ScoringError):
    """A model input received NULL and the PREDICT did not ask for NULLS = PROPAGATE."""


def as_text(error: PredictSQLError) -> str:
    """The error as one line that `from_text` reads back, for errors raised inside an engine."""
    return f"{__name__}.{type(error).__name__}: {error}"


def from_text(text: str) -> PredictSQLError | None:
    """The last predictsql error named in an engine's error text (a worker traceback, a SQL error() call), else None."""
    found = _TEXT.findall(text)
    if not found:
        return None
    kind, message = found[-1]
    return named(kind, message) or PredictSQLError(message)


def named(kind: str, message: str) -> PredictSQLError | None:
    """The predictsql error of class name `kind` with `message`; None if no such class."""
    cls = globals().get(kind)
    return cls(message) if isinstance(cls, type) and issubclass(cls, PredictSQLError) else None
