"""The PREDICT grammar, added to each dialect a script may be read in: DuckDB, Spark SQL and T-SQL.

    PREDICT ( MODEL = <model>, DATA = <relation> [AS alias] [, RUNTIME = ONNX] [, <option> = <literal>]... )
      [WITH ( <column> <type> [, ...] )] [AS alias]
    DESCRIBE MODEL <model>
    DECLARE @name <type> [= <value> | = (SELECT ...)] [, ...]
    EXPLAIN [<options>] <statement with PREDICT>      -- the engine's EXPLAIN of the rewritten statement

Parsed like T-SQL's OPENJSON(...) WITH (...): the function parser consumes `) WITH (` and the
caller's closing-paren match ends the column list. Each dialect subclasses sqlglot's and copies
its lookup tables (sqlglot's own are never edited). On DuckDB `@name` written without a space is
a variable; DuckDB's `@` (absolute value) keeps its meaning everywhere else (`@ x`, `@-5`, `@(x)`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.dialects.spark import Spark
from sqlglot.dialects.tsql import TSQL
from sqlglot.errors import ParseError, TokenError
from sqlglot.generator import Generator
from sqlglot.generators.duckdb import DuckDBGenerator
from sqlglot.generators.spark import SparkGenerator
from sqlglot.generators.tsql import TSQLGenerator
from sqlglot.parser import Parser
from sqlglot.parsers.duckdb import DuckDBParser
from sqlglot.parsers.spark import SparkParser
from sqlglot.parsers.tsql import TSQLParser
from sqlglot.tokens import TokenType

from predictsql.engine.errors import SQLSyntaxError

NAME_TOKENS = (TokenType.VAR, TokenType.IDENTIFIER)
PAREN_DEPTH = {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}  # how a token changes the parenthesis depth


class PredictTable(exp.Expression):
    """PREDICT(...) as a table source; sqlglot's own `Predict` node is BigQuery's ML.PREDICT."""

    arg_types = {"model": True, "data": True, "options": False, "columns": False, "pushed": False}  # pushed: sql/pushdown.py


class Explain(exp.Expression):
    """EXPLAIN <statement> (a query, DML or CREATE TABLE): the statement is planned like any other; `options` (ANALYZE,
    Spark's EXTENDED, DuckDB's (FORMAT json), ...) are kept as written."""

    arg_types = {"this": True, "options": False}


_ANALYZE = "ANALY[SZ]E"
ANALYZE = re.compile(rf"\b{_ANALYZE}\b", re.IGNORECASE)
EXPLAIN_OPTIONS = re.compile(rf"\s*(?:(?:\(\s*(?:FORMAT|{_ANALYZE})\b[^()]*\)|(?:{_ANALYZE}|EXTENDED|CODEGEN|COST|FORMATTED)\b)\s*)*", re.IGNORECASE)


class DescribeModel(exp.Expression):
    """DESCRIBE MODEL <model>: the inputs and outputs of a model, and a WITH clause to paste."""

    arg_types = {"this": True}


def _parse_describe(self: Parser) -> exp.Expr:
    """DESCRIBE MODEL <model>, predictsql's; Spark's DESCRIBE QUERY <query> as DESCRIBE <query>, which it means; else the dialect's DESCRIBE."""
    if self._curr and self._curr.text.upper() == "MODEL":
        self._advance()
        return self.expression(DescribeModel(this=self._parse_bitwise()))
    if self._curr and self._next and self._curr.text.upper() == "QUERY" and self._next.token_type in (TokenType.SELECT, TokenType.WITH, TokenType.FROM, TokenType.L_PAREN):
        self._advance()
    return self._parse_describe()


