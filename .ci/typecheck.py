"""`make check`'s mypy: the packages under the names they install as, plus tests/ and benchmarks/.

setup.cfg maps predictsql.engine to engine/, predictsql.sql to sql/ and predictsql.udfs to udfs/ (package_dir).
mypy cannot follow that: the editable install resolves those names with an import hook, and mypy's
command line names files, not the modules they are. So this reads the mapping from setup.cfg and hands
mypy each package file under its installed module name; the rest is mypy's own command line, and its
settings are [tool.mypy] in pyproject.toml. Extra arguments are mypy options: python .ci/typecheck.py --no-incremental
"""

from __future__ import annotations

import configparser
import os
import sys
import time
from pathlib import Path

from mypy.fscache import FileSystemCache
from mypy.main import process_options, run_build
from mypy.modulefinder import BuildSource
from mypy.util import FancyFormatter, count_stats

ROOT = Path(__file__).resolve().parent.parent
UNPACKAGED = [".ci", "benchmarks", "tests"]  # folders of top-level modules, which mypy names itself


def package_sources() -> list[BuildSource]:
    """Every module of every package in setup.cfg, at the path its package_dir gives it (resolved as setuptools does)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    options = config["options"]
    mapping = dict(line.replace(" ", "").split("=", 1) for line in options.get("package_dir", "").strip().splitlines())
    sources = []
    for package in options["packages"].split():
        parent = max((k for k in mapping if k in ("", package) or package.startswith(k + ".")), key=len, default="")
        folder = Path(mapping.get(parent, ""), *package[len(parent) :].lstrip(".").split("."))  # pathlib drops an empty last part
        for path in sorted(folder.glob("*.py")):
            sources.append(BuildSource(str(path), package if path.stem == "__init__" else f"{package}.{path.stem}"))
    return sources


def main() -> int:
    """What mypy's main() does, less --install-types: main() is compiled, so it cannot be handed other sources."""
    os.chdir(ROOT)  # pyproject.toml's [tool.mypy]; paths in messages relative to the project
    start, fscache = time.time(), FileSystemCache()
    sources, options = process_options([*sys.argv[1:], *UNPACKAGED], fscache=fscache)
    sources = package_sources() + sources
    _, messages, blockers = run_build(sources, options, fscache, start, sys.stdout, sys.stderr)  # prints the messages
    formatter = FancyFormatter(sys.stdout, sys.stderr, options.hide_error_codes)
    errors, _, files = count_stats(messages)
    if errors:
        print(formatter.format_error(errors, files, len(sources), blockers=blockers, use_color=options.color_output))
    else:
        print(formatter.format_success(len(sources), options.color_output))
    return (2 if blockers else 1) if errors else 0


if __name__ == "__main__":
    sys.exit(main())
