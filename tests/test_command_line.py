"""Command-line parsing: the DIALS-free phil-only path equals DIALS's ArgumentParser.

A command line of reflection files, phil arguments, phil files and ``-v`` is parsed
without importing DIALS's parser (and so dxtbx's models); anything else goes through
DIALS's ``ArgumentParser``. Both must give the same parameters and records.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import data_path, needs_dials, run_program

pytestmark = needs_dials

REFL = str(data_path("sim_small/indexed.refl"))
EXPT = str(data_path("sim_small/indexed.expt"))

PROGRAMS = ["spot_size_histogram", "intensity_per_frame", "strong_reflection_positions"]

COMMON_ARGUMENTS = [
    [],
    ["selection.flags=all", "-v"],
    ["selection.flags=indexed,strong", "rule=any", "-vv", "output.plot=None"],
    ["reader=dials", "output.json=x.json"],
]
CASES = [(program, args) for program in PROGRAMS for args in COMMON_ARGUMENTS] + [
    ("spot_size_histogram", ["n_slots=50"]),
    ("spot_size_histogram", ["histogram.n_slots=7", "data_max=Auto", "-v"]),
    ("spot_size_histogram", ["mask_bits=valid+foreground", "log_y=True"]),
    ("intensity_per_frame", ["intensity.choice=sum+prf", "frame.source=xyzobs", "bin_width=5"]),
    ("strong_reflection_positions", ["intensity.min=None", "i_over_sigma.min=3", "n_shells=4"]),
]


def _case_id(value) -> str:
    return value if isinstance(value, str) else " ".join(value) or "defaults"


def _phil_scope(program: str):
    module = __import__(f"dials_refl_stats.command_line.{program}", fromlist=["phil_scope"])
    return module.phil_scope


def _both_ways(program: str, args: list[str]):
    from dials_refl_stats.pipeline import arguments as shared

    phil = _phil_scope(program)
    quick = shared.parse_command_line([REFL, *args], phil, "usage", "")
    assert isinstance(quick.parser, shared.PhilOnlyParser)
    full = shared._parse_with_dials([REFL], list(args), phil, "usage", "")
    assert not isinstance(full.parser, shared.PhilOnlyParser)
    return quick, full


@pytest.mark.parametrize("program,args", CASES, ids=_case_id)
def test_phil_only_path_equals_dials_argument_parser(program, args):
    from dials_refl_stats.pipeline.arguments import parameters_record

    quick, full = _both_ways(program, args)
    assert parameters_record(quick) == parameters_record(full)
    assert quick.parser.diff_phil.as_str() == full.parser.diff_phil.as_str()
    assert quick.options.verbose == full.options.verbose
    assert quick.reflection_paths == full.reflection_paths == [REFL]
    assert len(quick.experiments) == len(full.experiments) == 0


def test_phil_file_is_read_the_same_way(tmp_path):
    from dials_refl_stats.pipeline.arguments import parameters_record

    params = tmp_path / "params.phil"
    params.write_text("histogram {\n  n_slots = 12\n}\nselection.flags = strong\n")
    quick, full = _both_ways("spot_size_histogram", [str(params), "data_max=300"])
    assert quick.params.histogram.n_slots == full.params.histogram.n_slots == 12
    assert quick.params.histogram.data_max == 300
    assert parameters_record(quick) == parameters_record(full)


@pytest.mark.parametrize(
    "extra",
    [
        [EXPT],
        [f"input.experiments={EXPT}"],
        ["-c"],
        ["--foo"],
        ["n_slots=abc"],
        ["no_such_parameter=1"],
        ["missing.refl"],
    ],
    ids=[
        "experiments",
        "input.experiments",
        "show-config",
        "unknown option",
        "bad value",
        "unknown parameter",
        "missing file",
    ],
)
def test_anything_else_goes_to_dials(extra):
    from dials_refl_stats.pipeline.arguments import parse_phil_only

    assert parse_phil_only(_phil_scope("spot_size_histogram"), extra) is None


def test_experiments_still_read_by_dials():
    from dials_refl_stats.pipeline.arguments import PhilOnlyParser, parse_command_line

    invocation = parse_command_line(
        [EXPT, REFL, "n_slots=10"], _phil_scope("spot_size_histogram"), "usage", ""
    )
    assert not isinstance(invocation.parser, PhilOnlyParser)
    assert len(invocation.experiments) == 1
    assert invocation.experiment_paths == [EXPT]
    assert invocation.params.histogram.n_slots == 10


def test_phil_only_run_does_not_import_dxtbx_models(tmp_path):
    """The start-up saving is real: a reflection-only run never loads dxtbx.model."""
    script = (
        "import sys\n"
        "from dials_refl_stats.command_line.spot_size_histogram import run\n"
        f"run([{REFL!r}, 'output.plot=None'])\n"
        "print('dxtbx.model' in sys.modules, 'dials.util.options' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False False"
    assert (tmp_path / "spot_size_histogram.json").exists()


def test_both_paths_give_the_same_json(tmp_path):
    quick_dir, full_dir, named_dir = tmp_path / "quick", tmp_path / "full", tmp_path / "named"
    for directory in (quick_dir, full_dir, named_dir):
        directory.mkdir()
    assert run_program("spot_size_histogram", REFL, "n_slots=20", cwd=quick_dir).returncode == 0
    # The reflection file named by a phil parameter, as DIALS programs accept it.
    proc = run_program(
        "spot_size_histogram", f"input.reflections={REFL}", "n_slots=20", cwd=named_dir
    )
    assert proc.returncode == 0, proc.stderr
    # "--phil" is an option, so this command line goes through DIALS's parser.
    phil = tmp_path / "p.phil"
    phil.write_text("n_slots=20\n")
    proc = run_program("spot_size_histogram", REFL, "--phil", phil, cwd=full_dir)
    assert proc.returncode == 0, proc.stderr
    quick = json.loads((quick_dir / "spot_size_histogram.json").read_text())
    full = json.loads((full_dir / "spot_size_histogram.json").read_text())
    named = json.loads((named_dir / "spot_size_histogram.json").read_text())
    assert quick["parameters"]["effective_phil"] == full["parameters"]["effective_phil"]
    assert quick["results"] == full["results"] == named["results"]
    assert named["parameters"] == quick["parameters"]


@pytest.mark.parametrize(
    "name,content,extra,message",
    [
        ("unknown.phil", "histogram.n_slots = 5\nhistogram.bins = 3\n", [], "not recognised: "),
        ("broken.phil", "histogram {\n  n_slots = 5\n", [], 'no matching "}"'),
        (None, None, ["--foo"], "--foo: unrecognised option"),
    ],
    ids=["unknown parameter in a phil file", "phil syntax error", "unknown option"],
)
def test_command_line_mistakes_are_one_sorry_line(tmp_path, name, content, extra, message):
    """What the user sees: one ``Sorry`` line saying what is wrong, no traceback."""
    args = list(extra)
    if name:
        (tmp_path / name).write_text(content)
        args.append(name)
    proc = run_program("spot_size_histogram", REFL, *args, cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Sorry: "), proc.stderr
    assert message in lines[0] and (name or "--foo") in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_dials_path_invocations_keep_their_own_parameters():
    """A later parse through DIALS's (reused) parser does not change an earlier result."""
    from dials.util import Sorry

    from dials_refl_stats.pipeline.arguments import parameters_record, parse_command_line

    phil = _phil_scope("spot_size_histogram")
    first = parse_command_line([EXPT, REFL, "n_slots=10"], phil, "usage", "")
    record = parameters_record(first)
    with pytest.raises(Sorry, match="Unknown command line parameter"):
        parse_command_line([EXPT, REFL, "zzz=1"], phil, "usage", "")
    second = parse_command_line([EXPT, REFL, "n_slots=30"], phil, "usage", "")
    assert second.parser is not first.parser
    assert parameters_record(first) == record
    assert "n_slots = 10" in first.parser.diff_phil.as_str()
    assert "n_slots = 30" in second.parser.diff_phil.as_str()


