"""What every program shares: argument parsing, input loading, logging, the JSON record.

Programs stay thin: ``parse_command_line`` -> ``load_reflection_sources`` ->
``start_logging`` -> compute (``dials_refl_stats.analysis``) -> ``write_outputs``.
DIALS is imported here (and in the programs) only, never by a statistic.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import libtbx.phil
import numpy as np
from libtbx import Auto

from dials_refl_stats import __version__
from dials_refl_stats.analysis.distribution import Binning
from dials_refl_stats.output import atomic_path, make_document, plot_format, write_json
from dials_refl_stats.reader import ReflectionFileError
from dials_refl_stats.reflections import (
    ReflectionLoadError,
    ReflectionSource,
    check_readable,
    open_reflection_file,
    sniff_format,
)
from dials_refl_stats.selection import FlagSelection, UnknownFlagError

try:
    from dials.util import Sorry
except ImportError:  # pragma: no cover - the programs need DIALS; the library does not

    class Sorry(Exception):  # type: ignore[no-redef]
        """Stand-in for ``dials.util.Sorry`` when DIALS is absent."""


#: libtbx.phil cites where a bad value came from: "(command line argument, line 1)".
PHIL_VALUE_ERROR = re.compile(r"\((command line argument|.*), line \d+\)")

EXPERIMENT_SUFFIXES = (".expt", ".json")


def selection_phil(default_flags: str, default_rule: str = "all") -> str:
    """Phil text of the ``selection`` scope shared by every program."""
    return f"""
selection
  .help = "Which reflections to use, by DIALS reflection flags."
{{
  flags = {default_flags}
    .type = strings
    .help = "Flag names (e.g. indexed, strong, integrated_sum, integrated_prf,"
            "integrated), or 'all' for every reflection. Several names are combined"
            "by 'rule'."
  rule = all any
    .type = choice
    .help = "all: every bit of every named flag must be set (DIALS get_flags(mask),"
            "so 'integrated' needs both integrated_sum and integrated_prf);"
            "any: at least one bit (get_flags(mask, all=False))."
}}
""".replace("rule = all any", f"rule = {_starred('all any', default_rule)}")


def output_phil(program: str, extra: str = "") -> str:
    """Phil text of the ``output`` scope: deterministic default file names."""
    return f"""
output
  .help = "Output files; written atomically (temporary file, then rename)."
{{
  log = dials.{program}.log
    .type = path
  json = {program}.json
    .type = path
  plot = {program}.png
    .type = path
    .help = "Plot file; the suffix chooses the format (png, svg, pdf). None: no plot."
{extra}
}}
"""


#: Added to every program's phil scope by :func:`parse_command_line`.
READER_PHIL = """
reader = *auto fast dials
  .type = choice
  .expert_level = 1
  .help = "How reflection files are read. fast: dials_refl_stats's own reader, which"
          "decodes only the columns a statistic needs; dials: DIALS's"
          "flex.reflection_table.from_file. auto: fast, falling back to DIALS for"
          "files the fast reader does not handle (legacy pickle tables)."
