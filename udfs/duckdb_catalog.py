"""The model catalog inside a DuckDB file: versioned ONNX models with their signatures and aliases.

    con.models.register("churn", model, alias="prod")   # → version 1, 2, …
    SELECT ... FROM PREDICT(MODEL = 'catalog:/churn@prod', DATA = customers) AS p

Tables predictsql.models (one row per version; a removed version keeps its row, without bytes,
so its number is never reused) and predictsql.model_aliases (name, alias → version). A
reference is a catalog:/ URI (catalog:/churn, catalog:/churn/2, catalog:/churn@prod): the
scheme keeps it apart from file paths, and it has the shape of MLflow's models:/ URIs.
"""

from __future__ import annotations

import builtins
import contextlib
import re
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa

from predictsql.engine import sessions
from predictsql.engine.errors import ModelSourceError
from predictsql.engine.sources import ModelSource, RegistryRef, Resolve, parse_ref
from predictsql.udfs.describe import describe, signature_rows
from predictsql.udfs.duckdb_engine import in_transaction, own_schema, schema_in
from predictsql.udfs.result import Result

_TENSORS = "STRUCT(name VARCHAR, onnx_type VARCHAR, shape VARCHAR, sql_type VARCHAR)[]"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")  # fullmatch: `$` alone would accept a trailing newline
_DDL = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    f"""CREATE TABLE IF NOT EXISTS {{s}}.models (
        name VARCHAR NOT NULL, version INTEGER NOT NULL, sha256 VARCHAR NOT NULL, size BIGINT NOT NULL,
        created TIMESTAMP NOT NULL, inputs {_TENSORS} NOT NULL, outputs {_TENSORS} NOT NULL,
        model BLOB, removed TIMESTAMP, PRIMARY KEY (name, version))""",
    "CREATE TABLE IF NOT EXISTS {s}.model_aliases (name VARCHAR NOT NULL, alias VARCHAR NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (name, alias))",
)

_TENSOR = pa.list_(pa.struct([(k, pa.string()) for k in ("name", "onnx_type", "shape", "sql_type")]))
LIST_SCHEMA = pa.schema(
    [("name", pa.string()), ("version", pa.int32()), ("aliases", pa.list_(pa.string())), ("sha256", pa.string()), ("size", pa.int64()),
     ("created", pa.timestamp("us")), ("inputs", _TENSOR), ("outputs", _TENSOR)]
)