def _parse_explain(self: Parser) -> exp.Expr:
    """EXPLAIN [options] <statement> as an Explain over the statement's tree (sqlglot reads it as a Command whose text
    is the rest), which reads as the dialect reads it (its syntax errors are the statement's); any other command, and an
    EXPLAIN of a statement that keeps SQL (CREATE VIEW, a macro), stays a Command."""
    if self._prev.text.upper() != "EXPLAIN" or not self._curr or self._curr.token_type != TokenType.STRING:
        return self._parse_command()
    text = self._curr.text
    options = match.end() if (match := EXPLAIN_OPTIONS.match(text)) else 0
    try:
        statements = sqlglot.parse(text[options:], dialect=self.dialect)
    except TokenError as e:
        raise ParseError(str(e)) from None
    explained = statements[0] if len(statements) == 1 else None
    if isinstance(explained, exp.Declare | DescribeModel):  # predictsql's own, which no engine plans
        kind, fix = (
            ("DECLARE", "declare the variable, then EXPLAIN the statement that reads it (DECLARE @m ... ; EXPLAIN SELECT ...)")
            if isinstance(explained, exp.Declare)
            else ("DESCRIBE MODEL", "run DESCRIBE MODEL without EXPLAIN: it reads no DATA")
        )
        self.raise_error(f"EXPLAIN of {kind} is not supported: {fix}")
    if not isinstance(explained, exp.Query | exp.DML | exp.Create) or stores_sql(explained):
        if explained is not None and explained.find(PredictTable):  # a CREATE VIEW keeps SQL: EXPLAIN ANALYZE would keep the rewritten one
            kind = "UNPIVOT" if isinstance(explained, exp.Pivot) and explained.args.get("unpivot") else explained.key.upper()
            fix = "run the statement, then EXPLAIN a query that reads what it made" if kind == "CREATE" else f"EXPLAIN the query inside the {kind}"
            self.raise_error(f"EXPLAIN of {kind} over PREDICT is not supported: {fix}")
        return self._parse_command()
    self._advance()
    return self.expression(Explain(this=explained, options=text[:options].strip()))


def scores(tree: exp.Expr) -> bool:
    """Whether running the statement reads and scores DATA: an EXPLAIN without ANALYZE and a DESCRIBE of a query only plan
    it (DuckDB runs EXPLAIN ANALYZE whatever value the option is given: `(ANALYZE false)` too)."""
    if isinstance(tree, Explain):
        return bool(ANALYZE.search(tree.args.get("options") or ""))
    return not isinstance(tree, exp.Describe)


def stores_sql(tree: exp.Expr) -> bool:
    """Whether the statement creates something the engine keeps as SQL (a view, a macro), not a table of rows."""
    return isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() != "TABLE"


def _explain_sql(self: Generator, expression: Explain) -> str:
    return _explain_text(expression, self.sql(expression, "this"))


def _explain_text(expression: Explain, statement: str) -> str:
    options = expression.args.get("options")
    return f"EXPLAIN {options + ' ' if options else ''}{statement}"


def engine_sql(tree: exp.Expr, dialect: str) -> str:
    """A rewritten statement (no PREDICT left) in the engine's own SQL, which sqlglot's dialect prints; an EXPLAIN's too."""
    if isinstance(tree, Explain):
        return _explain_text(tree, engine_sql(tree.this, dialect))
    return tree.sql(dialect=dialect, copy=False)


def _parse_declare(self: Parser) -> exp.Expr:
    """DECLARE @a TYPE [= value], ...: T-SQL's statement, so TYPE is read as T-SQL's type in every dialect (FLOAT is 8
    bytes, BIT a BOOLEAN; TABLE (…) a Schema, which DECLARE refuses); any other DECLARE (Spark's `DECLARE VARIABLE x`)
    is the dialect's own."""
    if not (self._curr and self._curr.token_type == TokenType.PARAMETER):
        return self._parse_declare()
    items = []
    while self._match(TokenType.PARAMETER):
        name = self._parse_var(any_token=True)
        if name is None:
            self.raise_error("Expected a variable name after @")
        first = last = self._curr
        depth = 0  # DECIMAL(5, 2): a comma inside the type's parentheses is the type's
        while self._curr and (depth or self._curr.token_type not in (TokenType.EQ, TokenType.COMMA, TokenType.SEMICOLON)):
            depth += PAREN_DEPTH.get(self._curr.token_type, 0)
            last = self._curr
            self._advance()
        kind = _declared_type(self.sql[first.start : last.end + 1]) if first is not None and first is not self._curr else None
        default = self._parse_bitwise() if self._match(TokenType.EQ) else None
        items.append(exp.DeclareItem(this=[exp.Parameter(this=name)], kind=kind, default=default))
        if not self._match(TokenType.COMMA):
            break
    if self._curr:
        self.raise_error("Expected ',' or the end of the DECLARE statement")
    return self.expression(exp.Declare(expressions=items))


def _declared_type(text: str) -> exp.DataType | exp.Schema | None:
    """A DECLARE's type as T-SQL reads it; None for one it cannot read (the value keeps its own type)."""
    if text.split("(")[0].strip().upper() == "TABLE":
        return exp.Schema()
    try:  # as a CAST's type, so that all of the text must be the type (DataType.build reads INTEGER[] as INT)
        cast = sqlglot.parse_one(f"CAST(NULL AS {text})", dialect=PredictTSQL)
    except (ParseError, TokenError, ValueError):
        return None
    kind = cast.args.get("to") if isinstance(cast, exp.Cast) else None
    if isinstance(kind, exp.DataType):
        _tsql_types(kind)
    return kind


