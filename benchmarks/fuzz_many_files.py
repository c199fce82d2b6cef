"""Differential fuzzing of runs of many reflection files with their experiments.

A run of at least ``inputs.DEFER_MIN_FILES`` files may leave each file's header to the
task that reads its rows, which then maps the table's ids to the experiments as the
driver would. This fuzzer checks that this changes nothing a user sees. The base
directory holds 65 single-still files (``tests/data/ssx_CuNiR/indexed.refl`` split 13
times by DIALS, as ``split_stills`` in ``tests/conftest.py`` does); each case replaces one
of them (sometimes two) by a mutated copy (``fuzz_programs.Mutator``'s byte mutations, or
structure-aware ones: identifiers, ``nrows``, column types, counts and payloads, ``id``
and ``flags`` values, re-encoded with msgpack), and runs one program in-process on
``[indexed.expt, directory]`` (``--no-experiments``: the directory alone) in three modes:

* ``driver``: serially, the driver reading every header (``DEFER_MIN_FILES`` = 10^9);
* ``serial``: serially, by default (deferred headers where the program takes them);
* ``nproc2``: ``mp.nproc=2``, by default (the tasks read every header).

The modes must agree: the same exit code and stderr (``serial`` and ``nproc2`` always;
against ``driver``, a deferred run with two mutated files may name the other one: it
finds problems file by file in order, where the driver finds every header's problem
before any row's, see docs/pipeline.md); on success the same ``results``,
``selection`` and ``inputs`` blocks (schema-valid JSON, nothing on stderr, skipped files
only mutated ones and never one that disagrees with the experiments); on failure one
``Sorry:`` line naming the first mutated file that fails, in name order, and an empty
working directory. Never a traceback; the inputs are byte-identical afterwards.

    python benchmarks/fuzz_many_files.py --iterations 2000 [--seed 1] [--keep DIR]
    python benchmarks/fuzz_many_files.py --seed 1 --case 17     # one case, in detail

Cases run in forked children of ``--batch`` cases each (memory stays bounded); case
``i`` of seed ``s`` is the same whatever else runs. A case that hangs is killed with its
worker processes, and kept with the Python stacks of them all when ``py-spy`` is on the
PATH (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import msgpack
import numpy as np

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "tests", REPO / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import fuzz_programs as engine  # noqa: E402
from conftest import split_stills  # noqa: E402

from dials_refl_stats.pipeline import inputs as inputs_module  # noqa: E402
from dials_refl_stats.pipeline import program as program_module  # noqa: E402

SOURCE = "ssx_CuNiR/indexed.refl"
EXPT = REPO / "tests" / "data" / "ssx_CuNiR" / "indexed.expt"
#: Whether the programs get :data:`EXPT` (``--no-experiments``: the directory alone, so
#: that strong positions find the panel sizes from the rows, with the headers).
WITH_EXPERIMENTS = True
#: 5 stills x 13 copies: 65 files, more than ``DEFER_MIN_FILES`` (64)
COPIES = 13
PROGRAMS = (
    "spot_size_histogram",
    "strong_reflection_positions",
    "per_image_statistics",
    "intensity_per_frame",
    "refl_stats",
)
#: mode -> (extra arguments, the driver reads every header)
MODES = {"driver": ((), True), "serial": ((), False), "nproc2": (("mp.nproc=2",), False)}
#: Compared between the modes on success.
BLOCKS = ("results", "selection", "inputs")
#: Words of :class:`~dials_refl_stats.pipeline.inputs.ExperimentMismatchError` (never skipped).
MISMATCH = ("is not in the experiments given", "cannot be matched to experiments")
#: Chance that a case mutates two files, and that a mutation is structure-aware.
TWO_FILES = 0.25
STRUCTURED = 0.5


def quiet(program: str) -> str:
    return "output.html=None" if program == "refl_stats" else "output.plot=None"


def make_base(folder: Path) -> Path:
    """The 65 stills in ``folder``, cut by DIALS's ``select`` and ``as_file``."""
    return split_stills(SOURCE, folder, copies=COPIES)


