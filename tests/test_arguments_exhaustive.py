"""Every parameter name, abbreviation and value: the phil-only fast path means what DIALS means.

For every program module in ``dials_refl_stats/command_line`` (found by listing the
package), every parameter path of the system phil (the program's scope, ``reader`` and
DIALS's ``input`` scope) and every name libtbx.phil's command-line interpreter matches
against it (``argument_interpreter.get_path_score`` scores any substring of a path:
8 the whole path, 4 a dotted suffix, 3 a character suffix, 1 any other substring), with
valid and invalid values (see :func:`exhaustive_arguments`), is parsed three ways:

* by DIALS's own ``ArgumentParser`` as a standard DIALS program builds it
  (``read_experiments=True, read_reflections=True``): the reference;
* by :class:`PhilOnlyParser` alone (the fast path, no fallback);
* by :func:`parse_command_line` with a reflection file (what a program does).

They must give the same working phil or the same error text, and print the same
warnings (libtbx's "Ambiguous ... Assuming ..." for names resolved by expert level).
A corpus of mixed command lines (reflection files, phil files, includes, ``-v``,
``input.reflections=``, experiments) is compared the same way.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import pkgutil
import re
from dataclasses import dataclass

import pytest
from conftest import data_path, needs_dials

pytestmark = needs_dials

REFL = str(data_path("sim_small/strong.refl"))  # tests/data
REFL2 = str(data_path("sim_small/indexed.refl"))  # dials_refl_stats/data
EXPT = str(data_path("sim_small/indexed.expt"))

#: Dotted phil names (libtbx.phil rejects anything else as a syntax error).
PHIL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def program_names() -> list[str]:
    """Every module of ``dials_refl_stats.command_line`` that has a ``phil_scope``."""
    import dials_refl_stats.command_line as package

    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
    return [n for n in names if hasattr(_module(n), "phil_scope")]


def _module(name: str):
    return importlib.import_module(f"dials_refl_stats.command_line.{name}")


PROGRAMS = program_names()


@functools.lru_cache(maxsize=None)
def reference_parser(program: str):
    """DIALS's ``ArgumentParser`` as a DIALS program reading both kinds of file builds it.

    Reused across calls: ``parse_args`` refetches its working phil from the system phil
    each time (see :func:`test_reused_reference_parser_is_faithful`).
    """
    from dials.util.options import ArgumentParser

    from dials_refl_stats.pipeline.arguments import with_reader_scope

    return ArgumentParser(
        phil=with_reader_scope(_module(program).phil_scope),
        read_experiments=True,
        read_reflections=True,
        check_format=False,
    )


@dataclass(frozen=True)
class Outcome:
    """What a parser made of a command line: working phil or error text, and its output."""

    phil: str | None
    error: str | None
    printed: str
    reflections: tuple[str, ...] = ()
    experiments: tuple[str, ...] = ()
    verbose: int = 0


def reference_outcome(program: str, args: list[str], parser=None) -> Outcome:
    parser = parser or reference_parser(program)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            params, options = parser.parse_args(list(args))
    except Exception as error:  # whatever DIALS raises (a Sorry, or a traceback's error)
        return Outcome(None, str(error), printed.getvalue())
    return Outcome(
        phil=parser.phil.as_str(),
        error=None,
        printed=printed.getvalue(),
        reflections=tuple(w.filename for w in params.input.reflections),
        experiments=tuple(w.filename for w in params.input.experiments),
        verbose=options.verbose,
    )


def fast_outcome(program: str, args: list[str]) -> Outcome | None:
    """The fast path alone; ``None`` when it hands the command line to DIALS."""
    from dials_refl_stats.pipeline.arguments import (
        NotPhilOnly,
        PhilError,
        PhilOnlyParser,
        system_phil,
    )

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            parser = PhilOnlyParser(system_phil(_module(program).phil_scope), args)
    except NotPhilOnly:
        return None
    except PhilError as error:
        return Outcome(None, str(error.error), printed.getvalue())
    return Outcome(
        phil=parser.phil.as_str(),
        error=None,
        printed=printed.getvalue(),
        reflections=tuple(parser.params.input.reflections),
        verbose=parser.verbose,
    )


def program_outcome(program: str, args: list[str]) -> tuple[Outcome, bool]:
    """:func:`parse_command_line` as a program calls it; (outcome, took the fast path)."""
    from dials.util import Sorry

    from dials_refl_stats.pipeline.arguments import PhilOnlyParser, parse_command_line

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            invocation = parse_command_line(args, _module(program).phil_scope, "usage", "")
    except Sorry as error:
        return Outcome(None, str(error), printed.getvalue()), False
    outcome = Outcome(
        phil=invocation.parser.phil.as_str(),
        error=None,
        printed=printed.getvalue(),
        reflections=tuple(invocation.reflection_paths),
        experiments=tuple(invocation.experiment_paths),
        verbose=invocation.options.verbose,
    )
    return outcome, isinstance(invocation.parser, PhilOnlyParser)


def same_phil(ours: Outcome, reference: Outcome) -> bool:
    """The same working phil; file names are compared separately (DIALS's reflection
    converter writes them unquoted)."""
    if ours.phil == reference.phil or None in (ours.phil, reference.phil):
        return ours.phil == reference.phil
    return without_input_files(ours.phil) == without_input_files(reference.phil)


def without_input_files(text: str) -> str:
    """Working phil text without the file-name lines (compared separately)."""
    return re.sub(r"(?m)^ *(reflections|experiments) = .*\n", "", text)


# --- the names libtbx.phil's interpreter would match -------------------------------------


def dotted_names(path: str) -> set[str]:
    """Every dotted suffix, prefix and run of components of ``path``."""
    parts = path.split(".")
    return {".".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}


def character_names(path: str) -> list[str]:
    """Every substring of ``path`` that is a phil name: suffixes and prefixes first."""
    n = len(path)
    names = [path[k:] for k in range(n)] + [path[:k] for k in range(1, n)]
    names += [path[i:j] for i in range(1, n) for j in range(i + 1, n)]
    return [name for name in dict.fromkeys(names) if PHIL_NAME.fullmatch(name)]


def values_for(definition) -> list[str]:
    """A valid, an invalid (two for bounded numbers) and a ``None`` value."""
    if definition.path == "input.reflections":
        return [REFL2, "not_a_table.refl", "None"]
    if definition.path == "input.experiments":
        return [EXPT, "missing.expt", "None"]
    kind = definition.object.type.phil_type
    converter = definition.object.type
    if kind == "bool":
        return ["True", "maybe", "False", "None"]
    if kind in ("int", "float"):
        low = getattr(converter, "value_min", None)
        high = getattr(converter, "value_max", None)
        valid = low + 1 if low is not None else (high - 1 if high is not None else 3)
        values = [str(valid), "abc", "None"]
        values += [str(low - 1)] if low is not None else []
        values += [str(high + 1)] if high is not None else []
        return values
    if kind == "choice":
        words = [str(w).lstrip("*") for w in definition.object.words]
        valid = "+".join(words[-2:]) if converter.multi else words[-1]
        return [valid, "nonsense", "None"]
    return ["xyz.out", '"unclosed', "None"]


def exhaustive_arguments(program: str) -> list[str]:
    """``name=value`` arguments for every parameter of ``program``'s system phil.

    Every full path with each of its values; every dotted abbreviation with a valid and
    an invalid value; then, for each other way a substring can match the paths (libtbx's
    score against every path: the only thing the interpreter looks at besides the name
    it echoes), one substring with a valid value.
    """
    definitions = reference_parser(program).system_phil.all_definitions()
    targets = [d.path for d in definitions]
    interpreter = reference_parser(program).system_phil.command_line_argument_interpreter()

    def score_vector(name: str) -> tuple[int, ...]:
        return tuple(interpreter.get_path_score(name, t) for t in targets)

    arguments = []
    seen = set()
    for definition in definitions:
        values = values_for(definition)
        arguments += [f"{definition.path}={value}" for value in values]
        for name in sorted(dotted_names(definition.path)):
            seen.add(score_vector(name))
            arguments += [f"{name}={value}" for value in values[:2]]
    for definition in definitions:
        for name in character_names(definition.path):
            if score_vector(name) not in seen:
                seen.add(score_vector(name))
                arguments.append(f"{name}={values_for(definition)[0]}")
    return list(dict.fromkeys(arguments))


def resolved_path(program: str, argument: str) -> str | None:
    """The parameter DIALS's interpreter assigns ``argument`` to (None: an error)."""
    return _resolved_name(program, argument.split("=", 1)[0])


