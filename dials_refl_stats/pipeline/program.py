"""A DIALS program on the shared pipeline: parse -> open -> reduce -> finalize -> write.

A program module defines ``help_message``, ``phil_scope`` and ``run`` as every DIALS
program does, plus a :class:`Program` subclass that says what is particular to it
(parameter checks, its :class:`~dials_refl_stats.analysis.statistic.Statistic`, its
JSON results, log lines and plot). :func:`run_program` does everything else, the same
way for every program.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import operator
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from dials_refl_stats import __version__
from dials_refl_stats.analysis.statistic import ExperimentInfo, Statistic
from dials_refl_stats.compact import compact_column, is_compact
from dials_refl_stats.output import make_document, write_json
from dials_refl_stats.pipeline.arguments import (
    EXPERIMENT_SUFFIXES,
    Invocation,
    diff_phil,
    parameters_record,
    parse_command_line,
)
from dials_refl_stats.pipeline.engines import make_engine
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.execute import (
    HeaderPass,
    HeaderRows,
    MissingColumnError,
    RunPartial,
    SelectionPlan,
    reduce_files,
    serial_engine,
)
from dials_refl_stats.pipeline.inputs import (
    ListedFiles,
    OpenedFile,
    check_scan_lengths,
    describe_inputs,
    experiment_infos,
    list_files,
    open_file,
    open_files,
    split_collections,
)
from dials_refl_stats.pipeline.interrupts import interrupts_end_the_run
from dials_refl_stats.pipeline.outputs import OutputFiles, run_outputs
from dials_refl_stats.pipeline.phil import check_numbers, make_flag_selection, owner_of
from dials_refl_stats.reflections import ReflectionLoadError


@dataclass
class Run:
    """Everything a program knows about its run once the inputs are open."""

    invocation: Invocation
    params: Any
    files: list[OpenedFile]
    experiments: Any  # dxtbx ExperimentList or LightExperimentList (may be empty)
    experiment_infos: list[ExperimentInfo]
    plan: SelectionPlan
    records: list = field(default_factory=list)  # FileRecord of every file, once reduced
    #: the JSON's form: compact (past many files or experiments) or full
    compact: bool = False
    #: every file is read once (dials.refl_stats): no first pass (:meth:`reduce`)
    one_pass: bool = False
    #: given the path of a file lacking a column, raises the program's own ``Sorry``
    #: for it (its headers read by the tasks, the driver has not checked it)
    explain: Callable[[str], None] | None = None
    #: what the headers' pass computed from the rows (``Program.header_rows``), if any
    first_pass: HeaderRows | None = None

    def reduce(self, statistic: Statistic) -> RunPartial:
        """``statistic`` over every file of the run, on the engine ``mp`` asks for."""
        params, files = self.params, self.files
        if isinstance(files, ListedFiles):
            infos, sizes = files.infos, [-1] * len(files)
        else:
            infos, sizes = [f.info for f in files], [f.size_bytes for f in files]
        try:
            return reduce_files(
                statistic,
                self.plan,
                infos,
                sizes,
                reader=params.reader,
                skip_errors=params.input.on_error == "skip",
                engine=make_engine(params.mp),
                n_workers=params.mp.nproc,
            )
        except ReflectionLoadError as error:
            failure = error
        if isinstance(failure, MissingColumnError) and self.explain is not None:
            self.explain(failure.path)  # outside the handler: one line, no chained error
        raise Sorry(str(failure))

    @functools.cached_property
    def paths(self) -> Sequence[str]:
        if isinstance(self.files, ListedFiles):
            return self.files.paths
        return [f.info.path for f in self.files]

    @property
    def title(self) -> str:
        """Input names for titles: basenames, and a count past three files."""
        paths = self.paths
        if len(paths) > 3:
            first, last = (os.path.basename(paths[i]) for i in (0, -1))
            return f"{first} ... {last} ({len(paths)} files)"
        return ", ".join(map(os.path.basename, paths))


class Program(ABC):
    """What is particular to one program; see :func:`run_program` for the rest."""

    name: str  # e.g. "spot_size_histogram"
    usage: str
    #: ``selection.flags`` default, for the shared fallback rule (None: no fallback).
    default_flags: tuple[str, ...] | None = None
    #: Whether experiments improve the results (image numbers, geometry): then the
    #: ``X.expt`` beside each ``X.refl`` of a directory, glob or list file is read.
    wants_experiments: bool = False
    #: Whether the program needs from the experiments only identifiers, scans, beams and
    #: detectors: then ``.expt`` files are read without DIALS's parser when that gives
    #: the same models (``pipeline/experiment_models.py``; ~1.5-2.5 s of start-up saved).
    light_experiments: bool = False
    #: Whether the program uses the experiments' crystals: with ``light_experiments``,
    #: every crystal a file lists is then made at parse time (as DIALS's parser does),
    #: and files with crystals the light reader does not make (scan-varying, unusual)
    #: are read by DIALS's parser.
    uses_crystals: bool = False
    #: Whether the headers of many small files may be read by the tasks, with the rows
    #: (:class:`~dials_refl_stats.pipeline.inputs.DeferredFileInfo`): only for programs
    #: that need no header before the run (``check_file`` runs after it).
    defers_headers: bool = False
    #: Whether the program makes a row (or frame bin) for every image of the scans: then
    #: the scans' lengths are checked (``check_scan_lengths``; :meth:`scans_too_long`).
    rows_per_image: bool = False

    def scans_too_long(self, error: Sorry) -> None:
        """The scans have more images than a table of one row per image is made for
        (``error`` says so): the run stops with it."""
        raise error

    def experiments_known(self, params: Any, experiments: Sequence[ExperimentInfo]) -> None:
        """Told the run's experiments before any file is checked (``check_file``)."""

    def headers_with_rows(self, params: Any, with_experiments: bool) -> bool:
        """Whether this run needs no header before it (:attr:`defers_headers`, or what
        ``params`` and the experiments make of it)."""
        return self.defers_headers

    def header_rows(self, params: Any, with_experiments: bool) -> Statistic | None:
        """For a run that needs the headers first: a statistic of the rows it would
        compute in a pass of its own before the run, which the headers' pass may compute
        from the rows it reads anyway (:class:`~.execute.HeaderPass`; the result in
        ``Run.first_pass``). Then the headers of many files are always read by that pass,
        serially too. ``None``: headers only."""
        return None

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(f"dials.{self.name}")

    def validate(self, params: Any) -> None:
        """``Sorry`` for bad parameter values (before any file is read)."""

    def output_targets(self, params: Any) -> dict[str, str | None]:
        output = params.output
        return {"log": output.log, "json": output.json, "plot": output.plot}

    def selection_plan(self, params: Any) -> SelectionPlan:
        requested = make_flag_selection(params.selection)
        at_default = self.default_flags is not None and requested.names == self.default_flags
        return SelectionPlan(requested, fallback=bool(params.selection.fallback and at_default))

    def check_file(self, opened: OpenedFile, params: Any) -> None:
        """``Sorry`` when a file lacks what this program needs (from its header)."""

    @abstractmethod
    def statistic(self, run: Run) -> Statistic:
        """The statistic of this run."""

    def finalize(self, final: Any, run: Run) -> Any:
        """Work on the statistic's result that needs the driver (e.g. dxtbx geometry)."""
        return final

    @abstractmethod
    def results(self, final: Any, run: Run) -> dict:
        """The JSON ``results``."""

    def selection_record(self, final: Any, run: Run, reduced: RunPartial) -> dict:
        """The JSON ``selection`` block (shared form; programs may add to it)."""
        return describe_selection(run, reduced)

    @abstractmethod
    def log_results(self, final: Any, run: Run) -> None:
        """Tables and warnings in the log."""

    @abstractmethod
    def summary_line(self, final: Any, run: Run) -> str:
        """The one stable line a workflow scrapes from the log."""

    def plot(self, final: Any, run: Run, path: str) -> None:
        """Draw the plot into ``path`` (format from ``params.output.plot``)."""

    def write_files(self, outputs: OutputFiles, final: Any, run: Run, document: dict) -> None:
        """Write the plot and the JSON document to the run's temporary output files."""
        if "plot" in outputs.targets:
            self.plot(final, run, outputs.temporary("plot"))
        if "json" in outputs.targets:
            write_json(outputs.temporary("json"), document, atomic=False)


