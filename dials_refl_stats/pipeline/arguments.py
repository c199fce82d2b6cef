"""Command-line parsing as DIALS programs do it: reflection files, experiments, phil.

Reflection files are recognised by content and opened by our own loader; everything
else goes through DIALS's ``ArgumentParser``, except a command line of reflection files
and phil arguments only, which :class:`PhilOnlyParser` handles without importing
DIALS's model code (1-2 s of start-up saved). Both routes use the same system phil
(program scope, ``reader``, DIALS's ``input`` scope), so names resolve identically;
every phil error is reported in DIALS's words (``tests/test_arguments_exhaustive.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence
from urllib.parse import urlparse

import libtbx.phil

from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.experiment_models import (
    LightExperimentList,
    NotLight,
    read_experiments,
)
from dials_refl_stats.reader import ReflectionFileError
from dials_refl_stats.reflections import ReflectionLoadError, check_readable, sniff_format

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
    args = sys.argv[1:] if args is None else args
    return [a for a in args if looks_like_reflection_file(a)]


#: Phil file suffixes DIALS's ``ArgumentParser`` reads as parameter files.
PHIL_SUFFIXES = (".phil", ".param", ".params", ".eff", ".def")

VERBOSITY_FLAG = re.compile(r"-v+")

#: What libtbx.phil and DIALS's phil handling raise for a user's phil mistake.
PHIL_ERRORS = (RuntimeError, Sorry)

#: DIALS's message for definitions of a phil file that match no parameter.
UNRECOGNISED = "The following definitions were not recognised"

#: The ``input`` scope DIALS's ``ArgumentParser`` adds (``read_experiments`` and
#: ``read_reflections``), with plain ``path`` values: the names resolve the same way,
#: and no file is read while parsing (reflection files are read by our loader).
INPUT_PHIL = """
input {
  experiments = None
    .type = path
    .multiple = True
    .help = "The experiment list file path"
  reflections = None
    .type = path
    .multiple = True
    .help = "The reflection table file path"
}
"""


def system_phil(phil):
    """The program's phil, ``reader`` and DIALS's ``input`` scope, in DIALS's order.

    The same parameter paths (and expert levels) as the system phil of DIALS's
    ``ArgumentParser(phil=with_reader_scope(phil), read_experiments=True,
    read_reflections=True)``, so that abbreviated names resolve identically. Built
    once per program scope (a deep copy costs ~10 ms); parsing never changes it.
    """
    cached = _SYSTEM_PHILS.get(id(phil))
    if cached is None or cached[0] is not phil:
        combined = copy.deepcopy(with_reader_scope(phil))
        combined.adopt_scope(libtbx.phil.parse(INPUT_PHIL))
        cached = _SYSTEM_PHILS[id(phil)] = (phil, combined)
    return cached[1]


#: id(program phil) -> (program phil, its system phil).
_SYSTEM_PHILS: dict[int, tuple[Any, Any]] = {}


@dataclass(frozen=True)
class ExperimentFile:
    """An ``input.experiments`` value: DIALS's ``FilenameDataWrapper`` (file name and
    experiments), the experiments read by :func:`read_experiments`."""

    filename: str
    data: Any


class LightExperimentConverters:
    """DIALS's ``experiment_list`` phil type (``dials.util.phil``), reading the file with
    :func:`read_experiments`; a file it does not read raises (DIALS's parser then reads
    the command line). Written back as DIALS writes it: the file name, unquoted."""

    phil_type = "experiment_list"

    def __init__(self, check_format: bool = False) -> None:
        self.check_format = check_format

    def __str__(self) -> str:
        return self.phil_type

    def from_words(self, words, master):
        name = libtbx.phil.str_from_words(words=words)
        if name is None:
            return None
        if not os.path.isfile(name):
            raise NotLight(f"{name}: not a file")  # DIALS's parser says what it is
        return ExperimentFile(name, read_experiments(name))

    def as_words(self, python_object, master):
        value = "None" if python_object is None else python_object.filename
        return [libtbx.phil.tokenizer.word(value=value)]


def light_system_phil(phil):
    """:func:`system_phil` with ``input.experiments`` of DIALS's type, read by
    :class:`LightExperimentConverters` (same paths, names and expert levels)."""
    cached = _LIGHT_SYSTEM_PHILS.get(id(phil))
    if cached is None or cached[0] is not phil:
        combined = copy.deepcopy(system_phil(phil))
        (definition,) = [
            d.object for d in combined.all_definitions() if d.path == "input.experiments"
        ]
        definition.type = LightExperimentConverters()
        cached = _LIGHT_SYSTEM_PHILS[id(phil)] = (phil, combined)
    return cached[1]


#: id(program phil) -> (program phil, its light system phil).
_LIGHT_SYSTEM_PHILS: dict[int, tuple[Any, Any]] = {}


def url_scheme(argument: str) -> str:
    """``dxtbx.util.get_url_scheme``: DIALS's test for "a URL, not a phil argument"."""
    return urlparse(argument).scheme if "://" in argument else ""


