"""The `predictsql` console script, run as a subprocess on a real DuckDB file and a real sqlite MLflow registry."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import Fitted, expected_scores

CLI = [str(Path(sys.executable).with_name("predictsql"))]
SCORES = "SELECT d.id, p.Score FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 1), DATA = patients AS d) WITH (Score FLOAT) AS p ORDER BY d.id"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=180, cwd=cwd)


def test_query_prints_an_aligned_table(db_path: Path, logreg: Fitted) -> None:
    done = cli("query", "--db", str(db_path), SCORES + " LIMIT 3")
    assert done.returncode == 0, done.stderr
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in done.stdout.splitlines() if line.startswith("│")]
    assert cells[:2] == [["id", "Score"], ["int64", "float"]]  # DuckDB's box: names, then types
    np.testing.assert_allclose([float(score) for _, score in cells[2:]], expected_scores(logreg)[:3], atol=1e-5)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_query_output_formats(db_path: Path, tmp_path: Path, logreg: Fitted, fmt: str) -> None:
    out = tmp_path / f"scores.{fmt}"
    done = cli("query", "--db", str(db_path), SCORES, "--format", fmt, "--out", str(out))
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    if fmt == "csv":
        rows = [(int(r["id"]), float(r["Score"])) for r in csv.DictReader(io.StringIO(out.read_text()))]
    elif fmt == "json":
        rows = [(r["id"], r["Score"]) for r in json.loads(out.read_text())]
    else:
        table = pq.read_table(out)
        rows = list(zip(table.column("id").to_pylist(), table.column("Score").to_pylist(), strict=True))
    assert [i for i, _ in rows] == list(range(569))
    np.testing.assert_allclose([s for _, s in rows], expected_scores(logreg), atol=1.5e-5)


def test_csv_and_json_go_to_stdout_without_out(db_path: Path, logreg: Fitted) -> None:
    as_csv = cli("query", "--db", str(db_path), SCORES + " LIMIT 2", "--format", "csv")
    assert as_csv.stdout.splitlines()[0] == "id,Score"
    as_json = json.loads(cli("query", "--db", str(db_path), SCORES + " LIMIT 2", "--format", "json").stdout)
    np.testing.assert_allclose([r["Score"] for r in as_json], expected_scores(logreg)[:2], atol=1.5e-5)


def test_progress_shows_on_stderr_for_a_long_query(tmp_path: Path) -> None:
    done = cli("query", "SELECT sum(hash(i)) AS h FROM range(300000000) t(i)", "--format", "csv", "--progress-after", "0")
    assert done.returncode == 0 and done.stdout.startswith("h\n")
    assert done.stderr.startswith("predictsql: running 0 s"), done.stderr
    quick = cli("query", "SELECT 1 AS one", "--format", "csv")
    assert (quick.stdout, quick.stderr) == ("one\n1\n", "")


CHATTER = """
import logging, os, sys, threading, time, warnings
from predictsql import cli

logging.basicConfig(stream=sys.stderr, format="LOG %(message)s")  # a handler that holds the stream, as libraries' do


def chatter() -> None:
    time.sleep(1.0)
    logging.getLogger("library").warning("from a Python library")
    os.write(2, b"from a native library\\n")
    warnings.warn("a warning")


