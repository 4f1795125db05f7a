"""The PREDICT grammar: a T-SQL dialect for sqlglot that parses and prints PREDICT(...) WITH (...).

    PREDICT ( MODEL = <model>, DATA = <relation> [AS alias] [, RUNTIME = ONNX] [, <option> = <literal>]... )
      [WITH ( <column> <type> [, ...] )] [AS alias]
    DESCRIBE MODEL <model>

Parsed like T-SQL's OPENJSON(...) WITH (...): the function parser consumes `) WITH (` and the
caller's closing-paren match ends the column list. User SQL is always read with this dialect and
generated for the target engine (in the duckdb dialect `@model` would read as abs(model)).
"""

from __future__ import annotations

import sqlglot
from typing import Sequence

from sqlglot import exp
from sqlglot.dialects.tsql import TSQL
from sqlglot.errors import ParseError
from sqlglot.tokens import TokenType

from predictsql.engine.errors import SQLSyntaxError


class PredictTable(exp.Expression):
    """PREDICT(...) as a table source; sqlglot's own `Predict` node is BigQuery's ML.PREDICT."""

    arg_types = {"model": True, "data": True, "options": False, "columns": False}


class DescribeModel(exp.Expression):
    """DESCRIBE MODEL <model>: the inputs and outputs of a model, and a WITH clause to paste."""

    arg_types = {"this": True}


def _parse_describe(self: "PredictTSQL.Parser") -> exp.Expression:
    if self._curr and self._curr.text.upper() == "MODEL":
        self._advance()
        return self.expression(DescribeModel(this=self._parse_bitwise()))
    return self._parse_describe()


def _parse_predict(self: "PredictTSQL.Parser") -> PredictTable:
    args: dict[str, exp.Expression] = {}
    options: list[exp.Expression] = []
    while True:
        key_token = self._curr
        key = self._parse_var(any_token=True)
        if key is None or not self._match(TokenType.EQ):
            self.raise_error("Expected <name> = <value> inside PREDICT(...)", key_token)
        name = key.name.upper()
        if name.lower() in args or name in {o.name.upper() for o in options}:
            self.raise_error(f"PREDICT argument {name} is given twice", key_token)
        if name == "MODEL":
            args["model"] = self._parse_bitwise()
        elif name == "DATA":
            args["data"] = self._parse_table()
        else:
            options.append(exp.EQ(this=exp.var(name), expression=self._parse_primary() or self._parse_var(any_token=True)))
        if not self._match(TokenType.COMMA):
            break
    for required in ("model", "data"):
        if args.get(required) is None:
            self.raise_error(f"PREDICT needs {required.upper()} = ...")
    columns = None
    if self._match_pair(TokenType.R_PAREN, TokenType.WITH):
        self._match_l_paren()
        columns = self._parse_csv(self._parse_predict_column)
    return self.expression(PredictTable(model=args["model"], data=args["data"], options=options, columns=columns))


class PredictTSQL(TSQL):
    """T-SQL plus PREDICT; lookup tables are copied from the parent, never edited in place."""

    class Parser(TSQL.Parser):
        FUNCTION_PARSERS = {**TSQL.Parser.FUNCTION_PARSERS, "PREDICT": _parse_predict}
        STATEMENT_PARSERS = {**TSQL.Parser.STATEMENT_PARSERS, TokenType.DESCRIBE: _parse_describe}

        def _parse_predict_column(self) -> exp.ColumnDef:
            """`<name> <type>` or `<name> <type>[]` (a list column) inside WITH (...)."""
            name = self._parse_field(any_token=True)
            kind = self._parse_types()
            if kind is None:
                self.raise_error("Expected a type after the WITH column name")
            if self._curr and self._curr.token_type == TokenType.IDENTIFIER and not self._curr.text:
                self._advance()  # T-SQL tokenizes `[]` as an empty [bracket-quoted] identifier
                kind = exp.DataType(this=exp.DataType.Type.ARRAY, expressions=[kind], nested=True)
            return self.expression(exp.ColumnDef(this=name, kind=kind))

    class Generator(TSQL.Generator):
        TRANSFORMS = {
            **TSQL.Generator.TRANSFORMS,
            PredictTable: lambda self, e: _predict_sql(self, e),
            DescribeModel: lambda self, e: f"DESCRIBE MODEL {self.sql(e, 'this')}",
        }


def _predict_sql(self: sqlglot.Generator, expression: PredictTable) -> str:
    args = [f"MODEL = {self.sql(expression, 'model')}", f"DATA = {self.sql(expression, 'data')}"]
    args += [f"{o.name} = {self.sql(o, 'expression')}" for o in expression.args.get("options") or []]
    sql = f"PREDICT({', '.join(args)})"
    columns = expression.args.get("columns")
    if columns:
        sql += f" WITH ({', '.join(_column_sql(self, c) for c in columns)})"
    return sql


def _column_sql(generator: sqlglot.Generator, column: exp.ColumnDef) -> str:
    kind = column.args["kind"]
    if kind.this == exp.DataType.Type.ARRAY:
        return f"{generator.sql(column, 'this')} {generator.sql(kind.expressions[0])}[]"
    return f"{generator.sql(column, 'this')} {generator.sql(kind)}"


def with_clause(columns: Sequence[tuple[str, str]]) -> str:
    """`WITH (name TYPE, ...)` to paste after PREDICT(...), names quoted where T-SQL needs it."""
    generator = PredictTSQL().generator()
    return f"WITH ({', '.join(_column_sql(generator, exp.ColumnDef(this=exp.to_identifier(n), kind=_type(t))) for n, t in columns)})"


def _type(type_name: str) -> exp.DataType:
    if type_name.endswith("[]"):
        return exp.DataType(this=exp.DataType.Type.ARRAY, expressions=[_type(type_name[:-2])], nested=True)
    return exp.DataType.build(type_name, dialect=PredictTSQL)


def parse(text: str) -> list[exp.Expression]:
    """Parse a script (one or more statements) into trees; errors carry line, column and fragment."""
    try:
        return [s for s in sqlglot.parse(text, dialect=PredictTSQL) if s is not None]
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        line, col = first.get("line"), first.get("col")
        fragment = f"{first.get('start_context', '')}{first.get('highlight', '')}".strip()
        where = f" at line {line}, column {col}" if line is not None else ""
        description = first.get("description") or str(e)
        raise SQLSyntaxError(f"SQL syntax error{where}: {description}\n  near: {fragment}", line, col) from e


def to_sql(tree: exp.Expression) -> str:
    """Print a tree back in the PREDICT dialect (round trip; stored view definitions)."""
    return tree.sql(dialect=PredictTSQL)