def describe_selection(run: Run, reduced: RunPartial) -> dict:
    """Flags, counts, the per-file selected counts (the rows are in ``inputs``), the
    fallbacks grouped by flags and reason, and the skipped files."""
    records = reduced.records
    skipped = list(filter(_SKIPPED, records))
    n_selected = list(map(_N_SELECTED, records))
    return {
        **run.plan.requested.describe(),
        "fallback_rule": (
            "when selection.flags is at its default and selection.fallback is True, a "
            "file in which no row has any bit of those flags uses 'strong' (every row "
            "when none is strong)"
        ),
        "n_rows": sum(map(_N_ROWS, records)),
        "n_selected": sum(n_selected),
        "files": {"n_selected": _column(n_selected, run.compact)},
        "fallbacks": describe_fallbacks(records, run.compact),
        "skipped": [
            {"file_index": r.index, "path": run.paths[r.index], "reason": r.skipped}
            for r in skipped
        ],
    }


_N_ROWS, _N_SELECTED = operator.attrgetter("n_rows"), operator.attrgetter("n_selected")
_SKIPPED, _FALLBACK = operator.attrgetter("skipped"), operator.attrgetter("fallback")


def _column(values: list, compact: bool) -> list | dict:
    return compact_column(values) if compact else values


def describe_fallbacks(records: Sequence, compact: bool) -> list[dict]:
    """Files whose selection fell back, one entry per (flags, reason) with its files
    (``file_index`` as runs in the compact form)."""
    groups: dict[tuple, list[int]] = {}
    for r in filter(_FALLBACK, records):
        groups.setdefault((tuple(r.selection), r.fallback), []).append(r.index)
    return [
        {
            "flags": list(flags),
            "reason": reason,
            "n_files": len(files),
            "file_index": _column(files, compact),
        }
        for (flags, reason), files in groups.items()
    ]