@functools.lru_cache(maxsize=None)
def _resolved_name(program: str, name: str) -> str | None:
    interpreter = reference_parser(program).system_phil.command_line_argument_interpreter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            scope = interpreter.process_arg(arg=f"{name}=1")
    except Exception:  # any refusal: the value does not matter then
        return None
    return scope.all_definitions()[0].path


def expected_program_error(argument: str, path: str | None, fast: Outcome | None) -> str | None:
    """Our own text where the reference's comes from DIALS reading a table we never give it.

    ``input.reflections=<not a table>``: the Sorry the same file gets positionally.
    """
    value = argument.split("=", 1)[1]
    accepted = fast is not None and fast.error is None
    if path == "input.reflections" and accepted and value not in ("None", REFL2):
        from dials_refl_stats.reflections import ReflectionLoadError, check_readable

        try:
            check_readable(value)
        except ReflectionLoadError as error:
            return str(error)
    return None


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_name_and_value_parses_as_dials_does(program):
    mismatches = []
    counts = {"ok": 0, "error": 0, "ambiguous": 0, "warned": 0, "dials": 0}
    arguments = exhaustive_arguments(program)
    for argument in arguments:
        reference = reference_outcome(program, [argument])
        path = resolved_path(program, argument)
        full, took_fast_path = program_outcome(program, [REFL, argument])
        # The fast path alone (its own error text, before the fall-back to DIALS).
        fast = full if took_fast_path else fast_outcome(program, [argument])
        own_error = expected_program_error(argument, path, fast)
        counts["ok" if reference.error is None else "error"] += 1
        counts["ambiguous"] += "Ambiguous" in (reference.error or "")
        counts["warned"] += "Assuming" in reference.printed
        if path == "input.experiments" and reference.error is None and argument.endswith(EXPT):
            # Experiments need DIALS: the fast path hands the whole command line over.
            counts["dials"] += 1
            problems = [
                fast is not None and "fast path kept input.experiments",
                took_fast_path and "program took the fast path",
                full.phil != reference.phil and "working phil differs",
                full.experiments != reference.experiments and "experiments differ",
            ]
        elif own_error is not None:
            # input.reflections=<not a table>: the same Sorry as the file given positionally.
            problems = [full.error != own_error and f"error {full.error!r} != {own_error!r}"]
        elif reference.error is not None and path == "input.experiments":
            # DIALS's experiment converter refused the file: DIALS's text, via DIALS.
            problems = [full.error != reference.error and f"error {full.error!r}"]
        else:
            problems = [
                fast is None and "fast path refused a phil argument",
                fast is not None and not same_phil(fast, reference) and "fast phil differs",
                fast is not None and fast.error != reference.error and f"fast {fast!r}",
                reference.error is None
                and fast is not None
                and fast.printed != reference.printed
                and "fast printed",
                full.printed != reference.printed and f"printed {full.printed!r}",
                not same_phil(full, reference) and "program phil differs",
                full.error != reference.error and f"program error {full.error!r}",
                reference.error is None and not took_fast_path and "program went to DIALS",
                reference.error is None
                and full.reflections != (*reference.reflections, REFL)
                and "reflections differ",
            ]
        problems = [p for p in problems if p]
        if problems:
            mismatches.append((argument, reference.error, problems))
    assert not mismatches, f"{len(mismatches)} of {len(arguments)}: {mismatches[:5]}"
    # The enumeration reaches every kind of outcome (not a vacuous pass).
    assert counts["ok"] > 100 and counts["error"] > 100, counts
    assert counts["ambiguous"] > 10 and counts["dials"] > 0 and counts["warned"] > 0, counts


