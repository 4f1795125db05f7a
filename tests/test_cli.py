"""The `predictsql` console script, run as a subprocess on a real DuckDB file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import expected_scores

CLI = [str(Path(sys.executable).with_name("predictsql"))]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_query_prints_scored_rows(db_path: Path, logreg) -> None:
    done = cli("query", "--db", str(db_path), "SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p ORDER BY d.id LIMIT 3")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split() == ["id", "Score"]
    scores = np.array([float(r.split()[1]) for r in rows])
    np.testing.assert_allclose(scores, expected_scores(logreg)[:3], atol=1e-5)


def test_script_file_and_explain(db_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "score.sql"
    script.write_text("DECLARE @m VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1);\nSELECT count(*) AS n FROM PREDICT(MODEL = @m, DATA = dbo.patients) WITH (Score FLOAT) AS p;\n")
    done = cli("query", "--db", str(db_path), "-f", str(script))
    assert (done.returncode, done.stdout.split()) == (0, ["n", "569"])
    explained = cli("explain", "--db", str(db_path), "-f", str(script))
    assert explained.returncode == 0 and "STREAM model @m" in explained.stdout


def test_errors_are_one_line_and_non_zero(db_path: Path, tmp_path: Path) -> None:
    missing = cli("query", "--db", str(tmp_path / "nope.duckdb"), "SELECT 1")
    assert missing.returncode != 0 and missing.stderr.strip() == f"predictsql: database file '{tmp_path / 'nope.duckdb'}' does not exist"
    bad = cli("query", "--db", str(db_path), "SELECT * FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 7), DATA = patients) AS p")
    assert bad.returncode == 1 and "returned no row" in bad.stderr and "Traceback" not in bad.stderr
    usage = cli("query")
    assert usage.returncode == 2 and "--db" in usage.stderr
