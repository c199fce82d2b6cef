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

    python benchmarks/fuzz_programs.py --iterations 10000 [--seed 1] [--keep DIR]

The script runs the cases in forked child processes of ``--batch`` cases each (memory
stays bounded over long campaigns) and reports a case that takes longer than
``--timeout`` seconds, or kills the process, as a violation. Case ``i`` of seed ``s``
is the same whatever else runs, so a kept input reproduces it. The same engine runs a
fixed-seed pass in-process in ``tests/test_fuzz_programs.py``.
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
import tracemalloc
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
#: Allowed peak of traced allocations: this many times the file size, plus the slack.
MEMORY_FACTOR = 32
MEMORY_SLACK = 64 << 20
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
    #: Arguments that turn off the costly outputs (plots, HTML) for most cases.
    quiet: tuple[str, ...] = ()


def _experiments_for(path: Path, with_experiments: bool = True) -> list[Path | None]:
    if not with_experiments:
        return [None]
    stem = path.name.split(".")[0]
    beside = [path.with_name(f"{stem}.expt"), path.with_name("indexed.expt")]
    beside += sorted(path.parent.glob("imported*.expt"))  # spot finding's: no crystals
    return [p for p in dict.fromkeys(beside) if p.exists()] + [None]


#: Outputs that cost time (figures); off except in every ``plot_every``-th case.
COSTLY_OUTPUTS = ("output.plot", "output.html")


def quiet_arguments(module) -> tuple[str, ...]:
    """``output.plot=None`` etc. for the costly outputs ``module``'s phil scope has."""
    scope = getattr(module, "phil_scope", None)
    names = {d.path for d in scope.all_definitions()} if scope is not None else set()
    return tuple(f"{name}=None" for name in COSTLY_OUTPUTS if name in names)


def _arguments(setup: Setup, refl: Path, plot: bool, reader: str | None = None) -> list[str]:
    args = [str(setup.experiments)] if setup.experiments else []
    args += [str(refl)] + ([] if plot else list(setup.quiet))
    return args + ([f"reader={reader}"] if reader else [])


def find_setups(
    programs: dict, files: list[Path], scratch: Path, with_experiments: bool = True
) -> list[Setup]:
    """For every program and file: the first experiments choice it runs cleanly with
    (``with_experiments=False``: none)."""
    setups = []
    for name, module in programs.items():
        for path in files:
            for expt in _experiments_for(path, with_experiments):
                setup = Setup(name, path, expt, quiet_arguments(module))
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


def run_case(
    module,
    setup: Setup,
    blob: bytes,
    scratch: Path,
    plot: bool = False,
    reader: str | None = None,
    measure: bool = False,
) -> tuple[str, list[str]]:
    """One mutated file through one program; (outcome label, violations).

    ``measure``: trace the run's allocations (numpy's included) and flag a peak beyond
    :data:`MEMORY_FACTOR` times the file size plus :data:`MEMORY_SLACK`.
    """
    inputs = Path(tempfile.mkdtemp(prefix="in_", dir=scratch))
    work = Path(tempfile.mkdtemp(prefix="work_", dir=scratch))
    refl = inputs / setup.source.name
    refl.write_bytes(blob)
    digest = hashlib.sha256(blob).digest()
    try:
        if measure:
            tracemalloc.start()
        try:
            outcome = run_in_process(module, _arguments(setup, refl, plot, reader), work)
        finally:
            peak = tracemalloc.get_traced_memory()[1] if measure else 0
            if measure:
                tracemalloc.stop()
        problems = check_outcome(setup.program, outcome, refl.name)
        if peak > MEMORY_FACTOR * len(blob) + MEMORY_SLACK:
            problems.append(f"memory: peak {peak} bytes for a {len(blob)}-byte file")
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
    dials_every: int = 10,
    measure_every: int = 10,
    first: int = 0,
    report=None,
) -> tuple[Counter, list[Failure], list[Setup]]:
    """Run cases ``first .. iterations - 1`` spread over every program (round robin over
    ``setups``, found by :func:`find_setups` unless given); returns outcome counts
    (by program, ``[reader=dials]`` for the DIALS backend's cases), the failures,
    and the setups used.

    Case ``i`` is seeded by ``(seed, i)`` alone, so any case can be rerun by itself.
    Every ``plot_every``-th case writes a plot, every ``dials_every``-th (offset by
    one) reads with ``reader=dials``, every ``measure_every``-th (offset by two) has its
    memory traced (0: never). ``report(i, key, label, failure)`` is called before and
    after each case (``label`` None before).
    """
    programs = discover_programs()
    if setups is None:
        files = [Path(f) for f in (files or DEFAULT_FILES)]
        setups = find_setups(programs, files, scratch)
    mutators: dict[Path, Mutator] = {}
    stats: Counter = Counter()
    failures: list[Failure] = []
    for it in range(first, iterations):
        setup = setups[it % len(setups)]
        if setup.source not in mutators:
            mutators[setup.source] = Mutator(setup.source)
        kind, blob = mutators[setup.source](np.random.default_rng([seed, it]))
        plot = plot_every > 0 and it % plot_every == 0
        reader = "dials" if dials_every > 0 and it % dials_every == 1 else None
        measure = measure_every > 0 and it % measure_every == 2
        key = setup.program + (" [reader=dials]" if reader else "")
        if report is not None:
            report(it, key, None, Failure(it, setup.program, str(setup.source), kind, []))
        module = programs[setup.program]
        label, problems = run_case(module, setup, blob, scratch, plot, reader, measure)
        stats[(key, label)] += 1
        failure = None
        if problems:
            failure = Failure(it, setup.program, str(setup.source), kind, problems)
            if keep_dir is not None:
                failure.kept = _keep(keep_dir, seed, failure, blob)
            failures.append(failure)
            if on_failure == "raise":
                raise AssertionError(describe(failure))
        if report is not None:
            report(it, key, label, failure)
    return stats, failures, setups