def test_the_issue_examples_are_dials_errors():
    """``ts=True`` and ``en=None`` are ambiguous for DIALS, not output.points / intensity."""
    for argument in ("ts=True", "en=None"):
        reference = reference_outcome("intensity_per_frame", [argument])
        assert reference.error.startswith(f"Ambiguous parameter definition: {argument[:2]} =")
        full, _ = program_outcome("intensity_per_frame", [REFL2, argument])
        assert full.error == reference.error


def test_candidate_names_include_each_kind_of_abbreviation():
    """Dotted suffixes, scope prefixes, character suffixes: what libtbx matches."""
    arguments = exhaustive_arguments("spot_size_histogram")
    names = {a.split("=", 1)[0] for a in arguments}
    assert {"n_slots", "histogram.n_slots", "histogram", "reader"} <= names
    assert {"input.reflections", "reflections", "input", "experiments"} <= names
    assert {"slots", "ts"} & names  # character suffixes (score 3), as libtbx tries


def test_reused_reference_parser_is_faithful():
    """One DIALS parser per program gives what a fresh parser gives, call after call."""
    from dials.util.options import ArgumentParser

    from dials_refl_stats.pipeline.arguments import with_reader_scope

    args = [["n_slots=7"], ["n_slots=abc"], ["slots=3", "-v"], [], ["reader=dials"]]
    for one in args:
        fresh = ArgumentParser(
            phil=with_reader_scope(_module("spot_size_histogram").phil_scope),
            read_experiments=True,
            read_reflections=True,
            check_format=False,
        )
        assert reference_outcome("spot_size_histogram", one) == reference_outcome(
            "spot_size_histogram", one, parser=fresh
        )