def build_document(name: str, run: Run, *, selection: dict, results: Any) -> dict:
    """The JSON document of program ``name`` (the shared envelope around ``results``)."""
    return make_document(
        program=f"dials.{name}",
        form="compact" if run.compact else "full",
        dials_version=dials_version(),
        inputs=describe_inputs(
            run.files,
            run.invocation.experiment_paths,
            len(run.experiment_infos),
            run.compact,
            run.paths,
        ),
        parameters=parameters_record(run.invocation),
        selection=selection,
        results=results,
    )


def restore_auto_choices(system_phil, params) -> None:
    """``name=auto`` for a choice with an ``auto`` option extracts as libtbx's ``Auto``
    object, not the word: put the word back (``reader=auto``, ``source=auto``)."""
    from libtbx import Auto

    for definition in system_phil.all_definitions():
        phil = definition.object
        if phil.type.phil_type != "choice" or getattr(phil.type, "multi", False):
            continue
        if "auto" not in (w.value.lstrip("*") for w in phil.words):
            continue
        owner, name = owner_of(params, definition.path)
        if owner is not None and getattr(owner, name, None) is Auto:
            setattr(owner, name, "auto")


def paired_experiments(reflections: Sequence[str], others: Sequence[str]) -> list[str]:
    """``X.expt`` for every ``X.refl`` when each has one, no experiments were given and
    ``input.pair_experiments`` is not switched off (as ``name=False`` on the command line)."""
    if any(_names_experiments(a) for a in others):
        return []
    if any(a.replace(" ", "").endswith("pair_experiments=False") for a in others):
        return []
    stems = []
    for path in reflections:  # the first file without one ends the search
        stem = os.path.splitext(path)[0] + ".expt"
        if not os.path.isfile(stem):
            return []
        stems.append(stem)
    return stems


def _names_experiments(argument: str) -> bool:
    """An experiment file given on the command line: a bare ``.expt`` path or
    ``[input.]experiments=...`` (not an output named ``x.expt``)."""
    if "=" in argument:
        return argument.split("=", 1)[0].strip().split(".")[-1] == "experiments"
    return argument.endswith(EXPERIMENT_SUFFIXES)


def dials_version() -> str | None:
    try:
        from dials.util.version import dials_version as version
    except ImportError:  # pragma: no cover
        return None
    return version()


