"""What every registered program does the same way, tested once for each.

Programs are discovered from ``dials_refl_stats.command_line``, so a new program gets
these tests without writing them: help, ``-c``, parameter and input errors as one
``Sorry`` with nothing written, schema-valid JSON, a clean stderr, one summary line,
reruns from the recorded parameters, and in-process runs that keep to their own log.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import data_path, program_path

from dials_refl_stats import command_line
from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.schemas import validate

PROGRAMS = sorted(m.name for m in pkgutil.iter_modules(command_line.__path__))

#: Inputs every program can read (integrated tables have what each statistic needs).
EXPT = "sim_small/integrated.expt"
REFL = "sim_small/integrated.refl"

#: The stable summary line each program's log ends with (prefix).
SUMMARY_PREFIX = {
    "spot_size_histogram": "Spot size: n=",
    "intensity_per_frame": "Intensity per frame [",
    "strong_reflection_positions": "Strong reflections: n=",
    "per_image_statistics": "Per image: images=",
    "refl_stats": "Statistics:",
}


#: Scopes of one statistic that dials.refl_stats keeps under the statistic's program name.
MEMBER_SCOPES = ("selection.", "histogram.", "spot_size.")


def qualify(program: str, argument: str) -> str:
    """``argument`` as ``program`` spells it (dials.refl_stats: under a member's name, and
    its HTML report in place of a plot)."""
    if program == "refl_stats" and argument.startswith(MEMBER_SCOPES):
        return f"spot_size_histogram.{argument}"
    if program == "refl_stats" and argument.startswith("output.plot="):
        return argument.replace("output.plot=", "output.html=").replace(".png", ".html")
    return argument


def inputs() -> list[str]:
    return [str(data_path(EXPT)), str(data_path(REFL))]


def run_inprocess(program: str, args, cwd: Path) -> tuple[int, str, str]:
    """Run ``dials.<program> args`` in this process in ``cwd``: (exit code, stdout, stderr)."""
    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    stdout, stderr = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                module.run([str(a) for a in args])
                code = 0
            except Sorry as error:
                print(f"Sorry: {error}", file=sys.stderr)
                code = 1
            except SystemExit as error:
                code = error.code if isinstance(error.code, int) else 1
                if error.code not in (None, 0) and not isinstance(error.code, int):
                    print(error.code, file=sys.stderr)
    finally:
        os.chdir(here)
    return code, stdout.getvalue(), stderr.getvalue()


def assert_sorry(code: int, stderr: str, *words: str, choices: bool = False) -> None:
    """One ``Sorry:`` line; DIALS's choice errors add its list of possible choices."""
    assert code == 1
    lines = stderr.strip().splitlines()
    assert lines and lines[0].startswith("Sorry: "), stderr
    if choices:
        assert lines[1].strip() == "Possible choices are:", stderr
    else:
        assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("program", PROGRAMS)
def test_no_arguments_prints_help(tmp_path, program):
    code, out, err = run_inprocess(program, [], tmp_path)
    assert code == 0 and not err
    assert f"dials.{program}" in out and "Examples" in out
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("program", PROGRAMS)
def test_show_parameters(tmp_path, program):
    code, out, err = run_inprocess(program, ["-c"], tmp_path)
    assert code == 0 and not err
    assert "output {" in out and "selection {" in out and "mp {" in out
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("program", PROGRAMS)
def test_run_writes_valid_outputs_and_a_summary_line(tmp_path, program):
    code, out, err = run_inprocess(program, inputs(), tmp_path)
    assert code == 0, err
    assert err == ""
    names = sorted(p.name for p in tmp_path.iterdir())
    document = json.loads((tmp_path / f"{program}.json").read_text())
    validate(document)
    assert document["program"] == f"dials.{program}"
    assert names == sorted(
        [f"dials.{program}.log", f"{program}.json", *extra_outputs(program, document)]
    )
    log = (tmp_path / f"dials.{program}.log").read_text()
    assert log.count(SUMMARY_PREFIX[program]) >= 1
    assert SUMMARY_PREFIX[program] in out