# --- mixed command lines -----------------------------------------------------------------

PHIL_FILES = {
    "params.phil": "histogram {\n  n_slots = 12\n}\nselection.flags = strong\n",
    "more.eff": "histogram.data_max = 300\nhistogram.n_slots = 30\n",
    "with_include.phil": "include file more.eff\noutput.log_y = True\n",
    "refl.phil": f"input.reflections = {REFL2}\n",
    "selection.phil": "selection {\n  flags = strong\n  rule = any\n}\nreader = dials\n",
    "intensity.params": "intensity.choice = sum prf\nframe.bin_width = 4\n",
}

MIXED = [
    ("spot_size_histogram", [REFL, "params.phil", "-v"]),
    ("spot_size_histogram", ["-vv", REFL, "params.phil", "more.eff", "n_slots=5"]),
    ("spot_size_histogram", [REFL, "n_slots=5", "more.eff", "-v", "-v"]),
    ("spot_size_histogram", [REFL, "with_include.phil", "selection.flags=all"]),
    ("spot_size_histogram", [f"input.reflections={REFL2}"]),
    ("spot_size_histogram", [REFL, f"input.reflections={REFL2}", "-v"]),
    ("spot_size_histogram", [f"reflections={REFL}", REFL2, "log_y=True"]),
    ("spot_size_histogram", [REFL, "refl.phil", "params.phil"]),
    ("spot_size_histogram", [REFL, EXPT, f"input.reflections={REFL2}", "n_slots=9"]),
    ("spot_size_histogram", [REFL, f"input.experiments={EXPT}"]),
    ("strong_reflection_positions", [REFL, "selection.phil", "reader=fast", "-v"]),
    ("strong_reflection_positions", [f"input.reflections={REFL}", "selection.rule=any"]),
    ("intensity_per_frame", [REFL2, "intensity.params", "frame.source=xyzobs"]),
    ("intensity_per_frame", [REFL2, REFL, "intensity.params", "choice=sum", "-vvv"]),
    ("intensity_per_frame", [EXPT, REFL2, "refl.phil", "bin_width=2"]),
]


