"""How a script is read: which statements are the host engine's own SQL, and in which dialect to parse the rest.

The rule, decided from tokens, never from substrings:
- A statement with no PREDICT(, DECLARE @, DESCRIBE MODEL, @variable, stored PREDICT view name
  or T-SQL-only form is the host's own SQL and runs exactly as written (`tree` is None).
- A statement with a T-SQL-only form (`#temp`, `TOP n`, `[bracketed]` table names, a `dbo.`
  prefix) is read as T-SQL; any other is read as the host's SQL plus PREDICT, and as T-SQL only
  when the host's grammar cannot read it (`VARBINARY(MAX)` in a CAST, `SELECT … INTO`, …).
- `dialect=` overrides: "tsql" reads every statement as T-SQL; the host's name never falls back.
- A script no tokenizer can split (an unterminated string) goes to the engine as written, whose
  own parser reports the error.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from predictsql.engine.errors import BindError, SQLSyntaxError
from predictsql.sql.dialect import COMPOUND, DIALECTS, NAME_TOKENS, PAREN_DEPTH, PredictTable, parse
from predictsql.sql.rewrite import names_default_schema
from predictsql.sql.tsql import adapt

TSQL = "tsql"
HOSTS = ("duckdb", "spark")
KEPT_SCRIPT_CHARS = 65_536  # longer scripts (a bulk INSERT) are parsed each time rather than kept
_TABLE_KEYWORDS = (TokenType.FROM, TokenType.JOIN, TokenType.INTO, TokenType.TABLE, TokenType.UPDATE, TokenType.DOT)


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text, its tree (None: the host's own SQL, run as written) and its reading."""

    text: str
    tree: exp.Expr | None
    reading: str  # "duckdb", "spark", "tsql", or "host" for SQL run as written

    @functools.cached_property
    def names_default_schema(self) -> bool:
        """Whether the tree names a `dbo.` table, which an adapter maps (sql/rewrite.py): asked once of a kept reading."""
        return self.tree is not None and names_default_schema(self.tree)


def read(script: str, host: str, dialect: str | None = None, views: Collection[str] = ()) -> tuple[Statement, ...]:
    """The statements of `script` as the engine `host` will run them; `views` are the stored PREDICT view names.
    A short script read before is not parsed again: its trees are shared, so a caller copies one before changing it."""
    if dialect not in (None, host, TSQL):
        raise BindError(f"dialect = {dialect!r} is not one predictsql reads on {host}: use {host!r}, 'tsql' or None (the default: {host} SQL, T-SQL where only T-SQL reads a statement)")
    names = frozenset(v.lower() for v in views)
    return _read_kept(script, host, dialect, names) if len(script) <= KEPT_SCRIPT_CHARS else _read(script, host, dialect, names)


@functools.lru_cache(maxsize=256)
def _read_kept(script: str, host: str, dialect: str | None, views: frozenset[str]) -> tuple[Statement, ...]:
    """A short script's reading, kept: parsing it again cost a warm 1-row PREDICT 1.5 ms."""
    return _read(script, host, dialect, views)


def _read(script: str, host: str, dialect: str | None, views: frozenset[str]) -> tuple[Statement, ...]:
    splitter = TSQL if dialect == TSQL else host
    try:
        tokens = _tokens(script, splitter)
    except SQLSyntaxError:
        if dialect is not None:
            raise
        try:
            splitter, tokens = TSQL, _tokens(script, TSQL)
        except SQLSyntaxError:  # neither reads it: the engine's own parser says what is wrong
            return (Statement(script, None, "host"),)
    names = set(views)
    statements: list[Statement] = []
    for chunk in _split(tokens):
        if _nocount(chunk):
            continue
        text = script[chunk[0].start : chunk[-1].end + 1]
        offset = script.count("\n", 0, chunk[0].start)
        if dialect == TSQL or (splitter == TSQL and dialect is None) or (dialect is None and _tsql_only(chunk)):
            read_as = [Statement(text, tree, TSQL) for tree in _parse_tsql(text, host, offset)]
            if any(isinstance(s.tree, exp.Command) for s in read_as):
                _refuse_unseparated(chunk)
        elif not _needs_predictsql(_explained_tokens(chunk, splitter), names):
            read_as = [Statement(text, None, "host")]
        else:
            read_as = [Statement(text, tree, reading) for tree, reading in _parse_host(text, host, dialect, offset)]
        for statement in read_as:
            _refuse_procedural(statement)
            _track_views(statement.tree, names)
        statements += read_as
    return tuple(statements)


