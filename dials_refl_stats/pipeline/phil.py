"""Phil scopes every program shares: selection, input, parallelism, output."""

from __future__ import annotations

import math
from typing import Any

from libtbx import Auto

from dials_refl_stats.analysis.distribution import Binning
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.selection import FlagSelection, UnknownFlagError


def _starred(choices: str, default: str) -> str:
    return " ".join(f"*{c}" if c == default else c for c in choices.split())


def selection_phil(default_flags: str, default_rule: str = "all") -> str:
    """Phil text of the ``selection`` scope shared by every program."""
    rules = _starred("all any", default_rule)
    return f"""
selection
  .help = "Which reflections to use, by DIALS reflection flags."
{{
  flags = {default_flags}
    .type = strings
    .help = "Flag names (e.g. indexed, strong, integrated_sum, integrated_prf,"
            "integrated), or 'all' for every reflection. Several names are combined"
            "by 'rule'."
  rule = {rules}
    .type = choice
    .help = "all: every bit of every named flag must be set (DIALS get_flags(mask),"
            "so 'integrated' needs both integrated_sum and integrated_prf);"
            "any: at least one bit (get_flags(mask, all=False))."
  fallback = True
    .type = bool
    .help = "With selection.flags at its default, a file in which no row has any bit"
            "of those flags (e.g. strong.refl for 'indexed') uses 'strong' instead"
            "(every row when none is strong). Logged and recorded in the JSON."
}}
"""


INPUT_PHIL = """
input
{
  on_error = *stop skip
    .type = choice
    .help = "stop: the first unreadable reflection file stops the run (Sorry naming"
            "it). skip: go on; skipped files and why are logged and in the JSON."
  pair_experiments = True
    .type = bool
    .help = "For reflection files named by a directory, glob or list file, and no"
            "experiments given: read X.expt beside each X.refl (when every file has"
            "one) for programs that use experiments (image numbers, geometry)."
}
mp
  .help = "Parallel processing of many files."
{
  method = *multiprocessing dask
    .type = choice
    .help = "multiprocessing: mp.nproc local processes (1: in this process)."
            "dask: a Dask distributed cluster (see mp.dask)."
  nproc = 1
    .type = int(value_min=1, value_max=1024)
    .help = "Worker processes (multiprocessing), or local Dask workers when no"
            "scheduler is given."
  dask
  {
    scheduler_address = None
      .type = str
      .help = "Address of a running Dask scheduler, e.g. tcp://host:8786."
    scheduler_file = None
      .type = path
      .help = "Scheduler file written by 'dask scheduler --scheduler-file',"
              "dask-jobqueue or dask-mpi."
    timeout = 30
      .type = float(value_min=0.1, value_max=3600)
      .help = "Seconds to wait for the scheduler (its scheduler file to appear, then"
              " the connection) and, during a run, for a worker while the scheduler"
              " has none, before giving up (Sorry). Raise it when workers wait in a"
              " batch queue (dask-jobqueue)."
  }
}
"""


#: ``output.json_form``: the full or the compact JSON (``dials_refl_stats.compact``).
JSON_FORM_PHIL = """\
  json_form = *auto full compact
    .type = choice
    .help = "full: every per-file and per-experiment column, with labels and"
            "identifiers; compact: file names as a numbered template, index columns"
            "as runs, no per-experiment labels, 4 significant digits (docs/json.md);"
            "auto: compact past 1000 reflection files or experiment identifiers."
"""


def output_phil(program: str, extra: str = "") -> str:
    """Phil text of the ``output`` scope: deterministic default file names."""
    return f"""
output
  .help = "Output files; written to temporary files and renamed into place together"
          "at the end of a successful run (nothing is left behind on an error)."
{{
  log = dials.{program}.log
    .type = path
  json = {program}.json
    .type = path
  plot = {program}.png
    .type = path
    .help = "Plot file; the suffix chooses the format (png, svg, pdf). None: no plot."
{JSON_FORM_PHIL}{extra}
}}
"""


def make_flag_selection(scope) -> FlagSelection:
    """The ``selection`` phil scope as a :class:`FlagSelection` (errors as ``Sorry``)."""
    names = tuple(scope.flags or ())
    names = tuple(n for part in names for n in part.split(",") if n)
    try:
        return FlagSelection(names=names, rule=scope.rule)
    except UnknownFlagError as error:
        raise Sorry(str(error).capitalize()) from None


#: Largest histogram slot count (JSON and plot sizes grow with it).
MAX_SLOTS = 100_000


def make_binning(scope) -> Binning:
    """The ``histogram`` phil scope as a :class:`Binning` (``Auto``/``None`` = from data)."""

    def bound(name: str) -> float | None:
        value = getattr(scope, name)
        if value is None or value is Auto:
            return None
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise Sorry(f"{name} must be a finite number or Auto (got {value})")
        return value

    n_slots = scope.n_slots
    if n_slots is None or not 1 <= n_slots <= MAX_SLOTS:
        raise Sorry(f"n_slots must be between 1 and {MAX_SLOTS} (got {n_slots})")
    try:
        return Binning(bound("data_min"), bound("data_max"), int(n_slots))
    except ValueError as error:
        raise Sorry(str(error)) from None


def owner_of(params, path: str) -> tuple[Any, str]:
    """The extracted scope holding the parameter at ``path`` (``None`` if absent) and the
    parameter's name in it."""
    *scopes, name = path.split(".")
    owner = params
    for scope in scopes:
        owner = getattr(owner, scope, None)
    return owner, name


#: phil types whose values are numbers (or lists of them).
_NUMBER_TYPES = {"int": int, "ints": int, "float": float, "floats": float}


def check_numbers(system_phil, params) -> None:
    """``Sorry`` for a number libtbx.phil lets through that no program can use: NaN or an
    infinity (phil evaluates ``nan``, ``inf`` and ``1e400`` as floats, for ``int``
    parameters too, and NaN passes its range checks), or a fraction for an ``int``."""
    for definition in system_phil.all_definitions():
        kind = _NUMBER_TYPES.get(definition.object.type.phil_type)
        if kind is None:
            continue
        owner, name = owner_of(params, definition.path)
        value = getattr(owner, name, None)
        for number in value if isinstance(value, list) else [value]:
            if number is None or number is Auto or isinstance(number, bool):
                continue
            if isinstance(number, float) and not math.isfinite(number):
                raise Sorry(f"{definition.path}={number}: not a finite number")
            if kind is int and not isinstance(number, int):
                raise Sorry(f"{definition.path}={number:g}: not a whole number")