def experiment_identifiers() -> list[str]:
    """Identifiers of the experiment list (some empty)."""
    return [e.get("identifier", "") for e in json.loads(EXPT.read_text())["experiment"]]


# --- mutations ------------------------------------------------------------------------


class StructureMutator(engine.Mutator):
    """:class:`fuzz_programs.Mutator` plus mutations of the decoded msgpack table (its
    identifiers, ``nrows``, columns and id/flags/panel values), encoded again."""

    STRUCTURE_KINDS = (
        "ident_key",
        "ident_char",
        "ident_swap",
        "ident_drop",
        "ident_extra",
        "ident_type",
        "nrows",
        "column_drop",
        "column_type",
        "column_count",
        "column_payload",
        "id_rows",
        "flags_rows",
        "panel_rows",
        "empty_table",
    )
    #: Columns the programs read, dropped or changed more often than the others.
    KEY_COLUMNS = (
        "id",
        "flags",
        "shoebox",
        "bbox",
        "panel",
        "intensity.sum.value",
        "intensity.sum.variance",
        "xyzobs.px.value",
        "xyzobs.mm.value",
    )
    TYPES = ("int", "double", "bool", "std::size_t", "int6", "vec3<double>", "Shoebox<>", "x")

    def __init__(self, path: Path, identifiers: list[str]) -> None:
        super().__init__(path)
        self.identifiers = identifiers

    def mutate(self, rng: np.random.Generator) -> tuple[str, bytes]:
        """(kind, mutated bytes): a structure-aware mutation with chance
        :data:`STRUCTURED`, else one of :class:`fuzz_programs.Mutator`."""
        if rng.random() >= STRUCTURED:
            return self(rng)
        kind = self.STRUCTURE_KINDS[int(rng.integers(len(self.STRUCTURE_KINDS)))]
        table = msgpack.unpackb(self.raw, strict_map_key=False, raw=False)
        getattr(self, f"_{kind}")(table[2], rng)
        return kind, msgpack.packb(table)

    def _pick(self, rng, values):
        return values[int(rng.integers(len(values)))]

    def _column(self, header: dict, rng) -> str:
        names = list(header["data"])
        key = [n for n in self.KEY_COLUMNS if n in names]
        return self._pick(rng, key if key and rng.random() < 0.7 else names)

    def _ident_key(self, header, rng) -> None:
        key = self._pick(rng, [-1, 0, 1, 2, 3, 4, 5, 6, 7, 100, 1 << 31])
        header["identifiers"] = {key: v for v in header["identifiers"].values()}

    def _ident_char(self, header, rng) -> None:
        key, value = next(iter(header["identifiers"].items()))
        p = int(rng.integers(len(value)))
        header["identifiers"][key] = (
            value[:p] + self._pick(rng, "0123456789abcdefX-") + value[p + 1 :]
        )

    def _ident_swap(self, header, rng) -> None:
        key = next(iter(header["identifiers"]))
        header["identifiers"][key] = self._pick(rng, self.identifiers)

    def _ident_drop(self, header, rng) -> None:
        header["identifiers"] = {}

    def _ident_extra(self, header, rng) -> None:
        key = self._pick(rng, [-1, 0, 1, 2, 3, 4, 5, 6, 7])
        header["identifiers"][key] = self._pick(rng, [*self.identifiers, "other"])

    def _ident_type(self, header, rng) -> None:
        key = next(iter(header["identifiers"]))
        header["identifiers"][key] = self._pick(rng, [5, None, b"bytes", ["a"], 1.5])

    def _nrows(self, header, rng) -> None:
        header["nrows"] = self._pick(rng, [0, 1, header["nrows"] - 1, header["nrows"] + 1, -1])

    def _column_drop(self, header, rng) -> None:
        del header["data"][self._column(header, rng)]

    def _column_type(self, header, rng) -> None:
        name = self._column(header, rng)
        header["data"][name][0] = self._pick(rng, self.TYPES)

    def _column_count(self, header, rng) -> None:
        value = header["data"][self._column(header, rng)][1]
        value[0] = self._pick(rng, [0, value[0] - 1, value[0] + 1, 1 << 40])

    def _column_payload(self, header, rng) -> None:
        value = header["data"][self._column(header, rng)][1]
        n = int(rng.integers(1, 17))
        value[1] = value[1][:-n] if rng.random() < 0.5 else value[1] + bytes(n)

    def _set_rows(self, header, rng, name: str, dtype: str, values: list[int]) -> None:
        column = header["data"].get(name)
        if column is None:
            return
        data = np.frombuffer(column[1][1], dtype).copy()
        if data.size:
            rows = slice(None) if rng.random() < 0.3 else int(rng.integers(data.size))
            data[rows] = self._pick(rng, values)
        column[1][1] = data.tobytes()

    def _id_rows(self, header, rng) -> None:
        self._set_rows(header, rng, "id", "<i4", [-2, -1, 0, 1, 2, 3, 4, 5, 6, 7])

    def _flags_rows(self, header, rng) -> None:
        values = [0, 1, 2, 32, 1 << 5 | 1 << 8, 1 << 16, 1 << 62, (1 << 64) - 1]
        self._set_rows(header, rng, "flags", "<u8", values)

    def _panel_rows(self, header, rng) -> None:
        self._set_rows(header, rng, "panel", "<u8", [1, 2, 1 << 31, (1 << 64) - 1])

    def _empty_table(self, header, rng) -> None:
        header["nrows"] = 0
        for column in header["data"].values():
            column[1] = [0, b""]


