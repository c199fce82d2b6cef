"""Command-line parsing as DIALS programs do it: reflection files, experiments, phil.

Reflection files are recognised by content and opened by our own loader; everything
else goes through DIALS's ``ArgumentParser``, except a command line of reflection files
and phil arguments only, which :class:`PhilOnlyParser` handles without importing
DIALS's model code (a one-second start-up saving).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import libtbx.phil

from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.reader import ReflectionFileError
from dials_refl_stats.reflections import ReflectionLoadError, check_readable, sniff_format

#: libtbx.phil cites where a bad value came from: "(command line argument, line 1)".
PHIL_VALUE_ERROR = re.compile(r"\((command line argument|.*), line \d+\)")

EXPERIMENT_SUFFIXES = (".expt", ".json")

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