def _track_views(tree: exp.Expr | None, names: set[str]) -> None:
    """A view of PREDICT that a statement creates is read as one by the statements after it (and no more once dropped)."""
    kind = str(tree.args.get("kind", "")).upper() if tree is not None else ""
    if isinstance(tree, exp.Create) and kind == "VIEW":
        reads_predict = tree.find(PredictTable) is not None or any(t.name.lower() in names for t in tree.expression.find_all(exp.Table))
        (names.add if reads_predict else names.discard)(tree.this.name.lower())
    elif isinstance(tree, exp.Drop) and kind == "VIEW":
        names.difference_update(t.name.lower() for t in tree.args.get("tables") or [])


def _parse_host(text: str, host: str, dialect: str | None, offset: int) -> list[tuple[exp.Expr, str]]:
    """The host's reading; T-SQL's when the host cannot read the statement and no dialect was given."""
    try:
        return [(tree, host) for tree in parse(text, host, offset)]
    except SQLSyntaxError as host_error:
        if dialect is not None:
            raise
        try:
            trees = _parse_tsql(text, host, offset)
        except SQLSyntaxError:
            raise host_error from None
        if any(isinstance(tree, exp.Command) for tree in trees):  # T-SQL cannot read it either: the host's error says why
            raise host_error from None
        return [(tree, TSQL) for tree in trees]


def _parse_tsql(text: str, host: str, offset: int) -> list[exp.Expr]:
    """T-SQL statements as `host` should run them (TOP … PERCENT, WITH TIES, FOR JSON: sql/tsql.py)."""
    return [adapt(tree, host) for tree in parse(text, TSQL, offset)]


def _tokens(script: str, dialect: str) -> list[Token]:
    try:
        return DIALECTS[dialect]().tokenize(script)
    except TokenError as e:
        raise SQLSyntaxError(f"SQL syntax error (read as {dialect}): {e}") from None


def _split(tokens: list[Token]) -> list[list[Token]]:
    """Statements are the runs of tokens between semicolons, or T-SQL batches' GO lines."""
    chunks: list[list[Token]] = [[]]
    for i, token in enumerate(tokens):
        if token.token_type == TokenType.SEMICOLON or _go(tokens, i):
            chunks.append([])
        else:
            chunks[-1].append(token)
    return [c for c in chunks if c]


def _go(tokens: list[Token], i: int) -> bool:
    """Whether token i is the batch separator of SSMS and sqlcmd: GO alone on its line (a column named go alone on a
    line must then be quoted). Batches do not scope variables here: a script is one batch."""
    token = tokens[i]
    if token.token_type not in (TokenType.VAR, TokenType.COMMAND) or token.text.upper() != "GO":
        return False
    return (i == 0 or tokens[i - 1].line < token.line) and (i + 1 == len(tokens) or tokens[i + 1].line > token.line)


_STARTS = frozenset({"SELECT", "DECLARE", "SET", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "MERGE", "EXEC", "EXECUTE", "WITH"})


def _refuse_unseparated(chunk: list[Token]) -> None:
    """T-SQL lets statements follow each other without ';', which sqlglot reads as one unknown command: where a line of
    the chunk starts another statement, an SQLSyntaxError that says to separate them (else the host's own error)."""
    depth = 0
    for before, token, _ in _neighbours(chunk):
        depth += PAREN_DEPTH.get(token.token_type, 0)
        if before is not None and before.line < token.line and depth == 0 and token.text.upper() in _STARTS:
            message = f"SQL syntax error at line {token.line} (read as tsql): it starts another statement; end each statement with ';' (or a GO line)"
            raise SQLSyntaxError(message, token.line, token.col)


_PROCEDURAL = {  # T-SQL's procedural statements, which neither engine runs: what to write instead
    "IF": "run the branch from Python (if …: con.sql(…)), or choose values in a query with CASE WHEN or IIF",
    "WHILE": "loop in Python around con.sql(…), or compute the rows in one query (range(), a recursive CTE)",
    "EXEC": "run the procedure's statements themselves (DuckDB has macros, Spark functions, for what a procedure computes)",
    "BEGIN": "run the block's statements one by one, and catch predictsql.PredictSQLError in Python where T-SQL would CATCH",
    "PRINT": "SELECT the value instead",
}


