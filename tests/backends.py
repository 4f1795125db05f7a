"""One face for both engines, so one suite runs every shared case on DuckDB and on Spark."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

import predictsql


class DuckDBBackend:
    name = "duckdb"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.con = predictsql.connect(str(path))

    def load(self, name: str, frame: pd.DataFrame) -> None:
        self.con.duckdb.register("__frame", frame)
        self.con.duckdb.sql(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __frame")
        self.con.duckdb.unregister("__frame")

    def execute(self, sql: str) -> None:
        """Plain engine SQL (no PREDICT), e.g. to create a table or view for a test."""
        self.con.duckdb.sql(sql)

    def query(self, sql: str) -> pd.DataFrame:
        """The rows of plain engine SQL, run by the engine alone."""
        return self.con.duckdb.sql(sql).df()

    @property
    def target(self) -> object:
        """What predictsql.register takes: the predictsql connection."""
        return self.con

    def sql(self, text: str, params: Mapping[str, object] | None = None) -> pd.DataFrame | None:
        result = self.con.sql(text, params=params)
        return None if result is None else result.df()

    def close(self) -> None:
        self.con.close()


class SparkBackend:
    name = "spark"

    def __init__(self, spark) -> None:
        from predictsql.udfs import spark as ps

        self.spark = spark
        self.ps = ps
        self._tables: list[str] = []

    def load(self, name: str, frame: pd.DataFrame) -> None:
        self.spark.createDataFrame(frame).createOrReplaceTempView(name)

    def execute(self, sql: str) -> None:
        sql = sql.replace("CREATE VIEW", "CREATE OR REPLACE TEMP VIEW")
        if sql.upper().startswith("CREATE TABLE") and " AS " not in sql.upper():
            sql += " USING parquet"
            self._tables.append(sql.split()[2])
        self.spark.sql(sql)

    def query(self, sql: str) -> pd.DataFrame:
        return self.spark.sql(sql).toPandas()

    @property
    def target(self) -> object:
        return self.spark

    def sql(self, text: str, params: Mapping[str, object] | None = None) -> pd.DataFrame | None:
        with self.ps.errors():
            frame = self.ps.sql(self.spark, text, params=params)
            return None if frame is None else frame.toPandas()

    def close(self) -> None:
        for table in self._tables + ["scores2", "scores3"]:
            self.spark.sql(f"DROP TABLE IF EXISTS {table}")
        for view in self.spark.catalog.listTables():
            if view.isTemporary:
                self.spark.catalog.dropTempView(view.name)
