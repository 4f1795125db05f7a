"""Engine-neutral script handling shared by the adapters: variables, DECLARE, MODEL values, binding.

An adapter supplies one callable, `scalar(query, what)`, that runs a scalar subquery on its
engine and returns its rows; everything else here is the same for DuckDB and Spark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa
from sqlglot import exp

from predictsql.engine import sessions
from predictsql.engine.binding import NULLS_ERROR, OutputRequest, ScoringPlan, bind
from predictsql.engine.errors import BindError, ModelSourceError, PredictSQLError
from predictsql.engine.sessions import Model, SessionOptions
from predictsql.engine.sources import Resolve
from predictsql.sql.bind import described_model
from predictsql.sql.plan import LITERAL, QUERY, VARIABLE, ModelRef, Output, PredictCall, Relation
from predictsql.sql.statements import SELECT_VARIABLES, SET_VARIABLES, Variables, declared, kind, selected
from predictsql.udfs.describe import describe

RunQuery = Callable[[exp.Query], list[tuple]]


def params(values: Mapping[str, object] | None) -> dict[str, object]:
    """Python params as variables: '@m' and 'm' both bind @m; numpy scalars and arrays as the Python values they hold."""
    if values is None:
        return {}
    if not isinstance(values, Mapping) or not all(isinstance(k, str) for k in values):
        raise BindError(f"params must map names to values, e.g. params={{'m': model_bytes}} for @m; got {type(values).__name__} {values!r:.60}")
    return {k.lstrip("@").lower(): v.tolist() if isinstance(v, np.ndarray | np.generic) else v for k, v in values.items()}


def declare(statement: exp.Expr, variables: Variables, run: RunQuery) -> list[str]:
    """Evaluate DECLARE @name TYPE [= value | = (SELECT ...)], or SET @name = … or SELECT @name = … FROM … (declared
    already, as in T-SQL), into `variables`, item by item (a later item may read an earlier one); the names it gave values."""
    if kind(statement) == SELECT_VARIABLES and isinstance(statement, exp.Select):
        return _select_variables(statement, variables, run)
    assign, names = kind(statement) == SET_VARIABLES, []
    for item in declared(statement, variables.types):
        if assign and item.name not in variables:
            raise BindError(f"SET @{item.name}: variable @{item.name} is not declared; DECLARE @{item.name} ... first")
        if item.query is not None:
            variables[item.name] = scalar(item.query, run, f"@{item.name}", variable=True)
        elif item.variable is not None:
            if item.variable not in variables:
                raise BindError(f"@{item.name} = @{item.variable}: variable @{item.variable} is not declared")
            variables[item.name] = variables[item.variable]
        else:
            variables[item.name] = item.value
        if not assign:
            variables.types.pop(item.name, None)
            if item.type is not None:
                variables.types[item.name] = item.type
        names.append(item.name)
    return names


def _select_variables(statement: exp.Select, variables: Variables, run: RunQuery) -> list[str]:
    """SELECT @a = x, … FROM …, as T-SQL runs it: each variable takes its value in the last row; no row leaves them be."""
    names, query = selected(statement, variables.types)
    undeclared = [name for name in names if name not in variables]
    if undeclared:
        raise BindError(f"SELECT @{undeclared[0]} = …: variable @{undeclared[0]} is not declared; DECLARE @{undeclared[0]} ... first")
    rows = _rows(query, run, f"SELECT {', '.join('@' + n for n in names)} = …", BindError)
    if rows:
        variables.update(zip(names, rows[-1], strict=True))
    return names


def scalar(query: exp.Query, run: RunQuery, what: str, variable: bool = False) -> object:
    """The one value of a scalar subquery, or a ModelSourceError (several rows or columns; no row, except for a
    variable's DECLARE … = (SELECT …), which T-SQL sets to NULL then)."""
    rows = _rows(query, run, what, ModelSourceError)
    holds = "a variable holds one value" if variable else "it must return exactly one model"
    if not rows and variable:
        return None
    if len(rows) != 1:
        raise ModelSourceError(f"{what} returned {'no row' if not rows else 'more than one row'}; {holds}")
    if len(rows[0]) != 1:
        raise ModelSourceError(f"{what} returned {len(rows[0])} columns; {holds}" + ("" if variable else ": one BLOB column"))
    return rows[0][0]


def _rows(query: exp.Query, run: RunQuery, what: str, error: type[PredictSQLError]) -> list[tuple]:
    """A query's rows; the engine's own failure as `error`, naming `what` (a PREDICT's error stays its own)."""
    try:
        return run(query)
    except PredictSQLError:
        raise
    except Exception as e:  # the engine's own error type
        raise error(f"{what} fails: {e}") from e


def model_value(ref: ModelRef, variables: Mapping[str, object], run: RunQuery) -> object:
    """The bytes or location a MODEL argument names."""
    if ref.kind == VARIABLE and isinstance(ref.value, str):
        if ref.value not in variables:
            raise ModelSourceError(f"MODEL {ref.label} is not declared: DECLARE @{ref.value} VARBINARY(MAX) = (SELECT ...) first, or pass params={{'{ref.value}': ...}}")
        value = variables[ref.value]
    elif ref.kind == QUERY and isinstance(ref.value, exp.Query):
        value = scalar(ref.value, run, f"MODEL {ref.label}")
    elif ref.kind == LITERAL:
        value = ref.value
    else:
        raise BindError(f"MODEL {ref.label}: unknown reference kind {ref.kind}")
    if value is None:
        raise ModelSourceError(f"MODEL {ref.label} is NULL" + (" (a DECLARE … = (SELECT …) that finds no row sets NULL, as in T-SQL)" if ref.kind == VARIABLE else ""))
    return value


def describe_model(statement: exp.Expr, variables: Mapping[str, object], run: RunQuery, resolve: Resolve, options: SessionOptions) -> pa.Table:
    """The rows of DESCRIBE MODEL <model>, for any MODEL form."""
    ref = described_model(statement)
    source = resolve(model_value(ref, variables, run), ref.label)
    return describe(sessions.load(source, options), source)


def requested(call: PredictCall) -> list[OutputRequest] | None:
    """The WITH columns as output requests; None (every output) without WITH."""
    return [OutputRequest(name, type_name) for name, type_name in call.columns] if call.columns else None


def scoring_plan(call: PredictCall, schema: pa.Schema, model: Model) -> ScoringPlan:
    """Bind a PREDICT's WITH columns and NULLS option against DATA's Arrow schema."""
    return bind(schema, model, requested(call), call.options.get("NULLS", NULLS_ERROR))


def relation(name: str, plan: ScoringPlan, query: exp.Query | None = None) -> Relation:
    """What the rewrite needs to know of a scored relation; `query` computes it (INLINE)."""
    return Relation(name, tuple(plan.data_schema.names), tuple(Output(o.name, o.field) for o in plan.outputs), query, plan.model.display)


def batch_size(call: PredictCall, default: int) -> int:
    value = call.options.get("BATCH_SIZE")
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise BindError(f"PREDICT BATCH_SIZE = {value} ({call.label}) must be a positive whole number")
    return int(value)