def _parse_predict(self: Parser) -> PredictTable:
    args: dict[str, exp.Expr] = {}
    options: list[exp.Expr] = []
    while True:
        key_token = self._curr
        key = self._parse_var(any_token=True)
        if key is None or not self._match(TokenType.EQ):
            self.raise_error("Expected <name> = <value> inside PREDICT(...)", key_token)
            break
        name = key.name.upper()
        if name.lower() in args or name in {o.name.upper() for o in options}:
            self.raise_error(f"PREDICT argument {name} is given twice", key_token)
        value = self._parse_bitwise() if name == "MODEL" else self._parse_table() if name == "DATA" else None
        if value is not None:
            args[name.lower()] = value
        elif name not in ("MODEL", "DATA"):
            options.append(exp.EQ(this=exp.var(name), expression=self._parse_primary() or self._parse_var(any_token=True)))
        if not self._match(TokenType.COMMA):
            break
    for required in ("model", "data"):
        if args.get(required) is None:
            self.raise_error(f"PREDICT needs {required.upper()} = ...")
    columns = None
    if self._match_pair(TokenType.R_PAREN, TokenType.WITH):
        self._match_l_paren()
        columns = self._parse_csv(lambda: _parse_predict_column(self))
    return self.expression(PredictTable(model=args["model"], data=args["data"], options=options, columns=columns))


def _parse_predict_column(self: Parser) -> exp.ColumnDef:
    """`<name> <type>` or `<name> <type>[]` (a list column) inside WITH (...)."""
    name = self._parse_field(any_token=True)
    written = self._curr.text.upper() if self._curr else ""
    kind = self._parse_types()
    if not isinstance(kind, exp.DataType):
        self.raise_error("Expected a type after the WITH column name")
        kind = exp.DataType(this=exp.DataType.Type.UNKNOWN)  # raise_error returns only when errors are collected
    if written == "FLOAT" and kind.this == exp.DataType.Type.DOUBLE and not kind.expressions:  # predictsql's FLOAT, 4 bytes, in every dialect (T-SQL reads 8)
        kind = exp.DataType(this=exp.DataType.Type.FLOAT)
    if self._curr and self._curr.token_type == TokenType.IDENTIFIER and not self._curr.text:
        self._advance()  # T-SQL tokenizes `[]` as an empty [bracket-quoted] identifier
        kind = exp.DataType(this=exp.DataType.Type.ARRAY, expressions=[kind], nested=True)
    return self.expression(exp.ColumnDef(this=name, kind=kind))


def _parse_at(self: Parser) -> exp.Expr:
    """DuckDB's `@`: a variable when a name follows it directly (`@model`), else absolute value."""
    after, name = self._prev, self._curr
    if name is not None and name.token_type in NAME_TOKENS and name.start == after.end + 1:
        self._advance()
        return exp.Parameter(this=exp.var(name.text))
    return exp.Abs(this=self._parse_bitwise())


def _predict_sql(self: Generator, expression: PredictTable) -> str:
    args = [f"MODEL = {self.sql(expression, 'model')}", f"DATA = {self.sql(expression, 'data')}"]
    args += [f"{o.name} = {self.sql(o, 'expression')}" for o in expression.args.get("options") or []]
    sql = f"PREDICT({', '.join(args)})"
    columns = expression.args.get("columns")
    if columns:
        sql += f" WITH ({', '.join(_column_sql(self, c) for c in columns)})"
    return sql


def _column_sql(generator: Generator, column: exp.ColumnDef) -> str:
    """A WITH column in predictsql's own type names, the same in every dialect (FLOAT is FLOAT, not T-SQL's or DuckDB's alias)."""
    return f"{generator.sql(column, 'this')} {type_name(column.args['kind'])}"


def type_name(kind: exp.DataType) -> str:
    """'FLOAT', 'BIGINT', … or 'FLOAT[]' for a WITH column type."""
    if kind.this == exp.DataType.Type.ARRAY:
        return f"{type_name(kind.expressions[0])}[]"
    return kind.this.value


def _declare_sql(self: Generator, expression: exp.Declare) -> str:
    items = [f"@{i.this[0].name}" + (f" = {self.sql(i, 'default')}" if i.args.get("default") else "") for i in expression.expressions]
    return f"DECLARE {', '.join(items)}"