# --- cases ----------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One case: a program, ``input.on_error`` and the mutated files (sorted by name)."""

    iteration: int
    program: str
    on_error: str
    #: (file name, mutation kind, mutated bytes), in name order
    mutated: list[tuple[str, str, bytes]]

    @property
    def label(self) -> str:
        files = ", ".join(f"{name} [{kind}]" for name, kind, _ in self.mutated)
        return f"case {self.iteration}: {self.program} on_error={self.on_error}: {files}"


class CaseMaker:
    """Case ``i`` of a seed, from ``(seed, i)`` alone."""

    def __init__(self, base: Path, seed: int) -> None:
        self.base, self.seed = base, seed
        self.names = sorted(p.name for p in base.glob("*.refl"))
        self.identifiers = experiment_identifiers()
        self.mutators: dict[str, StructureMutator] = {}

    def mutator(self, name: str) -> StructureMutator:
        if name not in self.mutators:
            self.mutators[name] = StructureMutator(self.base / name, self.identifiers)
        return self.mutators[name]

    def __call__(self, iteration: int) -> Case:
        rng = np.random.default_rng([self.seed, iteration])
        program = PROGRAMS[int(rng.integers(len(PROGRAMS)))]
        on_error = "skip" if rng.random() < 0.5 else "stop"
        count = 2 if rng.random() < TWO_FILES else 1
        names = sorted(rng.choice(self.names, count, replace=False).tolist())
        mutated = [(name, *self.mutator(name).mutate(rng)) for name in names]
        return Case(iteration, program, on_error, mutated)


#: Phases of a run, in the order the driver goes through them (where a run stopped).
PHASES = ("headers", "checks", "rows", "results")


@dataclasses.dataclass
class Record:
    """Whether the driver only listed the files, and the phase the run reached."""

    listed: bool = False
    phase: int = 0


@contextlib.contextmanager
def mode_patches(driver_reads_headers: bool) -> Iterator[Record]:
    """``DEFER_MIN_FILES`` out of reach when the driver reads every header; yields a
    :class:`Record` of the run (``open_files`` and ``Run.reduce`` wrapped)."""
    record = Record()
    original, reduce = program_module.open_files, program_module.Run.reduce
    limit = inputs_module.DEFER_MIN_FILES

    def open_files(*args, **kwargs):
        files = original(*args, **kwargs)
        record.listed |= any(isinstance(f.info, inputs_module.DeferredFileInfo) for f in files)
        record.phase = max(record.phase, 1)
        return files

    def reduce_rows(self, statistic):
        record.phase = max(record.phase, 2)
        reduced = reduce(self, statistic)
        record.phase = 3
        return reduced

    program_module.open_files = open_files
    program_module.Run.reduce = reduce_rows
    if driver_reads_headers:
        inputs_module.DEFER_MIN_FILES = 10**9
    try:
        yield record
    finally:
        program_module.open_files = original
        program_module.Run.reduce = reduce
        inputs_module.DEFER_MIN_FILES = limit