def run_program(program: Program, args: Sequence[str] | None, phil, help_message: str) -> None:
    """Run ``program`` on a command line, as a DIALS program does.

    Every user error is a ``Sorry`` raised before anything is written, or, when found
    while reading the data, with every output removed again; an interrupted run leaves
    nothing either (:mod:`~dials_refl_stats.pipeline.interrupts`).
    """
    with interrupts_end_the_run(f"dials.{program.name}"):
        _run_program(program, args, phil, help_message)


def _run_program(program: Program, args: Sequence[str] | None, phil, help_message: str) -> None:
    import sys

    args = list(sys.argv[1:] if args is None else args)
    collected, others = split_collections(args)
    if program.wants_experiments and collected:
        others += paired_experiments(collected, others)
    try:
        invocation = parse_command_line(
            others,
            phil,
            program.usage,
            help_message,
            collected,
            light_experiments=program.light_experiments,
            crystals=program.uses_crystals,
        )
    except RuntimeError as error:  # dxtbx: two experiment files with the same identifiers
        text = str(error).split(": ", 1)[-1]
        if "ExperimentList" not in text:
            raise
        raise Sorry(f"experiments: {text}") from None
    if invocation is None:
        return
    params = invocation.params
    restore_auto_choices(invocation.parser.system_phil, params)
    check_numbers(invocation.parser.system_phil, params)
    program.validate(params)
    plan = program.selection_plan(params)
    inputs = [*invocation.reflection_paths, *invocation.experiment_paths, *list_files(args)]
    checked = OutputFiles(program.output_targets(params), inputs)  # the targets, checked
    experiments = invocation.experiments
    infos = experiment_infos(experiments)
    if program.rows_per_image:
        try:
            check_scan_lengths(infos, invocation.experiment_paths)
        except Sorry as error:
            program.scans_too_long(error)
    program.experiments_known(params, infos)
    skip_errors = params.input.on_error == "skip"
    # many files on several workers: their headers are read in the tasks, with the rows
    # when the program needs none before the run, else in a first pass of their own
    parallel = make_engine(params.mp) is not serial_engine
    with_rows = program.headers_with_rows(params, bool(infos))
    header_rows = None if with_rows else program.header_rows(params, bool(infos))
    files = open_files(
        invocation.reflection_paths,
        params.reader,
        infos,
        skip_errors,
        with_rows or parallel or header_rows is not None,
    )
    listed = isinstance(files, ListedFiles)  # only listed: the tasks read the headers
    for opened in [] if listed else files:
        if not opened.info.problem:
            program.check_file(opened, params)
    if infos and listed:
        # the tasks read these headers and map their ids to the experiments, as here
        plan = dataclasses.replace(plan, experiments=infos, n_files=len(files))
    run = Run(
        invocation, params, files, experiments, infos, plan, compact=compact_form(files, params)
    )
    del files  # run.files only: deferred headers replace the listing
    run.explain = functools.partial(explain_missing_column, program, params)
    if not with_rows and listed:
        headers_first(program, run, header_rows)
    statistic = program.statistic(run)

    verbosity = invocation.options.verbose
    with run_outputs(checked, verbosity) as outputs:
        log_start(program, invocation)
        reduced = run.reduce(statistic)
        with objects_frozen():
            _finish(program, run, statistic, reduced, outputs)


def _finish(
    program: Program, run: Run, statistic: Statistic, reduced: RunPartial, outputs: Any
) -> None:
    """The results of a reduced run: checked headers, log, JSON and plots."""
    run.records = reduced.records
    deferred_headers(program, run, reduced)
    log_files(program, run, reduced)
    final = program.finalize(statistic.finalize(reduced.partial), run)
    program.log_results(final, run)
    document = build_document(
        program.name,
        run,
        selection=program.selection_record(final, run, reduced),
        results=program.results(final, run),
    )
    program.write_files(outputs, final, run, document)
    program.logger.info(program.summary_line(final, run))