def _parse_pivot_statement(self: Parser, is_unpivot: bool | None = None) -> exp.Expr:
    """DuckDB's PIVOT statement, with the ORDER BY and LIMIT DuckDB takes after it (sqlglot stops before them) read as
    the same statement around it: SELECT * FROM (PIVOT ...) ORDER BY ... LIMIT ...."""
    pivot = self._parse_simplified_pivot(is_unpivot)
    if not self._match_set((TokenType.ORDER_BY, TokenType.LIMIT, TokenType.OFFSET), advance=False):
        return pivot
    return self._parse_query_modifiers(exp.select("*").from_(exp.Subquery(this=pivot)))


COMPOUND = {TokenType.PLUS: exp.Add, TokenType.DASH: exp.Sub, TokenType.STAR: exp.Mul, TokenType.SLASH: exp.Div, TokenType.MOD: exp.Mod,
             TokenType.AMP: exp.BitwiseAnd, TokenType.PIPE: exp.BitwiseOr, TokenType.CARET: exp.BitwiseXor}  # fmt: skip


def _parse_set_compound(self: TSQLParser, kind: str | None = None) -> exp.Expr | None:
    """T-SQL's compound assignment SET @x += v (-=, *=, /=, %=, &=, |=, ^=) as SET @x = @x + (v); else sqlglot's SET item."""
    index = self._index
    target = self._parse_primary() or self._parse_column()
    operator = COMPOUND.get(self._curr.token_type) if self._curr else None
    if isinstance(target, exp.Parameter) and operator is not None and self._next is not None and self._next.token_type == TokenType.EQ:
        self._advance(2)
        value = operator(this=target.copy(), expression=exp.Paren(this=self._parse_assignment()))
        return self.expression(exp.SetItem(this=exp.EQ(this=target, expression=value), kind=kind))
    self._retreat(index)
    return TSQLParser._parse_set_item_assignment(self, kind)


def _quiet(self: Parser) -> None:
    """No warning on stderr for a statement sqlglot reads as a Command: predictsql runs it as written, or names the fix."""


TRANSFORMS: dict[type[exp.Expr], Callable[..., str]] = {
    PredictTable: _predict_sql,
    Explain: _explain_sql,
    exp.Parameter: lambda self, e: f"@{self.sql(e, 'this')}",
    DescribeModel: lambda self, e: f"DESCRIBE MODEL {self.sql(e, 'this')}",
}


class PredictDuckDB(DuckDB):
    """DuckDB SQL plus PREDICT, DESCRIBE MODEL, DECLARE and @variables."""

    class Tokenizer(DuckDB.Tokenizer):
        KEYWORDS = {**DuckDB.Tokenizer.KEYWORDS, "DECLARE": TokenType.DECLARE}

    class Parser(DuckDBParser):
        _warn_unsupported = _quiet
        FUNCTION_PARSERS = {**DuckDBParser.FUNCTION_PARSERS, "PREDICT": _parse_predict}
        STATEMENT_PARSERS = {
            **DuckDBParser.STATEMENT_PARSERS,
            TokenType.DESCRIBE: _parse_describe,
            TokenType.DECLARE: _parse_declare,
            TokenType.COMMAND: _parse_explain,
            TokenType.PIVOT: _parse_pivot_statement,
            TokenType.UNPIVOT: lambda self: _parse_pivot_statement(self, is_unpivot=True),
        }
        NO_PAREN_FUNCTION_PARSERS = {**DuckDBParser.NO_PAREN_FUNCTION_PARSERS, "@": _parse_at}

    class Generator(DuckDBGenerator):
        TRANSFORMS = {**DuckDBGenerator.TRANSFORMS, **TRANSFORMS, exp.Declare: _declare_sql}


class PredictSpark(Spark):
    """Spark SQL plus PREDICT, DESCRIBE MODEL, DECLARE @name and @variables."""

    class Parser(SparkParser):
        _warn_unsupported = _quiet
        FUNCTION_PARSERS = {**SparkParser.FUNCTION_PARSERS, "PREDICT": _parse_predict}
        STATEMENT_PARSERS = {**SparkParser.STATEMENT_PARSERS, TokenType.DESCRIBE: _parse_describe, TokenType.DECLARE: _parse_declare, TokenType.COMMAND: _parse_explain}

    class Generator(SparkGenerator):
        TRANSFORMS = {**SparkGenerator.TRANSFORMS, **TRANSFORMS, exp.Declare: _declare_sql}