@dataclasses.dataclass
class ModeRun:
    """One mode's run of a case."""

    outcome: engine.Outcome
    deferred: bool
    document: dict | None
    #: index in :data:`PHASES` of the phase the run ended in
    phase: int = 0

    @property
    def label(self) -> str:
        if self.outcome.traceback:
            return "traceback"
        if self.outcome.code == 0:
            return "ok"
        return "sorry" if self.outcome.stderr.startswith("Sorry: ") else f"exit {self.outcome.code}"


def run_mode(case: Case, mode: str, inputs: Path, work: Path) -> ModeRun:
    """``case``'s program on ``inputs`` in ``mode``, in the (empty) directory ``work``."""
    module = engine.discover_programs()[case.program]
    extra, driver = MODES[mode]
    expt = [str(EXPT)] if WITH_EXPERIMENTS else []
    args = [*expt, str(inputs), quiet(case.program), f"input.on_error={case.on_error}"]
    with mode_patches(driver) as record:
        outcome = engine.run_in_process(module, [*args, *extra], work)
    document = None
    target = work / f"{case.program}.json"
    if outcome.code == 0 and target.exists():
        with contextlib.suppress(ValueError):
            document = json.loads(target.read_text(encoding="utf-8"))
    return ModeRun(outcome, record.listed, document, record.phase)


def digests(folder: Path) -> dict[str, bytes]:
    return {p.name: hashlib.sha256(p.read_bytes()).digest() for p in sorted(folder.iterdir())}


def prepare(case: Case, base: Path, folder: Path, only: int | None = None) -> Path:
    """The base files in ``folder`` with ``case``'s mutations (``only``: just that one)."""
    shutil.copytree(base, folder)
    for i, (name, _kind, blob) in enumerate(case.mutated):
        if only is None or i == only:
            (folder / name).write_bytes(blob)
    return folder


def run_case(case: Case, base: Path, scratch: Path) -> tuple[dict[str, ModeRun], list[str]]:
    """Every mode of ``case``; (their runs, violations of the contract)."""
    root = Path(tempfile.mkdtemp(prefix="case_", dir=scratch))
    try:
        folder = prepare(case, base, root / "stills")
        before = digests(folder) | {"expt": hashlib.sha256(EXPT.read_bytes()).digest()}
        runs = {}
        for mode in MODES:
            work = root / f"work_{mode}"
            work.mkdir()
            runs[mode] = run_mode(case, mode, folder, work)
        after = digests(folder) | {"expt": hashlib.sha256(EXPT.read_bytes()).digest()}
        problems = compare(case, runs) + [
            f"input {name} modified" for name in before if before[name] != after.get(name)
        ]
        if set(after) != set(before):
            problems.append(f"files added beside the inputs: {sorted(set(after) - set(before))}")
        problems += check_first_named(case, runs, base, root)
    finally:
        shutil.rmtree(root)
    return runs, problems