threading.Thread(target=chatter, daemon=True).start()
sys.exit(cli.main(["query", "SELECT sum(hash(i)) AS h FROM range(1500000000) t(i)", "--format", "csv", "--progress-after", "0"]))
"""


def _screen(output: bytes) -> list[str]:
    """The lines a terminal shows for `output`: carriage return, erase to the end of the line, newline."""
    lines: list[str] = []
    line: list[str] = []
    column = 0
    for token in re.split(rb"(\r|\n|\x1b\[K)", output):
        if token == b"\r":
            column = 0
        elif token == b"\x1b[K":
            del line[column:]
        elif token == b"\n":
            lines.append("".join(line))
            line, column = [], 0
        else:
            text = token.decode()
            line[column : column + len(text)] = list(text)
            column += len(text)
    return lines + ["".join(line)]


def test_on_a_terminal_log_lines_never_land_inside_the_progress_line(tmp_path: Path) -> None:
    """Under a pseudo-terminal, a logging handler, a native write to fd 2 and a warning each get lines of their own."""
    script = tmp_path / "chatter.py"
    script.write_text(CHATTER)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, str(script)])
    output = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(fd, 65536):
            output += chunk
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    screen = _screen(output.replace(b"\r\n", b"\n"))  # the terminal's own newline translation
    assert "predictsql: running 0 s" in output.decode()
    for line in ("LOG from a Python library", "from a native library"):
        assert line in screen, screen
    assert any(s.endswith("UserWarning: a warning") for s in screen), screen
    assert screen[screen.index("h") + 1].isdigit(), screen  # the CSV result, after the progress line was erased


def test_script_file_and_explain(db_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "score.sql"
    script.write_text("DECLARE @m VARBINARY(MAX) = (SELECT model FROM models WHERE id = 1);\nSELECT count(*) AS n FROM PREDICT(MODEL = @m, DATA = dbo.patients) WITH (Score FLOAT) AS p;\n")
    done = cli("query", "--db", str(db_path), "-f", str(script), "--format", "csv")
    assert (done.returncode, done.stdout.split()) == (0, ["n", "569"])
    explained = cli("explain", "--db", str(db_path), "-f", str(script))
    assert explained.returncode == 0 and "UDF model @m" in explained.stdout and "DATA has at most 569 rows" in explained.stdout and "-- read as duckdb" in explained.stdout
    tsql = cli("query", "--db", str(db_path), "--dialect", "tsql", "SELECT TOP 2 id FROM patients ORDER BY id", "--format", "csv")
    assert (tsql.returncode, tsql.stdout.split()) == (0, ["id", "0", "1"])


def test_models_in_the_catalog(db_path: Path, tmp_path: Path, logreg: Fitted) -> None:
    model = tmp_path / "churn.onnx"
    model.write_bytes(logreg.onnx)
    assert cli("models", "register", "churn", str(model), "--db", str(db_path), "--alias", "prod").stdout == "registered catalog:/churn/1 (alias prod)\n"
    assert cli("models", "register", "churn", str(model), "--db", str(db_path)).stdout == "registered catalog:/churn/2\n"
    listed = list(csv.DictReader(io.StringIO(cli("models", "list", "--db", str(db_path), "--format", "csv").stdout)))
    assert [(r["name"], r["version"], r["aliases"]) for r in listed] == [("churn", "1", "[prod]"), ("churn", "2", "[]")]
    described = list(csv.reader(io.StringIO(cli("models", "describe", "churn/2", "--db", str(db_path), "--format", "csv").stdout)))
    assert described[1][:2] == ["model", "'catalog:/churn/2'"] and described[-1][-1].startswith("WITH (label BIGINT")
    scored = cli("query", "--db", str(db_path), SCORES.replace("(SELECT model FROM models WHERE id = 1)", "'catalog:/churn@prod'"), "--format", "csv")
    np.testing.assert_allclose([float(r["Score"]) for r in csv.DictReader(io.StringIO(scored.stdout))], expected_scores(logreg), atol=1.5e-5)
    assert cli("models", "remove", "churn", "--db", str(db_path)).stdout == f"removed churn versions 1, 2 from the catalog of {db_path}\n"
    not_onnx, fresh = tmp_path / "notes.txt", tmp_path / "fresh.duckdb"
    not_onnx.write_text("not a model")
    failed = cli("models", "register", "churn", str(not_onnx), "--db", str(fresh))
    assert failed.returncode == 1 and not fresh.exists()  # no empty database left behind
    empty = cli("models", "register", "churn", str(model), "--db", str(fresh), "--columns", "a,,b")
    assert empty.returncode == 1 and "has an empty name" in empty.stderr and not fresh.exists()


def test_models_in_mlflow(mlflow_uri: str, tmp_path: Path, logreg: Fitted) -> None:
    model = tmp_path / "churn.onnx"
    model.write_bytes(logreg.onnx)
    name = f"cli_{tmp_path.name[-12:]}".replace("-", "_")
    done = cli("models", "register", name, str(model), "--registry", mlflow_uri, "--alias", "prod")
    assert done.stdout == f"registered models:/{name}/1 (alias prod)\n", done.stderr
    fresh = cli("models", "register", name, str(model), "--registry", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert (fresh.stdout, fresh.stderr) == (f"registered models:/{name}/1\n", "")  # MLflow's "Creating initial MLflow database tables..." stays quiet
    listed = [r for r in csv.DictReader(io.StringIO(cli("models", "list", "--registry", mlflow_uri, "--format", "csv").stdout)) if r["name"] == name]
    assert [(r["version"], r["aliases"]) for r in listed] == [("1", "[prod]")]
    described = list(csv.reader(io.StringIO(cli("models", "describe", f"models:/{name}@prod", "--registry", mlflow_uri, "--format", "csv").stdout)))
    assert described[1][1] == f"'models:/{name}@prod' (version 1)"
    assert cli("models", "remove", name, "--registry", mlflow_uri).stdout == f"removed {name} version 1 from MLflow registry {mlflow_uri}\n"
    gone = cli("models", "describe", f"models:/{name}/1", "--registry", mlflow_uri)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "not found" in gone.stderr


def test_errors_are_one_line_and_non_zero(db_path: Path, tmp_path: Path) -> None:
    missing = cli("explain", "--db", str(tmp_path / "nope.duckdb"), "SELECT 1")
    assert missing.returncode != 0 and missing.stderr.strip() == f"predictsql: database file '{tmp_path / 'nope.duckdb'}' does not exist"
    bad = cli("query", "--db", str(db_path), "SELECT * FROM PREDICT(MODEL = (SELECT model FROM models WHERE id = 7), DATA = patients) AS p")
    assert bad.returncode == 1 and "returned no row" in bad.stderr and "Traceback" not in bad.stderr
    unknown = cli("models", "describe", "churn@prod", "--db", str(db_path))
    assert (unknown.returncode, unknown.stderr.count("\n")) == (1, 1) and "has no alias 'prod'" in unknown.stderr
    no_file = cli("models", "describe", str(tmp_path / "missing.onnx"))
    assert no_file.returncode == 1 and f"model file '{tmp_path / 'missing.onnx'}' not found" in no_file.stderr  # not "a catalog model: add --db"
    no_out = cli("query", "SELECT 1", "--format", "parquet")
    assert no_out.returncode == 1 and no_out.stderr == "predictsql: --format parquet writes a file: add --out FILE\n"
    for usage in (cli("query"), cli("models", "list"), cli("models", "register", "churn")):
        assert usage.returncode == 2 and "usage:" in usage.stderr
    table_out = cli("query", "--db", str(tmp_path / "written.duckdb"), "CREATE TABLE audit AS SELECT 1 AS x", "--format", "table", "--out", str(tmp_path / "t.txt"))
    assert table_out.returncode == 1 and table_out.stderr.startswith("predictsql: --format table prints to the terminal")
    assert not (tmp_path / "written.duckdb").exists()  # refused before the script ran


def test_json_nulls_non_finite_numbers_in_sliced_nested_arrays() -> None:
    """Arrow slices of lists, maps and structs keep their parent's offsets and values: each slice is made finite where it lies."""
    from predictsql.cli import _finite

    nan, inf = float("nan"), float("inf")
    arrays = {
        "list": pa.array([[1.0, nan], None, [inf, 2.0], [3.0]]),
        "large list": pa.array([[1.0, nan], None, [inf, 2.0], [3.0]], pa.large_list(pa.float32())),
        "fixed list": pa.array([[1.0, nan], None, [inf, 2.0], [3.0, 4.0]], pa.list_(pa.float64(), 2)),
        "struct": pa.array([{"a": 1.0, "b": [nan]}, None, {"a": inf, "b": None}, {"a": 3.0, "b": [4.0]}]),
        "map": pa.array([[("k", nan)], None, [("j", 2.0), ("i", inf)], [("h", 3.0)]], pa.map_(pa.string(), pa.float64())),
    }
    for kind, array in arrays.items():
        for start, length in [(0, 4), (1, 3), (2, 2), (2, 1), (3, 1)]:
            part = array.slice(start, length)
            want = json.loads(json.dumps(part.to_pylist()).replace("NaN", "null").replace("Infinity", "null"))  # json writes them bare
            finite = _finite(part)
            assert finite.type == part.type and json.loads(json.dumps(finite.to_pylist(), allow_nan=False)) == want, (kind, start, length)