def test_record_names_the_experiments_for_a_rerun(tmp_path):
    """The effective phil keeps input.experiments (not the reflection files): saved as a
    phil file, it reruns with the reflections alone; the experiments named again are
    read once."""
    from dials_refl_stats.pipeline.arguments import parameters_record, parse_command_line

    phil = _phil_scope("spot_size_histogram")
    first = parse_command_line([EXPT, REFL, "n_slots=10"], phil, "usage", "")
    record = parameters_record(first)["effective_phil"]
    assert EXPT in record and REFL not in record
    saved = tmp_path / "rerun.phil"
    saved.write_text(record)
    for args in ([REFL, str(saved)], [EXPT, REFL, str(saved)]):
        again = parse_command_line(args, phil, "usage", "")
        assert again.experiment_paths == [EXPT]
        assert len(again.experiments) == len(first.experiments) == 1
        assert again.params.histogram.n_slots == 10
        assert parameters_record(again)["effective_phil"] == record


@pytest.mark.parametrize(
    "program,args",
    [
        ("per_image_statistics", [EXPT, "hit.min_spots=3", "mp.nproc=2"]),
        ("strong_reflection_positions", [EXPT, "intensity.min=10", "n_bins=20"]),
        ("refl_stats", [EXPT, "spot_size_histogram.histogram.n_slots=7"]),
        ("intensity_per_frame", [EXPT]),
    ],
)
def test_diff_of_parameters_without_reading_the_experiments_again(program, args):
    """The logged and recorded diff equals the parser's own ``diff_phil`` (which reads
    every experiment file again, twice), for DIALS's parser and the light one."""
    from dials_refl_stats.pipeline.arguments import diff_phil, parse_command_line

    module = __import__(f"dials_refl_stats.command_line.{program}", fromlist=["phil_scope"])
    classes = getattr(module, "PROGRAM_CLASS", None)
    light = bool(classes and classes.light_experiments)
    invocation = parse_command_line(
        [REFL, *args], module.phil_scope, "usage", "", light_experiments=light
    )
    assert diff_phil(invocation.parser).as_str() == invocation.parser.diff_phil.as_str()
    assert EXPT in diff_phil(invocation.parser).as_str()