def _refuse_procedural(statement: Statement) -> None:
    """IF, WHILE, EXEC, BEGIN … END (and TRY/CATCH) and PRINT: an SQLSyntaxError that names the statement and what to
    write instead (sqlglot reads them, but no engine runs them; DuckDB's own EXECUTE of a prepared statement is its own)."""
    tree, tsql = statement.tree, statement.reading == TSQL
    command = tree.name.upper() if isinstance(tree, exp.Command) and tsql else ""
    word = "IF" if isinstance(tree, exp.IfBlock) else "WHILE" if isinstance(tree, exp.WhileBlock) else "EXEC" if isinstance(tree, exp.Execute) and tsql else command
    if word in _PROCEDURAL:
        raise SQLSyntaxError(f"T-SQL's {word} statement is not supported: predictsql runs one statement at a time; {_PROCEDURAL[word]}")


def _nocount(chunk: list[Token]) -> bool:
    """T-SQL's SET NOCOUNT ON|OFF, which only silences SQL Server's row-count messages: nothing to run here."""
    return [t.text.upper() for t in chunk] in (["SET", "NOCOUNT", "ON"], ["SET", "NOCOUNT", "OFF"])


def _needs_predictsql(tokens: list[Token], views: set[str]) -> bool:
    """Whether a statement uses anything of predictsql's: PREDICT(, DECLARE @, DESCRIBE MODEL, @name, a PREDICT view, dbo."""
    for before, token, after in _neighbours(tokens):
        word = token.text.upper()
        if word == "PREDICT" and after is not None and after.token_type == TokenType.L_PAREN:
            return True
        if token.token_type == TokenType.PARAMETER and token.text == "@" and after is not None and after.token_type in NAME_TOKENS and after.start == token.end + 1:
            return True
        if word == "MODEL" and before is not None and before.token_type == TokenType.DESCRIBE and before is tokens[0]:
            return True
        if token.token_type in NAME_TOKENS and (token.text.lower() in views or (word == "DBO" and after is not None and after.token_type == TokenType.DOT)):
            return True
    return False


def _explained_tokens(tokens: list[Token], dialect: str) -> list[Token]:
    """The tokens of the statement an EXPLAIN explains (the tokenizer keeps it as one string), else `tokens`."""
    if len(tokens) == 2 and tokens[0].token_type == TokenType.COMMAND and tokens[0].text.upper() == "EXPLAIN" and tokens[1].token_type == TokenType.STRING:
        try:
            return _tokens(tokens[1].text, dialect)
        except SQLSyntaxError:
            return tokens
    return tokens


def _tsql_only(tokens: list[Token]) -> bool:
    """T-SQL forms no host reads: `#temp` names, `SELECT TOP n`, `[bracketed]` table names, CROSS / OUTER APPLY, and
    `DELETE t FROM …` (the hosts' DELETE is followed by FROM), the procedural IF, WHILE, EXEC, PRINT, BEGIN TRY, and
    compound assignment (SET @x += 1)."""
    if len(tokens) > 1 and tokens[0].token_type == TokenType.DELETE and tokens[1].token_type in NAME_TOKENS:
        return True
    if tokens and (tokens[0].text.upper() in ("IF", "WHILE", "EXEC", "PRINT") or [t.text.upper() for t in tokens[:2]] == ["BEGIN", "TRY"]):
        return True
    if len(tokens) > 4 and tokens[0].token_type == TokenType.SET and tokens[1].text == "@" and tokens[3].token_type in COMPOUND and tokens[4].token_type == TokenType.EQ:
        return True  # SET @x += 1
    for before, token, after in _neighbours(tokens):
        if token.token_type == TokenType.APPLY and before is not None and before.token_type in (TokenType.CROSS, TokenType.OUTER):
            return True
        if token.token_type == TokenType.HASH and after is not None and after.token_type in NAME_TOKENS and after.start == token.end + 1:
            return True
        if token.text.upper() == "TOP" and before is not None and before.token_type in (TokenType.SELECT, TokenType.DISTINCT):
            return True
        if token.token_type == TokenType.L_BRACKET and before is not None and before.token_type in _TABLE_KEYWORDS:
            return True
    return False


def _neighbours(tokens: list[Token]) -> Iterator[tuple[Token | None, Token, Token | None]]:
    """Each token with the one before and the one after it (None at the ends)."""
    return zip([None, *tokens[:-1]], tokens, [*tokens[1:], None], strict=True)
