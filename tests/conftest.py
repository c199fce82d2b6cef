"""Shared test fixtures: locating the real DIALS files shipped with the repository."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

TESTS_DATA = Path(__file__).parent / "data"
PACKAGE_DATA = Path(__file__).parent.parent / "dials_refl_stats" / "data"

HAVE_DIALS = importlib.util.find_spec("dials") is not None
needs_dials = pytest.mark.skipif(not HAVE_DIALS, reason="DIALS is not installed")


def load_script(relative: str, name: str):
    """A script of the repository (``benchmarks/fuzz_programs.py``, ``docs/generate.py``)
    imported as module ``name``, registered in ``sys.modules`` (dataclasses look their
    module up there)."""
    path = Path(__file__).resolve().parent.parent / relative
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def data_path(relative: str) -> Path:
    """Path of a shipped data file, e.g. ``"sim_small/indexed.refl"``."""
    for root in (TESTS_DATA, PACKAGE_DATA):
        candidate = root / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(relative)


def split_stills(relative: str, folder: Path, copies: int = 1, edit=None) -> Path:
    """One file per still of the shipped table ``relative`` in ``folder`` (made), cut by
    DIALS's ``select`` and ``as_file``: ``still_<i>.refl``, or ``still_<copy>_<i>.refl``
    for several copies. ``edit(i, still)`` may change a still's table before it is
    written (with DIALS's flex API)."""
    from dials.array_family import flex

    folder.mkdir(parents=True, exist_ok=True)
    table = flex.reflection_table.from_file(str(data_path(relative)))
    for copy in range(copies):
        for i in range(len(table.experiment_identifiers())):
            still = table.select(table["id"] == i)
            if edit is not None:
                edit(i, still)
            name = f"still_{i}.refl" if copies == 1 else f"still_{copy}_{i}.refl"
            still.as_file(str(folder / name))
    return folder


@pytest.fixture
def data():
    """Fixture form of :func:`data_path`."""
    return data_path


def program_path(program: str) -> str:
    """The installed console script ``dials.<program>`` beside the running Python."""
    beside = Path(sys.executable).parent / f"dials.{program}"
    if beside.exists():
        return str(beside)
    found = shutil.which(f"dials.{program}")
    if found is None:
        pytest.fail(f"dials.{program} is not installed (run 'make test')")
    return found


def run_program(program: str, *args, cwd) -> subprocess.CompletedProcess:
    """Run ``dials.<program> args...`` in ``cwd``, capturing text output."""
    return subprocess.run(
        [program_path(program), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )


@pytest.fixture
def clean_logging():
    """``dials.util.log.config`` adds handlers on every run(); remove them afterwards."""
    names = ("dials", "dxtbx", "py.warnings")
    before = {n: list(logging.getLogger(n).handlers) for n in names}
    yield
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if handler not in before[name]:
                logger.removeHandler(handler)
                handler.close()


class ProgramResult(NamedTuple):
    """One in-process run of a program: what a shell would see, and its JSON."""

    exit_code: int
    stdout: str
    stderr: str
    document: dict | None


#: Loggers ``dials.util.log.config`` adds handlers to (the pipeline must remove them).
DIALS_LOGGERS = ("dials", "dxtbx", "py.warnings", "xfel")  # xfel: DIALS 3.13+


def run_handlers() -> dict[str, list[logging.Handler]]:
    """Handlers of the DIALS loggers, except the ``NullHandler`` a library adds on import."""
    return {
        name: [h for h in logging.getLogger(name).handlers if type(h) is not logging.NullHandler]
        for name in DIALS_LOGGERS
    }


def _json_target(program: str, args: list[str]) -> str | None:
    """The JSON file a command line names (last ``json=``/``output.json=`` wins)."""
    target = f"{program}.json"
    for argument in args:
        name, _, value = argument.partition("=")
        if name in ("json", "output.json"):
            target = value
    return None if target in ("None", "") else target


@pytest.fixture
def forked_workers(monkeypatch):
    """Local worker processes forked from this one, so that module values a test patches
    reach them. The engine forks only while the process runs no other thread; a Dask
    test earlier in the same pytest process leaves distributed's IO loop and profile
    threads behind, which hold nothing the workers use."""
    from dials_refl_stats.pipeline import engines

    monkeypatch.setattr(engines, "start_method", lambda: "fork")


@pytest.fixture
def run_inprocess(tmp_path, monkeypatch, capsys):
    """``run_inprocess(program, *args, cwd=tmp_path) -> (exit_code, stdout, stderr, document)``.

    Calls ``dials_refl_stats.command_line.<program>.run(args)`` in this process, in
    ``cwd``, as the console script would run it: a ``Sorry`` is exit code 1 with
    ``Sorry: ...`` on stderr (printed by the same ``sys.excepthook`` that libtbx installs
    for the console script), ``SystemExit`` its code. The JSON document (validated
    against its schema) is returned on success. Checks that the run leaves no logging
    handlers behind on the DIALS loggers (the pipeline removes them itself).
    """
    import importlib

    from dials.util import Sorry

    from dials_refl_stats.schemas import validate

    def call(program: str, *args, cwd: Path | None = None) -> ProgramResult:
        module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
        arguments = [str(a) for a in args]
        directory = Path(cwd) if cwd is not None else tmp_path
        monkeypatch.chdir(directory)
        before = run_handlers()
        capsys.readouterr()
        code = 0
        try:
            module.run(arguments)
        except Sorry as error:
            sys.excepthook(type(error), error, error.__traceback__)
            code = 1
        except SystemExit as error:
            if isinstance(error.code, str):
                print(error.code, file=sys.stderr)
                code = 1
            else:
                code = error.code or 0
        captured = capsys.readouterr()
        assert run_handlers() == before, "the run left logging handlers behind"
        document = None
        target = _json_target(program, arguments)
        if code == 0 and target and (directory / target).exists():
            document = json.loads((directory / target).read_text())
            validate(document)
        return ProgramResult(code, captured.out, captured.err, document)

    return call