def compare(case: Case, runs: dict[str, ModeRun]) -> list[str]:
    """Violations: each mode on its own, then the modes against ``driver``."""
    problems = []
    for mode, run in runs.items():
        problems += [f"{mode}: {p}" for p in check_mode(case, run)]
    reference = runs["driver"].outcome
    codes = {mode: run.outcome.code for mode, run in runs.items()}
    if len(set(codes.values())) > 1:
        problems.append(f"exit codes differ: {codes}")
    names = [f"/{name}" for name, _kind, _blob in case.mutated]
    for mode, run in runs.items():
        if run.outcome.stderr == reference.stderr:
            continue
        # by design (docs/pipeline.md, deferred headers): with the headers read by the
        # tasks, problems are found file by file in order, where the driver finds every
        # header's problem before any row's; both name a mutated file
        if run.deferred and not runs["driver"].deferred and len(names) > 1:
            firsts = [r.outcome.stderr.splitlines()[:1] for r in (runs["driver"], run)]
            if all(f and any(n in f[0] for n in names) for f in firsts):
                continue
        problems.append(
            f"stderr differs: driver {reference.stderr.strip()[:400]!r}, "
            f"{mode} {run.outcome.stderr.strip()[:400]!r}"
        )
    if runs["serial"].outcome.stderr != runs["nproc2"].outcome.stderr:
        problems.append(
            f"stderr differs: serial {runs['serial'].outcome.stderr.strip()[:400]!r}, "
            f"nproc2 {runs['nproc2'].outcome.stderr.strip()[:400]!r}"
        )
    documents = {mode: run.document for mode, run in runs.items() if run.document is not None}
    if "driver" in documents:
        for mode, document in documents.items():
            for block in BLOCKS:
                where = first_difference(documents["driver"].get(block), document.get(block))
                if where is not None:
                    problems.append(f"JSON '{block}' differs, driver vs {mode}: {where}")
    return problems


def check_mode(case: Case, run: ModeRun) -> list[str]:
    """Violations of one run on its own."""
    outcome = run.outcome
    names = [name for name, _kind, _blob in case.mutated]
    if outcome.code == 0:
        problems = engine.check_outcome(case.program, outcome, names[0])
        selection = (run.document or {}).get("selection", {})
        for entry in selection.get("skipped", []):
            path, reason = entry.get("path", ""), entry.get("reason", "")
            if os.path.basename(path) not in names:
                problems.append(f"skipped a file not mutated: {path}: {reason[:200]}")
            if case.on_error == "stop":
                problems.append(f"skipped with on_error=stop: {reason[:200]}")
            if any(words in reason for words in MISMATCH):
                problems.append(f"skipped a table of other experiments: {reason[:200]}")
        return problems
    named = (
        [n for n in names if f"/{n}" in outcome.stderr.splitlines()[0]] if outcome.stderr else []
    )
    # the Sorry must name a mutated file; which one is checked by check_first_named
    problems = engine.check_outcome(case.program, outcome, f"/{named[0] if named else names[0]}")
    if outcome.code == 1 and not named and not outcome.traceback:
        problems.append("the Sorry names none of the mutated files")
    return problems


