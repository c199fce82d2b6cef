"""Fuzz every program in ``dials_refl_stats.command_line`` with mutated reflection files.

Each case runs one program IN-PROCESS (``module.run(args)``, as the console script
does, with DIALS's error handling emulated: a ``Sorry`` is printed as its excepthook
prints it) in a fresh working directory, on a mutated copy of a real file kept in
another directory, and checks what a user would see:

* exit 0: the program's JSON file exists, is strict JSON (no NaN) and valid against
  its schema, no temporary files are left, nothing is printed on stderr; or
* exit 1: stderr is exactly one line ``Sorry: ...`` naming the mutated file, and the
  working directory is empty (no log, JSON, plot or temporary file);
* never a traceback; the input file is byte-identical afterwards.

    python benchmarks/fuzz_programs.py --iterations 10000 [--seed 1] [--plot-every 25]

The same engine runs a fixed-seed pass in ``tests/test_fuzz_programs.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import logging
import os
import pkgutil
import shutil
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dials_refl_stats.reader import read_layout, read_reflections  # noqa: E402

DATA = REPO / "tests" / "data"
#: Small real files with shoeboxes, and integrated tables (with the experiments beside
#: them when there are any).
DEFAULT_FILES = [
    DATA / "ssx_CuNiR" / "indexed.refl",
    DATA / "quartz_processed" / "indexed.refl",
    DATA / "centroid_test_data" / "indexed.refl",
    DATA / "quartz_processed" / "integrated.refl",
    DATA / "centroid_test_data" / "integrated.refl",
    DATA / "ssx_CuNiR" / "integrated.refl",
]
EXTREMES = [0, 1, -1, 2, 0x7FFFFFFF, -0x80000000, 0xFFFF, 1 << 20, 1 << 24, 29]
LOGGERS = ("dials", "dxtbx", "py.warnings")


# --- programs -------------------------------------------------------------------------


def discover_programs() -> dict[str, object]:
    """Every module of ``dials_refl_stats.command_line`` that has a ``run``."""
    import dials_refl_stats.command_line as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if callable(getattr(module, "run", None)):
            found[info.name] = module
    return found


@dataclasses.dataclass
class Outcome:
    """What one in-process run did."""

    code: int
    stdout: str
    stderr: str
    traceback: bool
    workdir: Path
    files: list[str]


@contextlib.contextmanager
def _clean_logging():
    """``dials.util.log.config`` adds handlers on every run: remove those added."""
    before = {n: list(logging.getLogger(n).handlers) for n in LOGGERS}
    try:
        yield
    finally:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if handler not in before[name]:
                    logger.removeHandler(handler)
                    handler.close()


def _is_sorry(error: BaseException) -> bool:
    try:
        from libtbx.utils import Sorry
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, Sorry)


def run_in_process(module, args: list[str], workdir: Path) -> Outcome:
    """Run ``module.run(args)`` in ``workdir`` as its console script would.

    ``SystemExit`` gives the exit code (a string code is printed on stderr, exit 1); a
    ``Sorry`` is printed as DIALS's excepthook prints it (no traceback, exit 1); any
    other exception is a traceback (exit 1).
    """
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    crashed = False
    os.chdir(workdir)
    try:
        with _clean_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                module.run(list(args))
                code = 0
            except SystemExit as exit_:
                if exit_.code is None:
                    code = 0
                elif isinstance(exit_.code, int):
                    code = exit_.code
                else:
                    print(exit_.code, file=sys.stderr)
                    code = 1
            except Exception as error:  # noqa: BLE001 - classifying is the point
                code = 1
                if _is_sorry(error):
                    sys.stderr.write("".join(traceback.format_exception_only(type(error), error)))
                else:
                    crashed = True
                    traceback.print_exc(file=sys.stderr)
    finally:
        os.chdir(here)
    files = sorted(os.listdir(workdir))
    return Outcome(code, out.getvalue(), err.getvalue(), crashed, workdir, files)


# --- checks ---------------------------------------------------------------------------


def check_outcome(program: str, outcome: Outcome, input_name: str) -> list[str]:
    """Violations of the contract (empty list: fine)."""
    problems = []
    if outcome.traceback or "Traceback" in outcome.stderr:
        last = outcome.stderr.strip().splitlines()[-1:] or ["?"]
        problems.append(f"traceback: {last[0][:300]}")
    if outcome.code == 0:
        problems += _check_success(program, outcome)
    elif outcome.code == 1:
        lines = outcome.stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith("Sorry: ") or input_name not in lines[0]:
            if not outcome.traceback:
                problems.append(f"stderr is not one 'Sorry: ...' line naming the file: {lines!r}")
        if outcome.files:
            logs = [f for f in outcome.files if f.endswith(".log")]
            others = [f for f in outcome.files if not f.endswith(".log")]
            if logs:
                problems.append(f"leftover log after an error: {logs}")
            if others:
                problems.append(f"leftover files after an error: {others}")
    else:
        problems.append(f"exit code {outcome.code}")
    return problems


def _check_success(program: str, outcome: Outcome) -> list[str]:
    from dials_refl_stats.schemas import validate

    problems = []
    if outcome.stderr:
        problems.append(f"stderr on success: {outcome.stderr.strip()[:300]!r}")
    hidden = [f for f in outcome.files if f.startswith(".")]
    if hidden:
        problems.append(f"temporary files left: {hidden}")
    name = f"{program}.json"
    if name not in outcome.files:
        return problems + [f"exit 0 without {name} (files: {outcome.files})"]
    return problems + _check_json(outcome, name, validate)


def _check_json(outcome: Outcome, name: str, validate) -> list[str]:
    import jsonschema

    text = (outcome.workdir / name).read_text(encoding="utf-8")

    def no_constant(value):
        raise ValueError(f"non-standard JSON value {value}")

    try:
        document = json.loads(text, parse_constant=no_constant)
    except ValueError as error:
        return [f"invalid JSON document: {str(error).splitlines()[0][:300]}"]
    try:
        validate(document)
    except jsonschema.ValidationError as error:
        return [f"JSON not valid against its schema: {str(error).splitlines()[0][:300]}"]
    except Exception as error:  # noqa: BLE001 - e.g. a program without a schema
        return [f"JSON schema check failed: {type(error).__name__}: {error}"]
    return []


# --- mutations ------------------------------------------------------------------------


def _record_offsets(path: Path) -> list[int]:
    """Absolute offsets of every shoebox record header of ``path`` (if it has any)."""
    span = read_layout(path).columns.get("shoebox")
    if span is None:
        return []
    sb = read_reflections(path, columns=[], shoebox="mask").shoebox
    width = np.where(sb.mask_values.dtype == np.uint8, 9, 12)
    sizes = 29 + np.diff(sb.offsets) * np.where(sb.allocated, width, 0)
    return (span.offset + np.concatenate([[0], np.cumsum(sizes)[:-1]])).tolist()


class Mutator:
    """Seeded mutations of one real file: flips anywhere, in column data and in shoebox
    records, extreme integers, truncations, inserted bytes and zeroed ranges."""

    KINDS = (
        "flip",
        "flip_column",
        "flip_shoebox",
        "int32_column",
        "record_field",
        "truncate",
        "insert",
        "zero",
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = path.read_bytes()
        self.spans = [s for s in read_layout(path).columns.values() if s.nbytes]
        self.records = _record_offsets(path)

    def __call__(self, rng: np.random.Generator) -> tuple[str, bytes]:
        kind = self.KINDS[int(rng.integers(len(self.KINDS)))]
        if kind in ("flip_shoebox", "record_field") and not self.records:
            kind = "flip_column"
        return kind, getattr(self, f"_{kind}")(bytearray(self.raw), rng)

    def _span(self, rng) -> tuple[int, int]:
        span = self.spans[int(rng.integers(len(self.spans)))]
        return span.offset, span.offset + span.nbytes

    @staticmethod
    def _flips(b: bytearray, rng, lo: int, hi: int) -> bytes:
        for _ in range(int(rng.integers(1, 5))):
            p = int(rng.integers(lo, max(hi, lo + 1)))
            if p < len(b):
                b[p] ^= 1 << int(rng.integers(8))
        return bytes(b)

    def _flip(self, b, rng) -> bytes:
        return self._flips(b, rng, 0, len(b))

    def _flip_column(self, b, rng) -> bytes:
        return self._flips(b, rng, *self._span(rng))

    def _flip_shoebox(self, b, rng) -> bytes:
        start = self.records[int(rng.integers(len(self.records)))]
        return self._flips(b, rng, start, start + 29 if rng.random() < 0.7 else start + 200)

    def _int32_column(self, b, rng) -> bytes:
        lo, hi = self._span(rng)
        p = lo + 4 * int(rng.integers(max((hi - lo) // 4, 1)))
        value = EXTREMES[int(rng.integers(len(EXTREMES)))]
        b[p : p + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        return bytes(b[: len(self.raw)])

    def _record_field(self, b, rng) -> bytes:
        start = self.records[int(rng.integers(len(self.records)))]
        field = int(rng.integers(8))
        if field == 7:
            b[start + 28] = int(rng.choice([0, 1, 2, 3, 255]))
        else:
            value = EXTREMES[int(rng.integers(len(EXTREMES)))]
            b[start + 4 * field : start + 4 * field + 4] = struct.pack("<I", value & 0xFFFFFFFF)
        return bytes(b)

    def _truncate(self, b, rng) -> bytes:
        return bytes(b[: int(rng.integers(len(b)))])

    def _insert(self, b, rng) -> bytes:
        p = int(rng.integers(len(b) + 1))
        extra = rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()
        return bytes(b[:p]) + extra + bytes(b[p:])

    def _zero(self, b, rng) -> bytes:
        lo, hi = self._span(rng) if rng.random() < 0.7 else (0, len(b))
        p = int(rng.integers(lo, max(hi, lo + 1)))
        n = int(rng.integers(1, 4097))
        b[p : p + n] = bytes(len(b[p : p + n]))
        return bytes(b)


# --- cases ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
    """A program and a data file it processes without error when not mutated."""

    program: str
    source: Path
    experiments: Path | None


def _experiments_for(path: Path) -> list[Path | None]:
    stem = path.name.split(".")[0]
    beside = [path.with_name(f"{stem}.expt"), path.with_name("indexed.expt")]
    return [p for p in dict.fromkeys(beside) if p.exists()] + [None]


def _arguments(setup: Setup, refl: Path, plot: bool) -> list[str]:
    args = [str(setup.experiments)] if setup.experiments else []
    return args + [str(refl)] + ([] if plot else ["output.plot=None"])


def find_setups(programs: dict, files: list[Path], scratch: Path) -> list[Setup]:
    """For every program and file: the first experiments choice it runs cleanly with."""
    setups = []
    for name, module in programs.items():
        for path in files:
            for expt in _experiments_for(path):
                setup = Setup(name, path, expt)
                work = Path(tempfile.mkdtemp(dir=scratch))
                outcome = run_in_process(module, _arguments(setup, path, False), work)
                shutil.rmtree(work)
                if outcome.code == 0 and not outcome.stderr:
                    setups.append(setup)
                    break
    return setups


@dataclasses.dataclass
class Failure:
    iteration: int
    program: str
    source: str
    kind: str
    problems: list[str]
    kept: Path | None = None


def run_case(module, setup: Setup, blob: bytes, scratch: Path, plot: bool) -> tuple[str, list[str]]:
    """One mutated file through one program; (outcome label, violations)."""
    inputs = Path(tempfile.mkdtemp(prefix="in_", dir=scratch))
    work = Path(tempfile.mkdtemp(prefix="work_", dir=scratch))
    refl = inputs / setup.source.name
    refl.write_bytes(blob)
    digest = hashlib.sha256(blob).digest()
    try:
        outcome = run_in_process(module, _arguments(setup, refl, plot), work)
        problems = check_outcome(setup.program, outcome, refl.name)
        if hashlib.sha256(refl.read_bytes()).digest() != digest:
            problems.append("the input file was modified")
        if sorted(os.listdir(inputs)) != [refl.name]:
            problems.append(f"files written beside the input: {sorted(os.listdir(inputs))}")
    finally:
        shutil.rmtree(inputs)
        shutil.rmtree(work)
    if outcome.traceback:
        label = "traceback"
    elif outcome.code == 0:
        label = "ok"
    elif outcome.code == 1 and outcome.stderr.startswith("Sorry: "):
        label = "sorry"
    else:
        label = f"exit {outcome.code}"
    return label, problems


def fuzz(
    iterations: int,
    seed: int,
    scratch: Path,
    files: list[Path] | None = None,
    plot_every: int = 25,
    keep_dir: Path | None = None,
    on_failure: str = "collect",
    setups: list[Setup] | None = None,
) -> tuple[Counter, list[Failure], list[Setup]]:
    """Run ``iterations`` cases spread over every program (round robin over
    ``setups``, found by :func:`find_setups` unless given); returns outcome counts,
    the failures, and the setups used."""
    programs = discover_programs()
    if setups is None:
        files = [Path(f) for f in (files or DEFAULT_FILES)]
        setups = find_setups(programs, files, scratch)
    mutators = {path: Mutator(path) for path in {s.source for s in setups}}
    rng = np.random.default_rng(seed)
    stats: Counter = Counter()
    failures: list[Failure] = []
    for it in range(iterations):
        setup = setups[it % len(setups)]
        kind, blob = mutators[setup.source](rng)
        plot = plot_every > 0 and it % plot_every == 0
        label, problems = run_case(programs[setup.program], setup, blob, scratch, plot)
        stats[(setup.program, label)] += 1
        if problems:
            failure = Failure(it, setup.program, str(setup.source), kind, problems)
            if keep_dir is not None:
                keep_dir.mkdir(parents=True, exist_ok=True)
                failure.kept = keep_dir / f"case_{seed}_{it}_{kind}_{setup.source.name}"
                failure.kept.write_bytes(blob)
            failures.append(failure)
            if on_failure == "raise":
                raise AssertionError(describe(failure))
    return stats, failures, setups


def describe(failure: Failure) -> str:
    where = f" (input kept as {failure.kept})" if failure.kept else ""
    source = Path(failure.source)
    head = f"case {failure.iteration}: {failure.program} on {failure.kind} of "
    return head + f"{source.parent.name}/{source.name}{where}: " + "; ".join(failure.problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=None)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plot-every", type=int, default=25, help="0: never plot")
    parser.add_argument("--keep", type=Path, default=None, help="keep failing inputs here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stats, failures, setups = fuzz(
            args.iterations, args.seed, Path(tmp), args.files, args.plot_every, args.keep
        )
    took = time.perf_counter() - start
    print(f"{args.iterations} cases in {took:.1f} s over {len(setups)} program/file setups")
    for (program, label), n in sorted(stats.items()):
        print(f"  {program:30s} {label:10s} {n}")
    kinds = Counter(p.split(":")[0] for f in failures for p in f.problems)
    for problem, n in kinds.most_common():
        print(f"  VIOLATION {problem}: {n}")
    for failure in failures[:50]:
        print(describe(failure))
    if failures:
        print(f"{len(failures)} cases violated the contract")
        return 1
    print("no violations")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
