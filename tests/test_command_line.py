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
    [[EXPT], ["-c"], ["n_slots=abc"], ["no_such_parameter=1"], ["missing.refl"]],
    ids=["experiments", "show-config", "bad value", "unknown parameter", "missing file"],
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
    quick_dir, full_dir = tmp_path / "quick", tmp_path / "full"
    quick_dir.mkdir()
    full_dir.mkdir()
    assert run_program("spot_size_histogram", REFL, "n_slots=20", cwd=quick_dir).returncode == 0
    # "--phil" is an option, so this command line goes through DIALS's parser.
    phil = tmp_path / "p.phil"
    phil.write_text("n_slots=20\n")
    proc = run_program("spot_size_histogram", REFL, "--phil", phil, cwd=full_dir)
    assert proc.returncode == 0, proc.stderr
    quick = json.loads((quick_dir / "spot_size_histogram.json").read_text())
    full = json.loads((full_dir / "spot_size_histogram.json").read_text())
    assert quick["parameters"]["effective_phil"] == full["parameters"]["effective_phil"]
    assert quick["results"] == full["results"]