def check_first_named(case: Case, runs: dict[str, ModeRun], base: Path, root: Path) -> list[str]:
    """With two mutated files and the driver's ``Sorry`` naming the second: the first
    alone must pass, or fail in a later phase of the driver's run (headers, then the
    program's checks, then rows, then results: :data:`PHASES`) than the second alone."""
    outcome = runs["driver"].outcome
    if len(case.mutated) < 2 or outcome.code != 1 or not outcome.stderr:
        return []
    first, second = case.mutated[0][0], case.mutated[1][0]
    if f"/{first}" in outcome.stderr.splitlines()[0]:
        return []
    alone = []
    for i in (0, 1):
        work = root / f"work_only_{i}"
        work.mkdir()
        folder = prepare(case, base, root / f"only_{i}", only=i)
        alone.append(run_mode(case, "driver", folder, work))
    if alone[0].outcome.code == 0 or alone[1].phase < alone[0].phase:
        return []
    return [
        f"names {second}, but {first} (earlier) fails on its own in phase "
        f"{PHASES[alone[0].phase]} (the second in {PHASES[alone[1].phase]}): "
        f"{alone[0].outcome.stderr.strip()[:300]!r}"
    ]


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two JSON values first differ (``None``: equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'driver' if key in a else 'the other'}"
            where = first_difference(a[key], b[key], f"{path}.{key}")
            if where is not None:
                return where
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items vs {len(b)}: {_short(a)} vs {_short(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            where = first_difference(x, y, f"{path}[{i}]")
            if where is not None:
                return where
        return None
    return None if a == b else f"{path}: {_short(a)} vs {_short(b)}"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "..."


# --- campaigns ------------------------------------------------------------------------


@dataclasses.dataclass
class Failure:
    label: str
    problems: list[str]
    outcomes: dict[str, tuple[int, str]]
    kept: str | None = None
    #: a hung case's Python stacks (:func:`hung_stacks`)
    stacks: str = ""


def keep(keep_dir: Path, seed: int, case: Case, failure: Failure) -> str:
    """The mutated files and the case's description in ``keep_dir/seed_<s>_case_<i>``."""
    folder = keep_dir / f"seed_{seed}_case_{case.iteration}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, _kind, blob in case.mutated:
        (folder / name).write_bytes(blob)
    description = {
        "seed": seed,
        "case": case.iteration,
        "program": case.program,
        "on_error": case.on_error,
        "mutated": [[name, kind] for name, kind, _ in case.mutated],
        "problems": failure.problems,
        "outcomes": failure.outcomes,
        "stacks": failure.stacks,
        "reproduce": f"python benchmarks/fuzz_many_files.py --seed {seed} --case {case.iteration}",
    }
    (folder / "case.json").write_text(json.dumps(description, indent=1) + "\n")
    return str(folder)


def run_cases(connection, base: Path, seed: int, first: int, stop: int, keep_dir) -> None:
    """Cases ``first .. stop - 1`` in this (forked) process, each reported to the parent:
    ``(i, None)`` before it, ``(i, (program, on_error, labels, deferred, failure))`` after."""
    make = CaseMaker(base, seed)
    with tempfile.TemporaryDirectory() as tmp:
        for iteration in range(first, stop):
            connection.send((iteration, None))
            case = make(iteration)
            runs, problems = run_case(case, base, Path(tmp))
            failure = None
            if problems:
                outcomes = {m: (r.outcome.code, r.outcome.stderr[-2000:]) for m, r in runs.items()}
                failure = Failure(case.label, problems, outcomes)
                if keep_dir is not None:
                    failure.kept = keep(keep_dir, seed, case, failure)
            labels = {mode: run.label for mode, run in runs.items()}
            deferred = {mode: run.deferred for mode, run in runs.items()}
            connection.send((iteration, (case.program, case.on_error, labels, deferred, failure)))
    connection.send(None)


@dataclasses.dataclass
class Tally:
    """Counts of a campaign."""

    outcomes: Counter = dataclasses.field(default_factory=Counter)
    deferred: Counter = dataclasses.field(default_factory=Counter)
    cases: Counter = dataclasses.field(default_factory=Counter)
    failures: list[Failure] = dataclasses.field(default_factory=list)


def supervise(
    base: Path, seed: int, first: int, iterations: int, batch: int, timeout: float, keep_dir
) -> Tally:
    """Cases in forked children of ``batch`` cases each; a case that takes longer than
    ``timeout`` seconds or kills its process is a violation, and the campaign goes on."""
    context = multiprocessing.get_context("fork")
    tally = Tally()
    it = first
    while it < iterations:
        stop = min(it + batch, iterations)
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=run_cases, args=(send, base, seed, it, stop, keep_dir))
        child.start()
        send.close()
        current, broken, stacks = it, None, ""
        while True:
            if not receive.poll(timeout):
                stacks = hung_stacks(child.pid)
                for pid in child_pids(child.pid):  # its workers too: none left behind
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                child.kill()
                broken = f"hang: no result after {timeout:g} s"
                break
            try:
                message = receive.recv()
            except EOFError:
                child.join()
                broken = f"crash: the process died (exit code {child.exitcode})"
                break
            if message is None:
                it = stop
                break
            current, result = message
            if result is None:
                continue
            program, on_error, labels, deferred, failure = result
            tally.cases[program, on_error] += 1
            for mode, label in labels.items():
                tally.outcomes[program, mode, label] += 1
                tally.deferred[program, mode] += deferred[mode]
            if failure is not None:
                tally.failures.append(failure)
                print(describe(failure), flush=True)
            it = current + 1
        child.join()
        receive.close()
        if broken is not None:
            case = CaseMaker(base, seed)(current)
            failure = Failure(case.label, [broken], {})
            failure.stacks = stacks
            if keep_dir is not None:
                failure.kept = keep(keep_dir, seed, case, failure)
            tally.failures.append(failure)
            print(describe(failure), flush=True)
            it = current + 1
    return tally


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux; else none)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def hung_stacks(pid: int) -> str:
    """The Python stacks of a hung case's process and its children (its workers), from
    ``py-spy dump`` when it is on the PATH (else ""): kept with the case."""
    import subprocess

    spy = shutil.which("py-spy")
    if spy is None:
        return ""
    dumps = []
    for process in map(str, [pid, *child_pids(pid)]):
        try:
            found = subprocess.run(
                [spy, "dump", "--pid", process], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError) as error:
            dumps.append(f"process {process}: no dump ({error})")
            continue
        dumps.append(found.stdout or found.stderr)
    return "\n".join(dumps)