def _case_id(value) -> str:
    if isinstance(value, list):
        return " ".join(a.replace(str(data_path("sim_small")), "sim") for a in value)
    return "" if value is None else str(value)


@pytest.fixture
def phil_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in PHIL_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "unknown.phil").write_text(
        "histogram.n_slots = 3\nfoo = 1\nhistogram {\n  bar = 2\n}\n"
    )
    (tmp_path / "syntax.phil").write_text("histogram.n_slots = 3\nhistogram {\n")
    (tmp_path / "binary.phil").write_bytes(b"\x80\x81\xff junk")
    (tmp_path / "empty.phil").write_text("")
    (tmp_path / "notes.refl").write_text("not a table\n")
    return tmp_path


@pytest.mark.parametrize("program,args", MIXED, ids=_case_id)
def test_mixed_command_lines_agree_with_dials(phil_files, program, args):
    reference = reference_outcome(program, args)
    assert reference.error is None, reference.error
    ours, took_fast_path = program_outcome(program, args)
    assert ours.error is None, ours.error
    assert without_input_files(ours.phil) == without_input_files(reference.phil)
    assert ours.reflections == reference.reflections  # input.reflections= first, as DIALS
    assert ours.experiments == reference.experiments
    assert ours.verbose == reference.verbose
    assert took_fast_path == (not reference.experiments)


MIXED_ERRORS = [
    # (program, args, our message: None for exactly DIALS's own text)
    ("intensity_per_frame", [REFL2, "ts=True"], None),
    ("spot_size_histogram", [REFL, "params.phil", "n_slots=abc"], None),
    ("spot_size_histogram", [REFL, "data_max=abc", "params.phil", "-v"], None),
    ("spot_size_histogram", [REFL, "syntax.phil", "n_slots=abc"], "syntax.phil"),
    ("spot_size_histogram", [REFL, "unknown.phil", "-v"], "unknown.phil"),
    ("spot_size_histogram", [REFL, "binary.phil"], "binary.phil"),
    ("spot_size_histogram", [REFL, EXPT, "syntax.phil"], "syntax.phil"),
    ("spot_size_histogram", [REFL, EXPT, "unknown.phil", "zzz=1"], None),
    ("spot_size_histogram", [REFL, "unknown.phil", "n_slots=abc", "zzz=1"], None),
    ("spot_size_histogram", [REFL, "--foo"], "--foo: unrecognised option (see -h for the options)"),
    ("spot_size_histogram", [REFL, "empty.phil"], "empty.phil: empty file"),
    ("spot_size_histogram", [REFL, "--phil", "gone.phil"], "gone.phil: file not found"),
    ("spot_size_histogram", ["input.reflections=gone.refl"], "gone.refl: file not found"),
    ("spot_size_histogram", [REFL, "input.reflections=notes.refl"], "notes.refl: not a DIALS"),
]


@pytest.mark.parametrize("program,args,message", MIXED_ERRORS, ids=_case_id)
def test_mixed_errors_are_one_sorry_in_dials_words(phil_files, program, args, message):
    ours, _ = program_outcome(program, args)
    reference = reference_outcome(program, args)
    assert ours.error is not None
    if message is None:
        assert ours.error == reference.error
    elif message.endswith(".phil"):
        # A phil file's problem: DIALS's text, on one line, naming the file.
        assert "\n" not in ours.error and message in ours.error
        words = reference.error.split()
        if reference.error.startswith("The following definitions were not recognised"):
            items = [line.strip() for line in reference.error.splitlines()[1:]]
            assert ours.error.startswith("The following definitions were not recognised: ")
            assert all(item.split(" = ")[1] in ours.error for item in items)
        else:
            assert " ".join(words) in ours.error
    else:
        assert "\n" not in ours.error and ours.error.startswith(message), ours.error