def is_phil_file(argument: str) -> bool:
    """DIALS's test for a positional phil file: suffix, an existing non-empty file."""
    return (
        argument.endswith(PHIL_SUFFIXES)
        and os.path.isfile(argument)
        and os.path.getsize(argument) > 0
    )


def is_phil_assignment(argument: str) -> bool:
    """DIALS's test for a positional phil argument such as ``n_slots=20``."""
    return "=" in argument and not url_scheme(argument)


class NotPhilOnly(Exception):
    """A command line that needs DIALS's ``ArgumentParser`` (files, options)."""


class PhilError(Exception):
    """A phil mistake (bad name, value or file); ``error`` is libtbx's exception."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class PhilOnlyParser:
    """The parameters of a command line holding only phil arguments and ``-v`` flags.

    Does what DIALS's ``ArgumentParser`` does with such a command line (the same
    system phil paths, the same libtbx.phil interpreter, phil files recognised by the
    same tests), without importing dxtbx and DIALS's model code (1-2 s of start-up).
    Offers the parser attributes the programs use: ``phil``, ``system_phil``,
    ``diff_phil``. Raises :class:`NotPhilOnly` for anything else (including
    ``input.experiments=``) and :class:`PhilError` for a phil mistake.
    """

    def __init__(
        self,
        system_phil,
        args: Sequence[str],
        experiment_files: Sequence[str] | None = None,
    ) -> None:
        self.system_phil = system_phil
        self.verbose = 0
        #: ``None``: experiments need DIALS (refused); else the positional experiment
        #: files, read by :mod:`~dials_refl_stats.pipeline.experiment_models` after
        #: the phil's own ``input.experiments`` (as DIALS's parser orders them)
        self.experiment_files = experiment_files
        # libtbx prints "Warning: Ambiguous ... Assuming ..." for names resolved by
        # expert level: shown once parsing succeeds (else DIALS's parser shows it).
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            self.params = self._parse(args)
        sys.stdout.write(printed.getvalue())
        # As DIALS does: the working phil re-formatted from the extracted parameters.
        self.phil = system_phil.format(python_object=self.params)

    def _parse(self, args: Sequence[str]):
        system_phil = self.system_phil
        interpreter = system_phil.command_line_argument_interpreter()
        sources = []
        for arg in args:
            if VERBOSITY_FLAG.fullmatch(arg):
                self.verbose += len(arg) - 1
            elif arg.startswith("-"):
                raise NotPhilOnly(arg)  # an option: argparse's business
            elif is_phil_file(arg):
                sources.append(_phil_call(libtbx.phil.parse, file_name=arg))
            elif is_phil_assignment(arg):
                sources.append(_phil_call(interpreter.process_arg, arg=arg))
            else:
                raise NotPhilOnly(arg)
        working, unused = _phil_call(
            system_phil.fetch, sources=sources, track_unused_definitions=True
        )
        if unused:
            raise PhilError(RuntimeError(unrecognised_text(unused)))
        try:
            params = _phil_call(working.extract)
        except NUMBER_ERRORS as error:
            raise unreadable_number(working) or error from None
        if self.experiment_files is None:
            if params.input.experiments:
                raise NotPhilOnly("input.experiments")
            return params
        try:
            params.input.experiments.extend(
                ExperimentFile(path, read_experiments(path)) for path in self.experiment_files
            )
        except NotLight as error:
            raise NotPhilOnly(str(error)) from None
        return params

    @property
    def diff_phil(self):
        return self.system_phil.fetch_diff(source=self.phil)


#: What libtbx.phil's ``extract`` raises for ``inf``, ``nan`` or ``1e400`` given to an
#: ``int`` parameter (it evaluates them as floats, then rounds them).
NUMBER_ERRORS = (OverflowError, ValueError)


def unreadable_number(working) -> Sorry | None:
    """The ``Sorry`` naming the parameter of the ``working`` phil that libtbx.phil cannot
    extract a number from (DIALS's parser too raises a traceback for it), or ``None``."""
    for definition in working.all_definitions():
        try:
            definition.object.extract()
        except NUMBER_ERRORS as error:
            value = " ".join(str(w) for w in definition.object.words)
            kind = definition.object.type.phil_type
            return Sorry(f"{definition.path}={value}: not a number of type {kind} ({error})")
    return None


def _lenient_working(system_phil, args: Sequence[str]):
    """The working phil of the phil files and assignments among ``args`` that parse
    (``None`` if they do not fetch): for naming an unreadable number after DIALS's
    parser failed on it."""
    interpreter = system_phil.command_line_argument_interpreter()
    sources = []
    for arg in args:
        try:
            if is_phil_file(arg):
                sources.append(libtbx.phil.parse(file_name=arg))
            elif is_phil_assignment(arg):
                sources.append(interpreter.process_arg(arg=arg))
        except Exception:  # noqa: BLE001 - any other problem is the parser's to report
            continue
    try:
        return system_phil.fetch(sources=sources)
    except Exception:  # noqa: BLE001 - as above
        return None


def _phil_call(function, **kwargs):
    """``function(**kwargs)`` with libtbx.phil's user errors raised as :class:`PhilError`."""
    try:
        return function(**kwargs)
    except (*PHIL_ERRORS, UnicodeDecodeError) as error:
        raise PhilError(error) from error


def parse_phil_only(phil, args: Sequence[str]) -> PhilOnlyParser | None:
    """Parse ``args`` without DIALS's parser; ``None`` if DIALS's parser is needed.

    That is for anything but phil arguments and ``-v``: experiment files, options
    (``-h``, ``-c``, ``--phil``), unknown files; and for every phil error, so that the
    user sees DIALS's own message for it.
    """
    try:
        return PhilOnlyParser(system_phil(phil), args)
    except (NotPhilOnly, PhilError):
        return None


def phil_reflection_paths(params) -> list[str]:
    """The ``input.reflections=`` files, each checked to be a reflection file."""
    paths = [str(path) for path in params.input.reflections]
    for path in paths:
        try:
            check_readable(path)
        except ReflectionLoadError as error:
            raise Sorry(str(error)) from None
    return paths


def refuse_special_files(args: Sequence[str]) -> None:
    """``Sorry`` for an argument naming a FIFO, socket or device: reading one (as DIALS's
    parser would try, as experiments) could wait forever."""
    for argument in args:
        if "=" in argument or argument.startswith("-"):
            continue
        if os.path.exists(argument) and not (os.path.isfile(argument) or os.path.isdir(argument)):
            raise Sorry(f"{argument}: not a regular file")


def parse_command_line(
    args: Sequence[str] | None,
    phil,
    usage: str,
    epilog: str,
    collected: Sequence[str] = (),
    light_experiments: bool = False,
    crystals: bool = False,
) -> Invocation | None:
    """Parse like a DIALS program; ``None`` when there is no input (help printed).

    Reflection files (positional, recognised by their content, or given as
    ``input.reflections=``) are read by our own loader, so that a large table is never
    decoded twice (or by DIALS at all once the fast reader is in use); everything else
    goes through DIALS's ``ArgumentParser``, except that a command line of reflection
    files and phil parameters only is parsed by :class:`PhilOnlyParser` (same result,
    without DIALS's import cost). As DIALS does, ``input.reflections=`` files come
    before positional ones. ``collected``: reflection files named by directories, globs
    or list files (checked when they are opened, not sniffed here: there may be 10^5).
    ``light_experiments``: experiment files too are read without DIALS's parser when
    :mod:`~dials_refl_stats.pipeline.experiment_models` reads them as dxtbx would
    (:func:`parse_light_experiments`; with ``crystals``, only files whose crystals it makes).
    """
    args = list(sys.argv[1:] if args is None else args)
    refuse_special_files(args)
    reflection_paths = reflection_arguments(args)
    chosen = set(reflection_paths)
    others = [a for a in args if a not in chosen]
    reflection_paths += list(collected)
    quick = parse_phil_only(phil, others)
    if quick is not None and (reflection_paths or quick.params.input.reflections):
        return Invocation(
            params=quick.params,
            options=argparse.Namespace(verbose=quick.verbose),
            parser=quick,
            reflection_paths=phil_reflection_paths(quick.params) + reflection_paths,
            experiments=[],
        )
    if light_experiments:
        light = parse_light_experiments(phil, others, reflection_paths, crystals)
        if light is not None:
            return light
    return _parse_with_dials(reflection_paths, others, phil, usage, epilog)


def is_experiment_argument(argument: str) -> bool:
    """A positional argument DIALS's parser would read as an experiment file (and that
    the light path reads): an existing ``.expt``/``.json`` file, not a phil argument."""
    return (
        argument.endswith(EXPERIMENT_SUFFIXES)
        and not is_phil_assignment(argument)
        and os.path.isfile(argument)
    )


def parse_light_experiments(
    phil, others: Sequence[str], reflection_paths: list[str], crystals: bool = False
) -> Invocation | None:
    """What :func:`_parse_with_dials` gives, the experiments read by
    :mod:`~dials_refl_stats.pipeline.experiment_models` (dxtbx's own C++ models,
    without DIALS's parser and dxtbx's Python import); ``None`` for anything it does not
    read as DIALS would (then DIALS's parser reads the command line, errors included),
    and, for a program that uses ``crystals``, for files listing a crystal it does not
    make (:meth:`~dials_refl_stats.pipeline.experiment_models.LightExperimentList.crystals_made`).
    """
    files = [a for a in others if is_experiment_argument(a)]
    rest = [a for a in others if not is_experiment_argument(a)]
    try:
        quick = PhilOnlyParser(light_system_phil(phil), rest, experiment_files=files)
    except (NotPhilOnly, PhilError):
        return None
    params = quick.params
    wrappers = _first_of_each_file(params.input.experiments)
    if not reflection_paths and not params.input.reflections:
        return None  # help, or DIALS's Sorry
    if any(w.filename.endswith(".refl") for w in wrappers):
        return None  # DIALS's parser reads it, and _parse_with_dials says what it is
    if crystals and not all(w.data.crystals_made() for w in wrappers):
        return None  # DIALS's parser makes the crystals, or says what is wrong
    experiments = LightExperimentList(e for w in wrappers for e in w.data)
    identifiers = [e.identifier for e in experiments if e.identifier]
    if len(set(identifiers)) != len(identifiers):
        return None  # dxtbx's error for it
    params.input.experiments = wrappers
    return Invocation(
        params=params,
        options=argparse.Namespace(verbose=quick.verbose),
        parser=quick,
        reflection_paths=phil_reflection_paths(params) + reflection_paths,
        experiments=experiments,
        experiment_paths=[w.filename for w in wrappers],
    )


def _first_of_each_file(wrappers: Sequence[Any]) -> list:
    """``input.experiments`` with a file named twice (positionally and by a recorded
    ``input.experiments``) kept once, where it comes first."""
    firsts = {os.path.realpath(w.filename): w for w in reversed(wrappers)}
    return [w for w in wrappers if firsts[os.path.realpath(w.filename)] is w]


def dials_argument_parser(phil, usage: str, epilog: str):
    """DIALS's ``ArgumentParser`` for :func:`system_phil`: it reads experiment files only.

    Kept for the next call until a parse succeeds (``parse_args`` starts each time
    from the system phil, so reuse is faithful; an :class:`Invocation` owns its parser,
    so a later parse cannot change an earlier invocation's ``parser.phil``). Saves the
    ~10 ms deep copy of the phil for every refused command line (in-process runs, tests).
    """
    from dials.util.options import ArgumentParser

    key = (id(phil), usage, epilog)
    cached = _DIALS_PARSERS.get(key)
    if cached is None or cached[0] is not phil:
        parser = ArgumentParser(
            usage=usage,
            phil=system_phil(phil),
            read_experiments=True,
            read_reflections=False,
            check_format=False,
            epilog=epilog,
        )
        cached = _DIALS_PARSERS[key] = (phil, parser)
    return cached[1]


#: (id(program phil), usage, epilog) -> (program phil, DIALS's parser).
_DIALS_PARSERS: dict[tuple[int, str, str], tuple[Any, Any]] = {}


def _parse_with_dials(
    reflection_paths: list[str],
    others: list[str],
    phil,
    usage: str,
    epilog: str,
) -> Invocation | None:
    """:func:`parse_command_line` through DIALS's ``ArgumentParser``."""
    from dials.util.options import flatten_experiments

    parser = dials_argument_parser(phil, usage, epilog)
    try:
        with usage_errors_as_sorry():
            params, options, unhandled = parser.parse_args(
                others, show_diff_phil=False, return_unhandled=True
            )
    except PHIL_ERRORS as error:
        raise _dials_phil_error(parser, others, error) from None
    except NUMBER_ERRORS as error:
        working = _lenient_working(parser.system_phil, others)
        raise (working is not None and unreadable_number(working)) or error from None
    except FileNotFoundError as error:  # --phil missing.phil
        raise Sorry(f"{error.filename}: file not found") from None
    if any(is_phil_file(a) or is_phil_assignment(a) for a in unhandled):
        raise _dials_phil_error(parser, others, None)
    for argument in unhandled:
        _raise_for_unhandled(argument)

    # A file named twice (positionally and by a recorded input.experiments) is used once.
    params.input.experiments = _first_of_each_file(params.input.experiments)
    for wrapper in params.input.experiments:
        if wrapper.filename.endswith(".refl"):
            raise Sorry(
                f"{wrapper.filename}: an experiment list (.expt contents), not a reflection "
                "table: was an .expt file renamed?"
            )
    experiments = flatten_experiments(params.input.experiments)
    reflection_paths = phil_reflection_paths(params) + reflection_paths
    if not reflection_paths and not experiments:
        parser.print_help()
        return None
    if not reflection_paths:
        raise Sorry("No reflection file given (e.g. indexed.refl or integrated.refl)")
    _DIALS_PARSERS.pop((id(phil), usage, epilog), None)  # the invocation's own now
    return Invocation(
        params=params,
        options=options,
        parser=parser,
        reflection_paths=reflection_paths,
        experiments=experiments,
        experiment_paths=[w.filename for w in params.input.experiments],
    )


@contextlib.contextmanager
def usage_errors_as_sorry() -> Iterator[None]:
    """DIALS's parser ending the program with argparse's usage error (exit status 2,
    the usage on stderr; DIALS 3.14+ does so for a bad phil value) raises the error's
    message as a ``Sorry`` instead: one line, exit status 1, as for every other error."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as stop:
        if stop.code != 2:
            sys.stderr.write(captured.getvalue())
            raise
        lines = captured.getvalue().strip().splitlines() or ["invalid command line"]
        raise Sorry(lines[-1].split(": error: ", 1)[-1]) from None
    sys.stderr.write(captured.getvalue())


def _dials_phil_error(parser, others: list[str], error: BaseException | None) -> Sorry:
    """The error DIALS's own ``parse_args(others)`` gives for the phil of ``others``.

    With ``return_unhandled=True`` DIALS sets bad phil arguments aside instead of
    raising, and reports later errors first; parsing the phil alone again
    (``quick_parse``: no files read) raises the error a DIALS program would show.
    Its text is kept, on one line naming the file for a phil file's problem.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()), usage_errors_as_sorry():
            parser.parse_args(others, quick_parse=True)  # its warnings are shown already
    except (*PHIL_ERRORS, UnicodeDecodeError) as first:
        error = first
    if error is None:  # pragma: no cover - DIALS set an argument aside, then accepted it
        raise RuntimeError(f"DIALS's parser refused, then accepted {others}")
    phil_files = [a for a in parser.parse_known_args(others)[1] if is_phil_file(a)]
    for path in phil_files:
        try:
            libtbx.phil.parse(file_name=path)
        except (*PHIL_ERRORS, UnicodeDecodeError) as problem:
            if type(problem) is type(error) and str(problem) == str(error):
                return Sorry(phil_file_error_text(path, error))
    if str(error).startswith(UNRECOGNISED):
        sources = [libtbx.phil.parse(file_name=path) for path in phil_files]
        _, unused = parser.system_phil.fetch(sources=sources, track_unused_definitions=True)
        return Sorry(unrecognised_text(unused))
    if isinstance(error, UnicodeDecodeError):  # e.g. input.experiments=<binary file>
        raise error
    return Sorry(str(error))


def phil_file_error_text(path: str, error: BaseException) -> str:
    """libtbx.phil's message for a phil file it cannot parse, naming the file."""
    if isinstance(error, UnicodeDecodeError):
        return f"{path}: not a phil parameter file (not UTF-8 text)"
    text = " ".join(str(error).split())
    return text if path in text else f"{path}: {text}"


def unrecognised_text(unused) -> str:
    """DIALS's message for unknown phil file definitions, on one line with their places."""
    items = [
        f"{item.path} = {' '.join(item.object.as_str().split('=', 1)[1].split())}"
        f"{item.object.where_str}"
        for item in unused
    ]
    return f"{UNRECOGNISED}: {'; '.join(items)}"


def _raise_for_unhandled(argument: str) -> None:
    """One ``Sorry`` line for a (non-phil) argument DIALS could not use."""
    if not os.path.exists(argument):
        if argument.startswith("-"):
            raise Sorry(f"{argument}: unrecognised option (see -h for the options)")
        raise Sorry(f"{argument}: file not found")
    if argument.endswith(EXPERIMENT_SUFFIXES):
        raise Sorry(f"{argument}: not a readable DIALS experiment list")
    try:
        check_readable(argument)
    except ReflectionLoadError as error:
        raise Sorry(str(error)) from None
    raise Sorry(f"{argument}: not a DIALS reflection or experiment file")


def parameters_record(invocation: Invocation) -> dict:
    """Effective and changed parameters, as phil text a rerun can read back.

    ``input.reflections`` is left out (a rerun gives its own reflection files);
    ``input.experiments`` stays, so that ``dials.<program> params.phil data.refl``
    reproduces a run made with experiments (README, "Reruns").
    """
    parser = invocation.parser
    working = parser.system_phil.format(python_object=invocation.params)
    effective = without_input_files(working.as_str())
    diff = without_input_files(diff_phil(parser).as_str())
    return {"effective_phil": effective, "diff_phil": diff}


def diff_phil(parser):
    """The parameters that differ from their defaults (the parser's ``diff_phil``,
    without reading every experiment file again, twice: ~26 s for 10^5 stills; file
    names are all a diff shows)."""
    return _file_names_only(parser.system_phil).fetch_diff(source=parser.phil)


#: Phil types whose values are files that DIALS's converters read when extracted.
FILE_TYPES = ("experiment_list", "reflection_table")


class _FileName:
    """A phil converter that keeps the file name of a :data:`FILE_TYPES` value."""

    def __init__(self, phil_type: str) -> None:
        self.phil_type = phil_type

    def __str__(self) -> str:
        return self.phil_type

    def from_words(self, words, master):
        return libtbx.phil.str_from_words(words=words)

    def as_words(self, python_object, master):
        value = "None" if python_object is None else str(python_object)
        return [libtbx.phil.tokenizer.word(value=value)]


def _file_names_only(scope):
    """A copy of ``scope`` whose :data:`FILE_TYPES` definitions read no file."""
    copied = scope.copy()
    objects = []
    for obj in scope.objects:
        if obj.is_scope:
            obj = _file_names_only(obj)
        elif str(obj.type) in FILE_TYPES:
            obj = obj.copy()
            obj.type = _FileName(str(obj.type))
        objects.append(obj)
    copied.objects = objects
    return copied


#: The ``input`` parameters a parameters record leaves out.
INPUT_FILE_PARAMETERS = ("reflections",)


def without_input_files(text: str) -> str:
    scope = libtbx.phil.parse(text)
    kept = []
    for obj in scope.objects:
        if obj.name == "input" and obj.is_scope:
            obj.objects = [o for o in obj.objects if o.name not in INPUT_FILE_PARAMETERS]
            if not obj.objects:
                continue
        kept.append(obj)
    return "".join(obj.as_str() for obj in kept)
