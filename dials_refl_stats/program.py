"""What every program shares: argument parsing, input loading, logging, the JSON record.

Programs stay thin: ``parse_command_line`` -> ``load_reflection_sources`` ->
``start_logging`` -> compute (``dials_refl_stats.analysis``) -> ``write_outputs``.
DIALS is imported here (and in the programs) only, never by a statistic.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from libtbx import Auto

from dials_refl_stats import __version__
from dials_refl_stats.analysis.distribution import Binning
from dials_refl_stats.output import atomic_path, make_document, plot_format, write_json
from dials_refl_stats.pipeline.arguments import (  # noqa: F401 - re-exported
    Invocation,
    parameters_record,
    parse_command_line,
)
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.reflections import (
    ReflectionLoadError,
    ReflectionSource,
    open_reflection_file,
)
from dials_refl_stats.selection import FlagSelection, UnknownFlagError


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


def _starred(choices: str, default: str) -> str:
    return " ".join(f"*{c}" if c == default else c for c in choices.split())


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