def extra_outputs(program: str, document: dict) -> list[str]:
    return [f"{program}.html"] if program == "refl_stats" else [f"{program}.png"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_rerun_from_recorded_parameters_reproduces_results(tmp_path, program):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    args = [*inputs(), qualify(program, "output.plot=None"), qualify(program, "selection.rule=any")]
    assert run_inprocess(program, args, first)[0] == 0
    document = json.loads((first / f"{program}.json").read_text())
    phil = second / "rerun.phil"
    phil.write_text(document["parameters"]["effective_phil"])
    # the recorded phil names the experiments: the reflections alone rerun the same run
    code, _, err = run_inprocess(program, [str(data_path(REFL)), phil], second)
    assert code == 0, err
    again = json.loads((second / f"{program}.json").read_text())
    assert again["results"] == document["results"]
    assert again["parameters"]["effective_phil"] == document["parameters"]["effective_phil"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_consecutive_inprocess_runs_keep_to_their_own_log(tmp_path, program):
    for name in ("one", "two"):
        args = [*inputs(), qualify(program, "output.plot=None"), f"output.log={name}.log"]
        args.append(f"output.json={name}.json")
        assert run_inprocess(program, args, tmp_path)[0] == 0
    one = (tmp_path / "one.log").read_text()
    two = (tmp_path / "two.log").read_text()
    assert one.count(SUMMARY_PREFIX[program]) == two.count(SUMMARY_PREFIX[program])
    assert len(one.splitlines()) == pytest.approx(len(two.splitlines()), abs=2)


BAD_ARGUMENTS = {
    "unknown parameter": (["no_such_parameter=3"], ["no_such_parameter"]),
    "bad flag name": (["selection.flags=not_a_flag"], ["not_a_flag"]),
    "bad choice": (["selection.rule=sometimes"], ["sometimes"]),
    "json in a missing directory": (["output.json=/nonexistent/x.json"], ["/nonexistent"]),
    "plot in a missing directory": (["output.plot=/nonexistent/x.png"], ["/nonexistent"]),
    "log in a missing directory": (["output.log=/nonexistent/x.log"], ["/nonexistent"]),
    "plot format": (["output.plot=plot.gif"], ["gif"]),
    "negative nproc": (["mp.nproc=0"], ["nproc"]),
}


#: dials.refl_stats writes HTML, not a plot: no plot format to get wrong.
BAD_CASES = [
    (program, case)
    for program in PROGRAMS
    for case in sorted(BAD_ARGUMENTS)
    if not (program == "refl_stats" and case == "plot format")
]


@pytest.mark.parametrize("program,case", BAD_CASES)
def test_bad_parameters_are_one_sorry_and_write_nothing(tmp_path, program, case):
    extra, words = BAD_ARGUMENTS[case]
    extra = [qualify(program, a) for a in extra]
    code, _, err = run_inprocess(program, [*inputs(), *extra], tmp_path)
    assert_sorry(code, err, *words, choices=case == "bad choice")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("program", PROGRAMS)
def test_bad_inputs_are_one_sorry_and_write_nothing(tmp_path, program):
    refl = str(data_path(REFL))
    truncated = tmp_path / "inputs" / "truncated.refl"
    truncated.parent.mkdir()
    truncated.write_bytes(Path(refl).read_bytes()[:5000])
    text = tmp_path / "inputs" / "notes.refl"
    text.write_text("not a reflection table\n")
    work = tmp_path / "work"
    work.mkdir()
    cases = [
        ([str(data_path(EXPT)), "missing.refl"], ["missing.refl"]),
        ([str(data_path(EXPT)), str(truncated)], ["truncated.refl"]),
        ([str(data_path(EXPT)), str(text)], ["notes.refl"]),
        ([*inputs(), refl], ["given twice"]),
        ([str(data_path("sim_twoexp/indexed.expt")), refl], ["not in the experiments"]),
    ]
    for args, words in cases:
        code, _, err = run_inprocess(program, args, work)
        assert_sorry(code, err, *words)
        assert not list(work.iterdir())


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_scan_of_two_billion_images_is_sorry_where_rows_are_per_image(tmp_path, program):
    """A hand-edited image range of 2^31 - 1 images: programs with a row per image say so
    in one Sorry before reading anything (a table of them was a MemoryError traceback);
    the others run (they make nothing per image), refl_stats without those members."""
    from dials_refl_stats.pipeline.program import Program

    document = json.loads(data_path(EXPT).read_text())
    document["scan"][0].update(image_range=[1, 2**31 - 1], exposure_time=[0.1], epochs=[0.0])
    expt = tmp_path / "inputs" / "long_scan.expt"
    expt.parent.mkdir()
    expt.write_text(json.dumps(document))
    work = tmp_path / "work"
    work.mkdir()
    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    classes = {c for c in vars(module).values() if isinstance(c, type)}
    (owner,) = {c for c in classes if issubclass(c, Program) and c.__module__ == module.__name__}
    args = [expt, data_path(REFL), qualify(program, "output.plot=None")]
    code, _, err = run_inprocess(program, args, work)
    if owner.rows_per_image and owner.scans_too_long is Program.scans_too_long:
        assert_sorry(code, err, "long_scan.expt: the scans have more than 2,000,000 images")
        assert "images 1 to 2147483647" in err
        assert not list(work.iterdir())
        return
    assert code == 0, err
    if program == "refl_stats":  # its members with a row per image are left out, named
        document = json.loads((work / "refl_stats.json").read_text())
        left_out = {m["statistic"]: m["reason"] for m in document["results"]["not_computed"]}
        assert set(left_out) == {"per_image_statistics", "intensity_per_frame"}
        assert all("more than 2,000,000 images" in reason for reason in left_out.values())
        assert set(document["results"]["statistics"]) == {
            "spot_size_histogram",
            "strong_reflection_positions",
        }


#: Every number parameter of each program (refl_stats: under its members' scopes).
def number_parameters(program: str) -> list[tuple[str, str]]:
    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    return [
        (d.path, d.object.type.phil_type)
        for d in module.phil_scope.all_definitions()
        if d.object.type.phil_type in ("int", "float")
    ]


#: Values libtbx.phil evaluates to numbers no program can use (NaN, infinities, beyond
#: int64, beyond any histogram or resolution).
ABSURD_NUMBERS = ["nan", "inf", "-1e400", "9223372036854775808", "1e308", "-1e308", "1e-320"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_absurd_numbers_are_a_result_or_one_sorry(tmp_path, program):
    """Every number parameter given NaN, infinities, 2^63, 1e308 or 1e-320: a result or
    one Sorry line with nothing written (libtbx.phil's own extract raised a traceback
    for ``inf`` given to an int; NaN passed its range checks)."""
    parameters = number_parameters(program)
    assert parameters
    for path, kind in parameters:
        for value in ABSURD_NUMBERS:
            work = tmp_path / f"{path}={value}"
            work.mkdir()
            args = [*inputs(), qualify(program, "output.plot=None"), f"{path}={value}"]
            code, _, err = run_inprocess(program, args, work)
            if code == 0:
                assert not err, (path, value, err)
            else:
                assert_sorry(code, err)
                assert not list(work.iterdir()), (path, value)
            if value == "nan":
                assert code == 1 and path.split(".")[-1] in err, (path, err)


@pytest.mark.parametrize("program", PROGRAMS)
def test_output_over_an_input_is_refused(tmp_path, program):
    copy = tmp_path / "copy.refl"
    shutil.copy(data_path(REFL), copy)
    before = copy.read_bytes()
    code, _, err = run_inprocess(program, [copy, f"output.json={copy}"], tmp_path)
    assert_sorry(code, err, "overwrite an input")
    assert copy.read_bytes() == before


@pytest.mark.parametrize("program", PROGRAMS)
def test_end_to_end_subprocess(tmp_path, program):
    result = subprocess.run(
        [program_path(program), *inputs()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    validate(json.loads((tmp_path / f"{program}.json").read_text()))
    bad = subprocess.run(
        [program_path(program), "missing.refl"], cwd=tmp_path, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("Sorry: ") and "Traceback" not in bad.stderr


@pytest.mark.parametrize("program", PROGRAMS)
def test_auto_spelled_out_is_the_default(tmp_path, program):
    """``reader=auto`` (libtbx extracts the word as its Auto object) means the default."""
    results = []
    for extra in ([], ["reader=auto"], ["reader=Auto"]):
        args = [*inputs(), qualify(program, "output.plot=None"), *extra]
        code, _, err = run_inprocess(program, args, tmp_path)
        assert code == 0, err
        results.append(json.loads((tmp_path / f"{program}.json").read_text())["results"])
    assert results[1] == results[0] and results[2] == results[0]


@pytest.mark.parametrize("program", PROGRAMS)
def test_experiment_list_named_refl_is_called_what_it_is(tmp_path, program):
    renamed = tmp_path / "inputs" / "renamed.refl"
    renamed.parent.mkdir()
    shutil.copy(data_path(EXPT), renamed)
    work = tmp_path / "work"
    work.mkdir()
    code, _, err = run_inprocess(program, [renamed], work)
    assert_sorry(code, err, "renamed.refl", "experiment list")
    assert not list(work.iterdir())


@pytest.mark.parametrize("program", PROGRAMS)
def test_dials_usage_error_for_a_phil_value_is_one_sorry(tmp_path, program, monkeypatch):
    """DIALS 3.14+ (dials/dials d3ccc0289) ends a bad phil value with argparse's usage
    error (usage on stderr, exit status 2); emulated on this DIALS, the program still
    gives one Sorry line, exit 1, and writes nothing."""
    from dials.util.options import ArgumentParser

    parse_args = ArgumentParser.parse_args

    def newer_parse_args(self, *args, **kwargs):
        try:
            return parse_args(self, *args, **kwargs)
        except RuntimeError as error:
            self.error(message=f"Invalid phil parameter: {error}")

    monkeypatch.setattr(ArgumentParser, "parse_args", newer_parse_args)
    code, out, err = run_inprocess(program, [*inputs(), "mp.nproc=abc"], tmp_path)
    assert_sorry(code, err, "Invalid phil parameter", "mp.nproc")
    assert "usage" not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_message_quoting_a_files_strings_stays_one_line(tmp_path, program):
    """A table whose experiment identifier holds a line break (a corrupt or hand-made
    file), with experiments it does not match: one ``Sorry`` line, the break escaped."""
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(data_path(REFL)))
    identifiers = table.experiment_identifiers()
    for key in list(identifiers.keys()):
        identifiers[key] = "not\nthese\texperiments"
    table.as_file(str(tmp_path / "odd.refl"))
    code, _, err = run_inprocess(
        program, [str(data_path(EXPT)), str(tmp_path / "odd.refl")], tmp_path
    )
    assert_sorry(code, err, "odd.refl", "not\\nthese\\texperiments")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.refl"]


RSS_AFTER_FREE = """
import dials_refl_stats.command_line as programs
import numpy as np

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

block = np.ones(1 << 20)  # 8 MB, every page touched
before = rss_mb()
del block
print(programs.MALLOC_TUNED, before - rss_mb())
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="Linux only")
@pytest.mark.parametrize("user_setting", [None, "GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_"])
def test_programs_have_malloc_keep_freed_memory_unless_the_user_tuned_it(user_setting):
    """A program's freed 8 MB block stays in its heap for reuse (glibc, by default, maps
    it anew and gives it back at once); a user's own malloc settings are left alone."""
    if not os.confstr("CS_GNU_LIBC_VERSION"):
        pytest.skip("glibc only")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES",)}
    env = {k: v for k, v in env.items() if not k.startswith("MALLOC_")}
    if user_setting == "GLIBC_TUNABLES":
        env[user_setting] = "glibc.malloc.check=0"
    elif user_setting:
        env[user_setting] = str(128 * 1024)  # glibc's own default
    done = subprocess.run(
        [sys.executable, "-c", RSS_AFTER_FREE], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    tuned, released = done.stdout.split()
    if user_setting is None:
        assert tuned == "True" and float(released) < 1  # kept for the next block
    else:
        assert tuned == "False" and float(released) > 6  # given back, as glibc does


def test_an_unreadable_number_in_a_phil_file_is_one_sorry(tmp_path):
    """The same through a phil file (a rerun's params.phil, edited), on both parsers'
    routes: the light one, and DIALS's (``--phil FILE``, an option only it reads)."""
    phil = tmp_path / "inputs" / "params.phil"
    phil.parent.mkdir()
    phil.write_text("hit {\n  min_spots = inf\n}\n")
    inputs_ = [data_path("ssx_CuNiR/indexed.expt"), data_path("ssx_CuNiR/indexed.refl")]
    for route, extra in (("light", [phil]), ("dials", ["--phil", phil])):
        work = tmp_path / route
        work.mkdir()
        code, _, err = run_inprocess("per_image_statistics", [*inputs_, *extra], work)
        assert_sorry(code, err, "hit.min_spots=inf: not a number of type int")
        assert not list(work.iterdir())