class PredictTSQL(TSQL):
    """T-SQL plus PREDICT and DESCRIBE MODEL (DECLARE and @variables are T-SQL's own); FLOAT is T-SQL's 8-byte float
    (sqlglot reads it as REAL, 4 bytes: a DOUBLE model fed CAST(x AS FLOAT) was 16 off)."""

    class Tokenizer(TSQL.Tokenizer):
        # GO is a name: a GO alone on its line separates statements (sql/reading.py); as a command it swallowed the script after it
        KEYWORDS = {**{k: v for k, v in TSQL.Tokenizer.KEYWORDS.items() if k != "GO"}, "FLOAT": TokenType.DOUBLE}

    class Parser(TSQLParser):
        _warn_unsupported = _quiet
        FUNCTION_PARSERS = {**TSQLParser.FUNCTION_PARSERS, "PREDICT": _parse_predict}
        STATEMENT_PARSERS = {**TSQLParser.STATEMENT_PARSERS, TokenType.DESCRIBE: _parse_describe, TokenType.COMMAND: _parse_explain}
        _parse_set_item_assignment = _parse_set_compound

    class Generator(TSQLGenerator):
        TRANSFORMS = {**TSQLGenerator.TRANSFORMS, **TRANSFORMS}


DIALECTS: dict[str, type[sqlglot.Dialect]] = {"duckdb": PredictDuckDB, "spark": PredictSpark, "tsql": PredictTSQL}


def with_clause(columns: Sequence[tuple[str, str]], dialect: str = "duckdb") -> str:
    """`WITH (name TYPE, ...)` to paste after PREDICT(...), names quoted where the dialect needs it."""
    generator = DIALECTS[dialect]().generator()
    return f"WITH ({', '.join(_column_sql(generator, exp.ColumnDef(this=exp.to_identifier(n), kind=_type(t))) for n, t in columns)})"


def _type(type_name: str) -> exp.DataType:
    if type_name.endswith("[]"):
        return exp.DataType(this=exp.DataType.Type.ARRAY, expressions=[_type(type_name[:-2])], nested=True)
    return exp.DataType.build(type_name)


_SIZED = {exp.DataType.Type.DOUBLE, *exp.DataType.TEXT_TYPES, exp.DataType.Type.VARBINARY, exp.DataType.Type.BINARY}


def _tsql_types(tree: exp.Expr) -> exp.Expr:
    """T-SQL's types as the engines read them: BIT is BOOLEAN, FLOAT(1-24) REAL, FLOAT(25-53) DOUBLE; a string or binary
    length, MAX included (VARBINARY(MAX), NVARCHAR(MAX)), is dropped, as neither engine's BLOB or TEXT takes one."""
    for kind in tree.find_all(exp.DataType):
        if kind.this == exp.DataType.Type.BIT:
            kind.set("this", exp.DataType.Type.BOOLEAN)  # T-SQL's 0/1 BIT, where DuckDB's BIT is a bit string
        if kind.this not in _SIZED or not kind.expressions:
            continue
        size = kind.expressions[0].this
        if kind.this == exp.DataType.Type.DOUBLE and isinstance(size, exp.Literal) and size.is_int and int(size.this) <= 24:
            kind.set("this", exp.DataType.Type.FLOAT)
        kind.set("expressions", [])
    return tree


def parse(text: str, dialect: str = "duckdb", line_offset: int = 0) -> list[exp.Expr]:
    """Parse statements in one dialect into trees; errors carry line (plus `line_offset`), column and fragment."""
    try:
        trees = [s for s in sqlglot.parse(text, dialect=DIALECTS[dialect]) if s is not None]
        return [_tsql_types(t) for t in trees] if dialect == "tsql" else trees
    except ParseError as e:
        first = e.errors[0] if e.errors else {}
        line, col = first.get("line"), first.get("col")
        line = line + line_offset if line is not None else None
        fragment = f"{first.get('start_context', '')}{first.get('highlight', '')}".strip()
        where = f" at line {line}, column {col}" if line is not None else ""
        description = first.get("description") or str(e)
        raise SQLSyntaxError(f"SQL syntax error{where} (read as {dialect}): {description}\n  near: {fragment}", line, col) from e
    except RecursionError:
        raise SQLSyntaxError(f"SQL statement nests too deeply to read (read as {dialect}): flatten its parentheses or subqueries") from None


def pretty(sql: str, dialect: str) -> str:
    """SQL of a dialect laid out one clause or item a line, for EXPLAIN."""
    return "\n".join(tree.sql(dialect=DIALECTS[dialect], pretty=True) for tree in parse(sql, dialect))


def to_sql(tree: exp.Expr, dialect: str = "duckdb") -> str:
    """Print a tree, PREDICT included, in a dialect (messages, stored view definitions)."""
    return tree.sql(dialect=DIALECTS[dialect])