"""


def with_reader_scope(phil):
    """``phil`` plus the shared ``reader`` parameter (unless it already has one)."""
    if any(obj.name == "reader" for obj in phil.objects):
        return phil
    combined = libtbx.phil.parse(READER_PHIL)
    combined.adopt_scope(phil)
    return combined


def _starred(choices: str, default: str) -> str:
    return " ".join(f"*{c}" if c == default else c for c in choices.split())


@dataclass
class Invocation:
    """A parsed command line."""

    params: Any
    options: Any
    parser: Any
    reflection_paths: list[str]
    experiments: Any  # dxtbx ExperimentList
    experiment_paths: list[str] = field(default_factory=list)


def looks_like_reflection_file(argument: str) -> bool:
    """True for an existing file that is a reflection table (by content, not name)."""
    if not os.path.isfile(argument):
        return False
    try:
        kind = sniff_format(argument)
    except (OSError, ReflectionFileError):
        return False
    if kind == "pickle" and argument.endswith(EXPERIMENT_SUFFIXES):
        return False
    return kind != "unknown"


def reflection_arguments(args: Sequence[str] | None) -> list[str]:
    """The arguments (default ``sys.argv[1:]``) that are reflection files."""
    import sys

    args = sys.argv[1:] if args is None else args
    return [a for a in args if looks_like_reflection_file(a)]


#: Phil file suffixes DIALS's ``ArgumentParser`` reads as parameter files.
PHIL_SUFFIXES = (".phil", ".param", ".params", ".eff", ".def")
VERBOSITY_FLAG = re.compile(r"-v+")


class PhilOnlyParser:
    """The parameters of a command line holding only phil arguments and ``-v`` flags.

    Does what DIALS's ``ArgumentParser`` does with such a command line (the same
    libtbx.phil interpreter, phil files recognised by the same suffixes), without
    importing dxtbx and DIALS's model code: a one-second start-up saving. Offers the
    parser attributes the programs use: ``phil``, ``system_phil``, ``diff_phil``.
    """

    def __init__(self, system_phil, args: Sequence[str]) -> None:
        self.system_phil = system_phil
        interpreter = system_phil.command_line_argument_interpreter()
        self.verbose = 0
        sources = []
        for arg in args:
            if VERBOSITY_FLAG.fullmatch(arg):
                self.verbose += len(arg) - 1
            elif arg.endswith(PHIL_SUFFIXES) and os.path.isfile(arg) and os.path.getsize(arg):
                sources.append(libtbx.phil.parse(file_name=arg))
            elif "=" in arg and "://" not in arg:
                sources.append(interpreter.process_arg(arg=arg))
            else:
                raise ValueError(f"not a phil argument: {arg}")
        working, unused = system_phil.fetch(sources=sources, track_unused_definitions=True)
        if unused:
            raise ValueError("unrecognised parameters")
        self.params = working.extract()
        # As DIALS does: the working phil re-formatted from the extracted parameters.
        self.phil = system_phil.format(python_object=self.params)

    @property
    def diff_phil(self):
        return self.system_phil.fetch_diff(source=self.phil)


def parse_phil_only(phil, args: Sequence[str]) -> PhilOnlyParser | None:
    """Parse ``args`` without DIALS's parser; ``None`` if DIALS's parser is needed.

    That is for anything but phil arguments and ``-v``: experiment files, options
    (``-h``, ``-c``, ``--phil``), unknown files; and for every error, so that the
    user sees DIALS's own message for it.
    """
    try:
        return PhilOnlyParser(with_reader_scope(phil), args)
    except Exception:
        return None


def parse_command_line(
    args: Sequence[str] | None, phil, usage: str, epilog: str
) -> Invocation | None:
    """Parse like a DIALS program; ``None`` when there is no input (help printed).

    Reflection files are recognised by their content and read by our own loader, so
    that a large table is never decoded twice (or by DIALS at all once the fast
    reader is in use); everything else goes through DIALS's ``ArgumentParser``, except
    that a command line of reflection files and phil parameters only is parsed by
    :class:`PhilOnlyParser` (same result, without DIALS's import cost).
    """
    import sys

    args = list(sys.argv[1:] if args is None else args)
    reflection_paths = reflection_arguments(args)
    others = [a for a in args if a not in reflection_paths]
    if reflection_paths:
        quick = parse_phil_only(phil, others)
        if quick is not None:
            return Invocation(
                params=quick.params,
                options=argparse.Namespace(verbose=quick.verbose),
                parser=quick,
                reflection_paths=reflection_paths,
                experiments=[],
            )
    return _parse_with_dials(reflection_paths, others, phil, usage, epilog)


def _parse_with_dials(
    reflection_paths: list[str],
    others: list[str],
    phil,
    usage: str,
    epilog: str,
) -> Invocation | None:
    """:func:`parse_command_line` through DIALS's ``ArgumentParser``."""
    from dials.util.options import ArgumentParser, flatten_experiments

    parser = ArgumentParser(
        usage=usage,
        phil=with_reader_scope(phil),
        read_experiments=True,
        read_reflections=False,
        check_format=False,
        epilog=epilog,
    )
    try:
        params, options, unhandled = parser.parse_args(
            others, show_diff_phil=False, return_unhandled=True
        )
    except RuntimeError as error:  # libtbx.phil: bad value, e.g. n_slots=abc
        text = str(error).splitlines()[0] if str(error) else ""
        if not PHIL_VALUE_ERROR.search(text):
            raise
        raise Sorry(f"Bad parameter value: {text}") from None
    for argument in unhandled:
        if "=" in argument:
            raise Sorry(f"Unrecognised parameter: {argument}")
        if not os.path.exists(argument):
            raise Sorry(f"{argument}: file not found")
        if argument.endswith(EXPERIMENT_SUFFIXES):
            raise Sorry(f"{argument}: not a readable DIALS experiment list")
        try:
            check_readable(argument)
        except ReflectionLoadError as error:
            raise Sorry(str(error)) from None
        raise Sorry(f"{argument}: not a DIALS reflection or experiment file")

    experiments = flatten_experiments(params.input.experiments)
    if not reflection_paths and not experiments:
        parser.print_help()
        return None
    if not reflection_paths:
        raise Sorry("No reflection file given (e.g. indexed.refl or integrated.refl)")
    return Invocation(
        params=params,
        options=options,
        parser=parser,
        reflection_paths=reflection_paths,
        experiments=experiments,
        experiment_paths=[w.filename for w in params.input.experiments],
    )


def load_reflection_sources(paths: Sequence[str], reader: str = "auto") -> list[ReflectionSource]:
    """Open every reflection file; any problem becomes a one-line ``Sorry``."""
    sources = []
    for path in paths:
        try:
            sources.append(open_reflection_file(path, reader))
        except ReflectionLoadError as error:
            raise Sorry(str(error)) from None
    return sources


def make_flag_selection(scope) -> FlagSelection:
    """The ``selection`` phil scope as a :class:`FlagSelection` (errors as ``Sorry``)."""
    names = tuple(scope.flags or ())
    names = tuple(n for part in names for n in part.split(",") if n)
    try:
        return FlagSelection(names=names, rule=scope.rule)
    except UnknownFlagError as error:
        raise Sorry(str(error).capitalize()) from None


def require_columns(source: ReflectionSource, columns: Sequence[str], why: str) -> None:
    """``Sorry`` naming the file and the first missing column."""
    for column in columns:
        if column not in source.column_names:
            raise Sorry(f"{source.path}: no '{column}' column ({why})")


def dials_version() -> str | None:
    try:
        from dials.util.version import dials_version as version
    except ImportError:  # pragma: no cover
        return None
    return version()


def start_logging(invocation: Invocation, program: str) -> logging.Logger:
    """Configure DIALS logging to ``params.output.log``; log version and diff phil."""
    from dials.util import log

    log.config(verbosity=invocation.options.verbose, logfile=invocation.params.output.log)
    logger = logging.getLogger(f"dials.{program}")
    logger.info("dials_refl_stats %s, %s", __version__, dials_version())
    diff = invocation.parser.diff_phil.as_str()
    if diff:
        logger.info("The following parameters have been modified:\n\n%s", diff)
    return logger


def parameters_record(invocation: Invocation) -> dict:
    """Effective and changed parameters, as phil text a rerun can read back.

    Input file names are left out: a rerun gives its own data files.
    """
    parser = invocation.parser
    working = parser.phil.format(python_object=invocation.params)
    effective = _without_input_scope(working.as_str())
    diff = _without_input_scope(parser.diff_phil.as_str())
    return {"effective_phil": effective, "diff_phil": diff}


def _without_input_scope(text: str) -> str:
    scope = libtbx.phil.parse(text)
    kept = [obj for obj in scope.objects if obj.name != "input"]
    return "".join(obj.as_str() for obj in kept)


def describe_inputs(sources: Sequence[ReflectionSource], invocation: Invocation) -> dict:
    """The ``inputs`` block of the JSON envelope."""
    return {
        "reflections": [
            {
                "path": source.path,
                "size_bytes": os.path.getsize(source.path),
                "rows": source.nrows,
                "reader": source.backend,
                "identifiers": {str(k): v for k, v in source.identifiers.items()},
            }
            for source in sources
        ],
        "experiments": [{"path": path} for path in invocation.experiment_paths],
        "n_experiments": len(invocation.experiments),
    }


@dataclass(frozen=True)
class ExperimentGroup:
    """Rows of one experiment in one file (or rows with no experiment, ``id`` -1)."""

    file_index: int
    id: int
    identifier: str | None

    def label(self, n_files: int) -> str:
        if self.id < 0:
            name = "unassigned (id -1)"
        elif self.identifier:
            name = f"experiment {self.id} ({self.identifier})"
        else:
            name = f"experiment {self.id}"
        return f"file {self.file_index}: {name}" if n_files > 1 else name

    def describe(self, n_files: int) -> dict:
        return {
            "file_index": self.file_index,
            "id": self.id,
            "identifier": self.identifier,
            "label": self.label(n_files),
        }


def group_rows_by_experiment(
    file_index: int, identifiers: dict[int, str], ids: np.ndarray
) -> tuple[list[ExperimentGroup], np.ndarray]:
    """The experiments present in ``ids`` (sorted) and each row's index into them."""
    values, group_of_row = np.unique(np.asarray(ids), return_inverse=True)
    groups = [ExperimentGroup(file_index, int(v), identifiers.get(int(v))) for v in values]
    return groups, group_of_row.astype(np.int64)


def make_binning(scope) -> Binning:
    """The ``histogram`` phil scope as a :class:`Binning` (``Auto``/``None`` = from data)."""

    def bound(value):
        return None if value is None or value is Auto else float(value)

    try:
        return Binning(bound(scope.data_min), bound(scope.data_max), int(scope.n_slots))
    except ValueError as error:
        raise Sorry(str(error)) from None


def require_plot_format(path: str | None) -> None:
    """``Sorry`` for a plot file name whose suffix is not png, svg or pdf."""
    if path:
        try:
            plot_format(path)
        except ValueError as error:
            raise Sorry(str(error)) from None


def write_outputs(
    invocation: Invocation,
    sources: Sequence[ReflectionSource],
    *,
    program: str,
    selection: dict,
    results: Any,
    plot: Callable[[str], None] | None,
) -> dict:
    """Write the JSON document and the plot (each atomically); return the document.

    The document records the inputs and the parameters of ``invocation``; file names
    come from its ``output`` scope.
    """
    document = make_document(
        program=f"dials.{program}",
        dials_version=dials_version(),
        inputs=describe_inputs(sources, invocation),
        parameters=parameters_record(invocation),
        selection=selection,
        results=results,
    )
    output = invocation.params.output
    if output.plot and plot is not None:
        with atomic_path(output.plot) as temporary:
            plot(temporary)
    if output.json:
        write_json(output.json, document)
    return document
