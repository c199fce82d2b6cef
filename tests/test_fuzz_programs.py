"""Every program, in-process, on seeded mutations of real reflection files.

A user must see either a valid result (exit 0, a JSON document valid against the
program's schema) or one line ``Sorry: <file>: <problem>`` (exit 1) with nothing left in
the working directory; never a traceback, and the input file is never touched. The
engine is ``benchmarks/fuzz_programs.py`` (its long run: ``--iterations 10000``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import load_script, needs_dials

pytestmark = needs_dials

ITERATIONS = 300
SEED = 20251202
#: The cases run in slices, so that pytest-xdist spreads them over the workers.
SLICES = 3


engine = load_script("benchmarks/fuzz_programs.py", "fuzz_programs")


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """(program, file) pairs each program runs cleanly on before mutation."""
    scratch = tmp_path_factory.mktemp("setups")
    return engine.find_setups(engine.discover_programs(), engine.DEFAULT_FILES, scratch)


def test_every_program_in_the_package_is_covered(setups):
    programs = engine.discover_programs()
    assert {"spot_size_histogram", "intensity_per_frame", "strong_reflection_positions"} <= set(
        programs
    )
    covered = {s.program for s in setups}
    assert covered == set(programs), f"programs with no clean run: {set(programs) - covered}"


@pytest.mark.parametrize("part", range(SLICES))
def test_mutated_files_give_a_result_or_one_sorry_line(setups, tmp_path, part):
    """Cases ``part * 100 .. part * 100 + 99`` of the 300 (same cases however sliced)."""
    first, stop = part * ITERATIONS // SLICES, (part + 1) * ITERATIONS // SLICES
    start = time.process_time()  # CPU seconds: the machine may be shared
    stats, failures, used = engine.fuzz(
        stop,
        SEED,
        tmp_path,
        plot_every=60,  # a few plots: they cost ~1 s each
        keep_dir=tmp_path / "kept",
        setups=setups,
        dials_every=15,  # some cases through reader=dials (DIALS's from_file)
        measure_every=50,  # a few with every allocation traced
        first=first,
    )
    took = time.process_time() - start
    report = "\n".join(engine.describe(f) for f in failures[:20])
    assert not failures, f"{len(failures)} of {stop - first} cases broke the contract:\n{report}"
    assert sum(stats.values()) == stop - first
    labels = {label for (_program, label) in stats}
    assert labels == {"ok", "sorry"}, stats  # both outcomes really exercised
    for program in {s.program for s in used}:
        assert stats[(program, "sorry")] > 0 and stats[(program, "ok")] > 0, program
    assert took < 60 / SLICES, f"{took:.0f} CPU seconds"


# --- the harness itself catches what it is meant to catch ------------------------------


def _outcome(code, stderr="", files=(), tmp_path=Path("."), crashed=False):
    return engine.Outcome(code, "", stderr, crashed, tmp_path, list(files))


def test_checks_flag_tracebacks_leftovers_and_bad_sorry_lines(tmp_path):
    check = engine.check_outcome
    assert check("p", _outcome(1, "Sorry: x.refl: truncated file\n"), "x.refl") == []
    assert check("p", _outcome(1, "Sorry: truncated file\n"), "x.refl")  # file not named
    assert check("p", _outcome(1, "Sorry: x.refl: a\nSorry: b\n"), "x.refl")  # two lines
    tb = "Traceback (most recent call last):\n  ...\nValueError: x.refl\n"
    assert any("traceback" in p for p in check("p", _outcome(1, tb, crashed=True), "x.refl"))
    leftover = check("p", _outcome(1, "Sorry: x.refl: bad\n", ["dials.p.log"]), "x.refl")
    assert leftover == ["leftover log after an error: ['dials.p.log']"]
    other = check("p", _outcome(1, "Sorry: x.refl: bad\n", [".p.json.tmp"]), "x.refl")
    assert other == ["leftover files after an error: ['.p.json.tmp']"]
    missing = check("p", _outcome(0, tmp_path=tmp_path), "x.refl")
    assert missing and "without p.json" in missing[0]
    (tmp_path / "p.json").write_text('{"a": NaN}')
    nan = check("p", _outcome(0, files=["p.json"], tmp_path=tmp_path), "x.refl")
    assert nan and "invalid JSON" in nan[0]


def test_a_non_sorry_exception_is_a_traceback(tmp_path):
    """run_in_process classifies like the console script: only a Sorry is quiet."""

    class Raises:
        @staticmethod
        def run(args):
            int(args[0])  # ValueError, as a bug in a program would raise

    outcome = engine.run_in_process(Raises, ["not a number"], tmp_path)
    assert outcome.traceback and outcome.code == 1 and "ValueError" in outcome.stderr
    assert engine.check_outcome("p", outcome, "x.refl")[0].startswith("traceback")


def test_a_sorry_is_one_line_and_a_clean_directory(tmp_path):
    module = engine.discover_programs()["spot_size_histogram"]
    work = tmp_path / "work"
    work.mkdir()
    outcome = engine.run_in_process(module, [str(tmp_path / "missing.refl")], work)
    assert outcome.code == 1 and not outcome.traceback
    assert outcome.stderr.startswith("Sorry: ") and outcome.stderr.count("\n") == 1
    assert engine.check_outcome("spot_size_histogram", outcome, "missing.refl") == []