def _keep(keep_dir: Path, seed: int, failure: Failure, blob: bytes) -> Path:
    keep_dir.mkdir(parents=True, exist_ok=True)
    kept = keep_dir / f"case_{seed}_{failure.iteration}_{failure.kind}_{Path(failure.source).name}"
    kept.write_bytes(blob)
    return kept


# --- long campaigns: cases in child processes, with a time limit per case -------------


def _child(connection, options: dict, first: int, iterations: int, setups) -> None:
    """Run cases in a forked child, reporting each one to the parent."""

    def report(it, key, label, failure):
        connection.send((it, key, label, failure))

    with tempfile.TemporaryDirectory() as tmp:
        fuzz(iterations, scratch=Path(tmp), setups=setups, first=first, report=report, **options)
    connection.send(None)


def supervise(
    iterations: int, options: dict, setups: list[Setup], batch: int, timeout: float
) -> tuple[Counter, list[Failure]]:
    """:func:`fuzz` in forked children of at most ``batch`` cases each (memory stays
    bounded); a case that takes longer than ``timeout`` seconds is killed and reported
    as a hang, and the campaign goes on with the next case."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    stats: Counter = Counter()
    failures: list[Failure] = []
    it = 0
    while it < iterations:
        stop = min(it + batch, iterations)
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(send, options, it, stop, setups))
        child.start()
        send.close()
        current = None
        while True:
            if not receive.poll(timeout):
                child.kill()
                message = f"hang: no result after {timeout:g} s"
                break
            try:
                message = receive.recv()
            except EOFError:
                child.join()
                message = f"crash: the process died (exit code {child.exitcode})"
                break
            if message is None:
                it = stop
                break
            number, key, label, failure = message
            if label is None:
                current = failure
                continue
            it = number + 1
            stats[(key, label)] += 1
            if failure is not None:
                failures.append(failure)
        child.join()
        if isinstance(message, str):  # the current case hung or crashed the process
            current.problems.append(message)
            if options.get("keep_dir") is not None:  # cases are reproducible: make it again
                source = Path(current.source)
                rng = np.random.default_rng([options["seed"], current.iteration])
                current.kept = _keep(
                    options["keep_dir"], options["seed"], current, Mutator(source)(rng)[1]
                )
            failures.append(current)
            stats[(current.program, message.split(":")[0])] += 1
            it = current.iteration + 1
    return stats, failures


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
    parser.add_argument("--dials-every", type=int, default=10, help="0: never reader=dials")
    parser.add_argument("--measure-every", type=int, default=10, help="0: never trace memory")
    parser.add_argument(
        "--no-experiments", action="store_true", help="run every program without .expt files"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep failing inputs here")
    parser.add_argument("--batch", type=int, default=200, help="cases per child process")
    parser.add_argument("--timeout", type=float, default=60, help="seconds allowed per case")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    options = dict(
        seed=args.seed,
        plot_every=args.plot_every,
        keep_dir=args.keep,
        dials_every=args.dials_every,
        measure_every=args.measure_every,
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(f) for f in (args.files or DEFAULT_FILES)]
        setups = find_setups(
            discover_programs(), files, Path(tmp), with_experiments=not args.no_experiments
        )
    stats, failures = supervise(args.iterations, options, setups, args.batch, args.timeout)
    took = time.perf_counter() - start
    print(f"{args.iterations} cases in {took:.1f} s over {len(setups)} program/file setups")
    for (program, label), n in sorted(stats.items()):
        print(f"  {program:45s} {label:10s} {n}")
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
