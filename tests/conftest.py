"""Shared test fixtures: locating the real DIALS files shipped with the repository."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DATA = Path(__file__).parent / "data"
PACKAGE_DATA = Path(__file__).parent.parent / "dials_refl_stats" / "data"

HAVE_DIALS = importlib.util.find_spec("dials") is not None
needs_dials = pytest.mark.skipif(not HAVE_DIALS, reason="DIALS is not installed")


def data_path(relative: str) -> Path:
    """Path of a shipped data file, e.g. ``"sim_small/indexed.refl"``."""
    for root in (TESTS_DATA, PACKAGE_DATA):
        candidate = root / relative
        if candidate.exists():
            return candidate
    raise FileNotFoundError(relative)


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