class ModelCatalog:
    """`con.models`: register, list, describe and remove models stored in the database file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, resolve: Resolve, options: sessions.SessionOptions) -> None:
        self._con = con
        self._resolve = resolve
        self._options = options

    def register(self, name: str, model: object, alias: str | None = None) -> int:
        """Store a model (bytes, a path, a models:/ or catalog:/ URI) as the next version of `name`; returns the version."""
        _check_name(name, "model name")
        if alias is not None:
            _check_name(alias, "alias")
        source = self._resolve(model, f"for catalog model '{name}'" if isinstance(model, (bytes, bytearray)) else f"'{model}'")
        loaded = sessions.load(source, self._options)  # only a valid ONNX model gets in
        inputs, outputs = signature_rows(loaded)
        schema = self._create()
        with self._transaction():
            version = self._rows(schema, "SELECT coalesce(max(version), 0) + 1 FROM {s}.models WHERE name = ?", [name])[0][0]
            self._rows(
                schema,
                "INSERT INTO {s}.models VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?, ?, ?, NULL)",
                [name, version, source.sha256, len(source.data), inputs, outputs, source.data],
            )
            if alias is not None:
                self._rows(schema, "INSERT OR REPLACE INTO {s}.model_aliases VALUES (?, ?, ?)", [name, alias, version])
        return version

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `catalog:/name@alias` at a version (moving it if it pointed elsewhere)."""
        _check_name(alias, "alias")
        self._live(name, version)
        self._query("INSERT OR REPLACE INTO {s}.model_aliases VALUES (?, ?, ?)", [name, alias, version])

    def list(self) -> Result:
        """Every live version: name, version, aliases, sha256, size, created, inputs and outputs."""
        schema = self._schema()
        if schema is None:
            return Result(LIST_SCHEMA.empty_table())
        return Result(self._con.sql(
            f"""SELECT m.name, m.version, coalesce(list(a.alias ORDER BY a.alias) FILTER (WHERE a.alias IS NOT NULL), []) AS aliases,
                       m.sha256, m.size, m.created, m.inputs, m.outputs
                FROM {schema}.models m LEFT JOIN {schema}.model_aliases a ON a.name = m.name AND a.version = m.version
                WHERE m.removed IS NULL
                GROUP BY ALL ORDER BY m.name, m.version"""
        ).to_arrow_table())

    def describe(self, name: str) -> Result:
        """DESCRIBE MODEL for a catalog model: 'churn' (latest), 'churn/2' or 'churn@prod'."""
        source = self.lookup(name if name.startswith("catalog:/") else f"catalog:/{name}")
        return Result(describe(sessions.load(source, self._options), source))

    def remove(self, name: str, version: int | None = None) -> builtins.list[int]:
        """Remove one version, or every version of `name`; their aliases go too. Returns the versions removed."""
        live = [v for (v,) in self._query("SELECT version FROM {s}.models WHERE name = ? AND removed IS NULL ORDER BY version", [name])]
        targets = live if version is None else [self._live(name, version)]
        if not targets:
            raise ModelSourceError(f"the model catalog has no model '{name}'{self._known(name)}")
        with self._transaction():
            self._query("UPDATE {s}.models SET model = NULL, removed = now()::TIMESTAMP WHERE name = ? AND list_contains(?, version)", [name, targets])
            self._query("DELETE FROM {s}.model_aliases WHERE name = ? AND list_contains(?, version)", [name, targets])
        return targets

    def lookup(self, uri: str) -> ModelSource:
        """A catalog:/ URI → the model bytes of the version it names now."""
        ref = parse_ref(uri)
        version = self.version(ref)
        return ModelSource(self._query("SELECT model FROM {s}.models WHERE name = ? AND version = ?", [ref.name, version])[0][0], ref.pinned(version))

    def version(self, ref: RegistryRef) -> int:
        """The live version a reference names: the given one, the alias's target, or the latest."""
        if ref.alias is not None:
            rows = self._query("SELECT version FROM {s}.model_aliases WHERE name = ? AND alias = ?", [ref.name, ref.alias])
            if not rows:
                aliases = [a for (a,) in self._query("SELECT alias FROM {s}.model_aliases WHERE name = ? ORDER BY alias", [ref.name])]
                raise ModelSourceError(f"catalog model '{ref.name}' has no alias '{ref.alias}'{self._known(ref.name)}" + (f"; its aliases: {', '.join(aliases)}" if aliases else ""))
            return rows[0][0]
        if ref.version is not None:
            return self._live(ref.name, ref.version)
        rows = self._query("SELECT max(version) FROM {s}.models WHERE name = ? AND removed IS NULL", [ref.name])
        if not rows or rows[0][0] is None:
            raise ModelSourceError(f"the model catalog has no model '{ref.name}'{self._known(ref.name)}")
        return rows[0][0]

    def _live(self, name: str, version: int) -> int:
        rows = self._query("SELECT removed FROM {s}.models WHERE name = ? AND version = ?", [name, version])
        if not rows:
            raise ModelSourceError(f"the model catalog has no version {version} of model '{name}'{self._known(name)}")
        if rows[0][0] is not None:
            raise ModelSourceError(f"version {version} of catalog model '{name}' was removed at {rows[0][0]:%Y-%m-%d %H:%M:%S}")
        return version

    def _known(self, name: str) -> str:
        """What the catalog does hold, for messages."""
        if self._schema() is None:
            return ": the catalog is empty; add one with con.models.register(name, model) or `predictsql models register`"
        rows = self._query("SELECT name, list(version ORDER BY version) FROM {s}.models WHERE removed IS NULL GROUP BY name ORDER BY name", [])
        held = "; ".join(f"{n} (versions {', '.join(map(str, vs))})" for n, vs in rows)
        return f" (the catalog holds: {held or 'nothing'})"

    def _schema(self) -> str | None:
        """The catalog's schema in the current database, qualified (see own_schema); None until a model is registered there."""
        ((database, exists),) = self._con.execute(
            "SELECT current_database(), EXISTS (SELECT 1 FROM duckdb_tables() WHERE schema_name = 'predictsql' AND table_name = 'models'"
            " AND database_name = current_database())"
        ).fetchall()
        return schema_in(database) if exists else None

    def _create(self) -> str:
        schema = own_schema(self._con)
        for ddl in _DDL:
            self._rows(schema, ddl, [])
        return schema

    def _query(self, query: str, params: builtins.list[object]) -> builtins.list[tuple[Any, ...]]:
        """Rows of a catalog query, its `{s}` the catalog's schema; none while the catalog tables do not exist yet (nothing registered)."""
        schema = self._schema()
        return self._rows(schema, query, params) if schema is not None else []

    def _rows(self, schema: str, query: str, params: builtins.list[object]) -> builtins.list[tuple[Any, ...]]:
        return self._con.execute(query.format(s=schema), params).fetchall()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN … COMMIT, or ROLLBACK when the block raises; inside the user's own transaction, its statements join
        it (DuckDB has no savepoints), so the user's COMMIT or ROLLBACK decides."""
        if in_transaction(self._con):
            yield
            return
        self._con.begin()
        try:
            yield
        except BaseException:
            self._con.rollback()
            raise
        self._con.commit()


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.lower() == "latest":
        raise ModelSourceError(f"{what} {name!r} is not usable in a catalog:/ URI: use letters, digits, '_', '.' or '-', starting with a letter (and not 'latest')")
