"""Every program with experiment files holding absurd but well-formed model values (NaN
and infinite vectors, zero pixel sizes, 1e-300 wavelengths, ...): a valid result or one
``Sorry`` line, never a traceback, a hang or a dead process. The engine is
``benchmarks/fuzz_geometry.py`` (its long runs: ``--iterations 1500``)."""

from __future__ import annotations

import pytest
from conftest import load_script, needs_dials

pytestmark = needs_dials

SEED = 20261204
CASES = 40
SLICES = 2


engine = load_script("benchmarks/fuzz_geometry.py", "fuzz_geometry")


@pytest.mark.parametrize("part", range(SLICES))
def test_absurd_geometry_gives_a_result_or_one_sorry_line(part):
    first, stop = part * CASES // SLICES, (part + 1) * CASES // SLICES
    stats, failures = engine.fuzz(SEED, first, stop, timeout=120)
    assert not failures, failures[:3]
    assert sum(stats.values()) == stop - first
    labels = {label for _program, label in stats}
    assert "ok" in labels  # the edits leave most runs computable


def test_every_program_is_fuzzed():
    programs = {program for program, *_rest in engine.setups()}
    assert programs == set(engine.engine.discover_programs())