def describe(failure: Failure) -> str:
    where = f" (kept in {failure.kept})" if failure.kept else ""
    return f"{failure.label}{where}:\n    " + "\n    ".join(failure.problems)


def show_case(base: Path, seed: int, iteration: int) -> int:
    """Run one case here and print every mode's outcome."""
    case = CaseMaker(base, seed)(iteration)
    print(case.label)
    with tempfile.TemporaryDirectory() as tmp:
        runs, problems = run_case(case, base, Path(tmp))
    for mode, run in runs.items():
        code, files = run.outcome.code, run.outcome.files
        print(f"  {mode:7s} exit {code}, deferred {run.deferred}: files {files}")
        for line in run.outcome.stderr.strip().splitlines()[-5:]:
            print(f"          {line}")
    for problem in problems:
        print(f"  VIOLATION {problem}")
    return 1 if problems else 0


def report(tally: Tally, took: float) -> None:
    total = sum(tally.cases.values())
    print(f"{total} cases in {took:.0f} s ({len(tally.failures)} with violations)")
    print(f"  {'program':30s} {'mode':7s} {'deferred':>8s}  outcomes")
    for program in PROGRAMS:
        for mode in MODES:
            labels = {
                label: n
                for (p, m, label), n in sorted(tally.outcomes.items())
                if (p, m) == (program, mode)
            }
            counts = ", ".join(f"{label} {n}" for label, n in labels.items())
            print(f"  {program:30s} {mode:7s} {tally.deferred[program, mode]:8d}  {counts}")
    for (program, on_error), n in sorted(tally.cases.items()):
        print(f"  cases {program} on_error={on_error}: {n}")
    kinds = Counter(p.split(":")[0] for f in tally.failures for p in f.problems)
    for problem, n in kinds.most_common():
        print(f"  VIOLATION {problem}: {n}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--first", type=int, default=0, help="first case number")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--case", type=int, default=None, help="run this case alone, in detail")
    parser.add_argument("--keep", type=Path, default=None, help="keep failing inputs here")
    parser.add_argument("--batch", type=int, default=50, help="cases per child process")
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed per case")
    parser.add_argument("--time-limit", type=float, default=None, help="stop after ~this many s")
    parser.add_argument(
        "--no-experiments", action="store_true", help="the directory alone, without .expt"
    )
    args = parser.parse_args(argv)
    global WITH_EXPERIMENTS
    WITH_EXPERIMENTS = not args.no_experiments  # children are forked: they see it
    engine.discover_programs()  # imported once, before the children fork
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = make_base(Path(tmp) / "base")
        if args.case is not None:
            return show_case(base, args.seed, args.case)
        tally = Tally()
        first = args.first
        while first < args.iterations:  # in slices, to stop in time
            if args.time_limit is not None and time.perf_counter() - start > args.time_limit:
                break
            stop = min(first + args.batch, args.iterations)
            part = supervise(base, args.seed, first, stop, args.batch, args.timeout, args.keep)
            tally.outcomes += part.outcomes
            tally.deferred += part.deferred
            tally.cases += part.cases
            tally.failures += part.failures
            first = stop
    report(tally, time.perf_counter() - start)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
