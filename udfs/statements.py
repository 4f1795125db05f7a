"""The statement loop every adapter runs a script with: DECLARE, DESCRIBE MODEL, the host's own SQL, and planned statements.

An adapter is a Runner: it runs SQL on its engine, makes rows of a table, maps T-SQL's `dbo.`
schema, and plans and runs a statement (expanding its own stored views, keeping views of PREDICT); DECLARE'd variables, MODEL values
and the plan itself are the same for every engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

import pyarrow as pa
from sqlglot import exp

from predictsql.sql.reading import Statement
from predictsql.sql.statements import DESCRIBE_MODEL, VARIABLES, Variables, kind
from predictsql.udfs import script
from predictsql.udfs.planner import Engine, Planner, Settings

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Runner(Protocol[R_co]):
    """What an adapter does for the statement loop; R_co is its kind of result (rows, a DataFrame)."""

    settings: Settings

    def engine(self) -> Engine:
        """The planner's view of the engine, for one statement."""

    def execute(self, sql: str) -> R_co | None:
        """Run the host's own SQL as written; its rows when it yields rows."""

    def rows(self, table: pa.Table) -> R_co:
        """A result from rows predictsql computed (DESCRIBE MODEL)."""

    def prepare(self, tree: exp.Expr) -> exp.Expr:
        """A copy of a tree that names a `dbo.` table, with `dbo.` mapped to the engine's default schema unless a schema
        of that name exists."""

    def run(self, tree: exp.Expr, planner: Planner) -> R_co | None:
        """Plan and run a statement (or keep a view of it); its rows when it yields rows."""

    def query(self, query: exp.Query, planner: Planner) -> list[tuple]:
        """Plan and run a query (a variable's value); its rows as tuples."""


def run_script(runner: Runner[R], statements: Iterable[Statement], variables: Variables, persisted: Variables) -> R | None:
    """Run statements in order; the rows of the last one that yields rows. DECLAREs go into `variables` and `persisted`."""
    result = None
    for statement in statements:
        rows = run_statement(runner, statement, variables, persisted)
        result = rows if rows is not None else result
    return result


def run_statement(runner: Runner[R], statement: Statement, variables: Variables, persisted: Variables) -> R | None:
    if statement.tree is None:
        return runner.execute(statement.text)
    tree = runner.prepare(statement.tree) if statement.names_default_schema else statement.tree
    if kind(tree) in VARIABLES:
        persisted.keep(script.declare(tree, variables, values_query(runner, variables)), variables)
        return None
    planner = Planner(runner.engine(), variables, runner.settings)  # one per statement: a URI names one version throughout
    if kind(tree) == DESCRIBE_MODEL:
        return runner.rows(script.describe_model(tree, variables, planner.run_query, planner.resolve, runner.settings.session_options))
    return runner.run(tree, planner)


def values_query(runner: Runner[R], variables: Variables) -> script.RunQuery:
    """How a DECLARE, SET or SELECT @v = … reads its values: each query planned and run as a statement is, so it may read
    PREDICT and stored views of it."""
    return lambda query: runner.query(query, Planner(runner.engine(), variables, runner.settings))