def test_a_reader_that_closes_early_stops_the_query_quietly() -> None:
    """`predictsql query … | head` ends as cat does there: SIGPIPE's status, nothing on stderr."""
    pipeline = f"{' '.join(CLI)} query 'SELECT * FROM range(2000000)' --format csv | head -2; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(pipeline, shell=True, executable="bash", capture_output=True, text=True, timeout=180)
    assert (done.returncode, done.stdout, done.stderr) == (141, "range\n0\n", "")


def test_json_writes_a_non_finite_number_as_null(tmp_path: Path) -> None:
    """JSON has no NaN or Infinity (DuckDB wrote them bare, which no JSON reader takes)."""
    done = cli("query", "SELECT 1 AS id, 'nan'::DOUBLE AS a, 'inf'::FLOAT AS b, 2.5::DOUBLE AS c", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"id": 1, "a": None, "b": None, "c": 2.5}]
    nested = "SELECT i, [1.5, 'nan'::DOUBLE] AS l, {'p': ['-inf'::FLOAT], 'q': 'nan'::DOUBLE} AS s, MAP {'k': 'inf'::DOUBLE} AS m, [2.5::DOUBLE, 'nan']::DOUBLE[2] AS a FROM range(3000) t(i)"
    done = cli("query", nested + " WHERE i IN (0, 2999)", "--format", "json")  # rows of two of DuckDB's vectors
    assert done.returncode == 0, done.stderr
    row = {"l": [1.5, None], "s": {"p": [None], "q": None}, "m": {"k": None}, "a": [2.5, None]}
    assert json.loads(done.stdout) == [{"i": 0, **row}, {"i": 2999, **row}]


def test_query_creates_the_database_it_is_pointed_at(tmp_path: Path) -> None:
    """As `duckdb FILE` does; explain and models still want an existing file (test_errors_are_one_line_and_non_zero)."""
    path = tmp_path / "new.duckdb"
    assert cli("query", "--db", str(path), "CREATE TABLE t AS SELECT 42 AS answer").returncode == 0
    done = cli("query", "--db", str(path), "SELECT * FROM t", "--format", "csv")
    assert (done.returncode, done.stdout) == (0, "answer\n42\n")


def test_help_and_import_load_no_engine() -> None:
    """`predictsql --help` and `import predictsql` import neither onnx, onnxruntime nor duckdb: they load on first use."""
    probe = "import sys, predictsql, predictsql.cli; print(sorted({'onnx', 'onnxruntime', 'duckdb', 'pyarrow', 'sqlglot'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip() == "[]", loaded.stderr
    assert cli("--help").returncode == 0
    used = subprocess.run([sys.executable, "-c", "import sys, predictsql; predictsql.connect; print('duckdb' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert used.stdout.strip() == "True"