@contextlib.contextmanager
def objects_frozen():
    """The objects that exist now (with 10^5-10^6 files: the per-file records and
    headers, which hold no reference cycles) left out of the cyclic garbage collector's
    full passes while the results are made (each pass over them took ~0.1 s)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def explain_missing_column(program: Program, params: Any, path: str) -> None:
    """The program's ``Sorry`` for the file at ``path`` (which lacks a column a task
    needed), from its header as the driver would have checked it; nothing if the header
    cannot be read or the program finds nothing wrong with it."""
    try:
        opened = open_file(path, 0, params.reader, [], 1)
    except ReflectionLoadError:
        return
    program.check_file(opened, params)


def headers_first(program: Program, run: Run, rows: Statistic | None = None) -> None:
    """The listed files' headers, read by a first pass of the run's engine
    (:class:`HeaderPass`, with ``rows`` over the rows where it can), into ``run.files``
    (checked as in :func:`deferred_headers`) and ``run.first_pass``."""
    reduced = run.reduce(HeaderPass(rows))
    deferred_headers(program, run, reduced)
    run.first_pass = reduced.partial


def compact_form(files: Sequence[OpenedFile], params: Any) -> bool:
    """Whether the run's JSON takes the compact form (``output.json_form``; by default
    past :data:`~dials_refl_stats.compact.COMPACT_THRESHOLD` files or identifiers)."""
    form = str(getattr(params.output, "json_form", "auto")).lower()
    # every file is at least one group: past the threshold in files, no need to count
    if isinstance(files, ListedFiles) or is_compact(len(files), len(files), form):
        return is_compact(len(files), len(files), form)
    n_groups = sum(max(1, len(f.info.identifiers)) for f in files)
    return is_compact(len(files), n_groups, form)


def deferred_headers(program: Program, run: Run, reduced: RunPartial) -> None:
    """Headers the tasks read (deferred small files) into ``run.files``, checked by the
    program once per distinct set of columns (a ``Sorry`` names the first such file)."""
    if not any(r.opened is not None for r in reduced.records):
        return
    headers = {r.index: r.opened for r in reduced.records if r.opened is not None}
    files = run.files  # listed files are made only where no header came back
    run.files = [headers[i] if i in headers else files[i] for i in range(len(files))]
    # the form counts experiment identifiers, which only the headers tell
    run.compact = compact_form(run.files, run.params)
    checked: set[frozenset[str]] = set()
    for opened in run.files:
        if not opened.info.problem and opened.columns not in checked:
            program.check_file(opened, run.params)
            checked.add(opened.columns)


def log_start(program: Program, invocation: Invocation) -> None:
    logger = program.logger
    logger.info("dials_refl_stats %s, %s", __version__, dials_version())
    diff = diff_phil(invocation.parser).as_str()
    if diff:
        logger.info("The following parameters have been modified:\n\n%s", diff)


#: Per-file log lines only for this many files (all of them with -v).
MAX_FILE_LINES = 20


def log_files(program: Program, run: Run, reduced: RunPartial) -> None:
    """Per-file selection lines (a few, or all with ``-v``); fallbacks and skips."""
    logger = program.logger
    records = reduced.records
    verbose = run.invocation.options.verbose > 0
    every = verbose or len(records) <= MAX_FILE_LINES
    # past a few files (and without -v) only the skipped files have lines of their own
    for record in records if every else filter(_SKIPPED, records):
        path = run.paths[record.index]
        if record.skipped:
            logger.warning("Skipped %s", record.skipped)
            continue
        logger.info(
            "%s: %d of %d reflections selected (%s)",
            path,
            record.n_selected,
            record.n_rows,
            ", ".join(record.selection) or "all",
        )
        if record.fallback:
            logger.info("%s: %s", path, record.fallback)
    n_selected = sum(map(_N_SELECTED, records))
    if not every:
        n_fallback = sum(1 for _ in filter(_FALLBACK, records))
        logger.info(
            "%d files: %d of %d reflections selected (%s)%s; per-file lines with -v",
            len(records),
            n_selected,
            sum(map(_N_ROWS, records)),
            ", ".join(run.plan.requested.names) or "all",
            f", {n_fallback} files fell back to another selection" if n_fallback else "",
        )
    if not n_selected:
        requested = run.plan.requested
        flags = "+".join(requested.names) or "all"
        several_bits = requested.mask & (requested.mask - 1)
        hint = (
            ": rows need every one of those flags (e.g. integrated is integrated_sum and "
            "integrated_prf, and summation-only tables have no prf); selection.rule=any "
            "keeps rows with any of them"
            if requested.rule == "all" and several_bits
            else ""
        )
        logger.warning(
            "No reflections selected (selection.flags=%s, rule=%s)%s",
            flags,
            requested.rule,
            hint,
        )
