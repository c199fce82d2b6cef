"""Parameters that size work or memory are bounded; odd criteria are warned about."""

from __future__ import annotations

import json

import pytest
from conftest import data_path
from test_programs_common import assert_sorry, run_inprocess

INTEGRATED = [data_path("sim_small/integrated.expt"), data_path("sim_small/integrated.refl")]

LIMITS = [
    ("spot_size_histogram", "n_slots=1000000", "n_slots"),
    ("spot_size_histogram", "data_max=inf", "data_max"),
    ("spot_size_histogram", "data_min=-inf", "data_min"),
    ("spot_size_histogram", "data_max=nan", "data_max"),
    ("strong_reflection_positions", "n_bins=100000", "n_bins"),
    ("strong_reflection_positions", "n_shells=1000000", "n_shells"),
    ("strong_reflection_positions", "top_fraction=2", "top_fraction"),
    ("per_image_statistics", "output.max_images=1", "max_images"),
    ("per_image_statistics", "window=0", "window"),
    ("intensity_per_frame", "bin_width=0", "bin_width"),
]


@pytest.mark.parametrize("program,argument,word", LIMITS)
def test_parameters_sizing_work_are_bounded(tmp_path, program, argument, word):
    code, _, err = run_inprocess(program, [*INTEGRATED, argument], tmp_path)
    assert_sorry(code, err, word)
    assert not list(tmp_path.iterdir())


def test_largest_histogram_is_quick_and_its_log_bounded(tmp_path):
    args = [data_path("sim_small/indexed.refl"), "n_slots=100000", "data_max=100000"]
    code, _, err = run_inprocess("spot_size_histogram", [*args, "output.plot=None"], tmp_path)
    assert code == 0, err
    log = (tmp_path / "dials.spot_size_histogram.log").read_text()
    assert len(log.splitlines()) < 400
    document = json.loads((tmp_path / "spot_size_histogram.json").read_text())
    assert document["results"]["overall"]["histogram"]["n_slots"] == 100000


def test_shells_beyond_the_data_are_warned_about(tmp_path):
    code, _, err = run_inprocess(
        "strong_reflection_positions", [*INTEGRATED, "d_min=100", "output.plot=None"], tmp_path
    )
    assert code == 0, err
    log = (tmp_path / "dials.strong_reflection_positions.log").read_text()
    assert "outside the resolution shells" in log


def test_top_fraction_of_tied_intensities_is_warned_about(tmp_path):
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(data_path("sim_small/strong.refl")))
    table["intensity.sum.value"] = flex.double(table.size(), 0.0)  # all tied, written by DIALS
    tied = tmp_path / "inputs" / "zero_intensities.refl"
    tied.parent.mkdir()
    table.as_file(str(tied))
    args = [tied, "top_fraction=0.05", "intensity.min=None", "output.plot=None"]
    code, _, err = run_inprocess("strong_reflection_positions", args, tmp_path)
    assert code == 0, err
    log = (tmp_path / "dials.strong_reflection_positions.log").read_text()
    assert "calls all" in log
