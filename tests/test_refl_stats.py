"""dials.refl_stats: one pass, the same results as each program alone, one HTML report."""

from __future__ import annotations

import json

import pytest
from conftest import data_path
from test_programs_common import run_inprocess

from dials_refl_stats.command_line.refl_stats import MEMBERS
from dials_refl_stats.pipeline import execute

INTEGRATED = ["sim_small/integrated.expt", "sim_small/integrated.refl"]


def run_refl_stats(tmp_path, *args) -> dict:
    code, _, err = run_inprocess("refl_stats", [*map(str, args)], tmp_path)
    assert code == 0, err
    return json.loads((tmp_path / "refl_stats.json").read_text())


def run_member(tmp_path, name, *args) -> dict:
    code, _, err = run_inprocess(name, [*map(str, args), "output.plot=None"], tmp_path)
    assert code == 0, err
    return json.loads((tmp_path / f"{name}.json").read_text())


def test_each_statistic_equals_its_own_program(tmp_path):
    inputs = [data_path(p) for p in INTEGRATED]
    combined = run_refl_stats(tmp_path, *inputs, "spot_size_histogram.histogram.n_slots=37")
    statistics = combined["results"]["statistics"]
    assert list(statistics) == list(MEMBERS)
    assert combined["results"]["not_computed"] == []
    for name in MEMBERS:
        extra = ["n_slots=37"] if name == "spot_size_histogram" else []
        alone = run_member(tmp_path, name, *inputs, *extra)
        assert statistics[name]["results"] == alone["results"], name
        assert statistics[name]["selection"] == alone["selection"], name
    hist = statistics["spot_size_histogram"]["results"]["overall"]["histogram"]
    assert hist["n_slots"] == 37


@pytest.mark.parametrize("nproc", [1, 2])
def test_strong_positions_without_experiments_equal_the_joined_rows(tmp_path, nproc):
    """Without experiments, in one pass: the tasks compute and the strong rows' panel and
    position are binned here (panel sizes from the data): the program's joined rows."""
    inputs = [data_path("quartz_processed/strong.refl"), data_path("sim_twoexp/indexed.refl")]
    combined = run_refl_stats(tmp_path, *inputs, "output.html=None", f"mp.nproc={nproc}")
    block = combined["results"]["statistics"]["strong_reflection_positions"]
    joined = run_member(tmp_path, "strong_reflection_positions", *inputs, "rows_on_driver=True")
    assert block["results"] == joined["results"]
    assert block["results"]["position_histograms"]["extent_source"].startswith("data")
    log = (tmp_path / "dials.refl_stats.log").read_text()
    assert "strong rows' panel and position are kept here" in log


def test_every_file_is_read_once(tmp_path, monkeypatch):
    calls = []
    original = execute.read_chunk

    def counting(file, *args, **kwargs):
        calls.append(file.path)
        return original(file, *args, **kwargs)

    monkeypatch.setattr(execute, "read_chunk", counting)
    paths = [data_path("ssx_CuNiR/indexed.refl"), data_path("ssx_CuNiR/strong_5.refl")]
    run_refl_stats(tmp_path, *paths, "output.html=None")
    assert sorted(calls) == sorted(map(str, paths))


def test_statistics_the_inputs_cannot_support_are_listed(tmp_path):
    document = run_refl_stats(tmp_path, data_path("sim_small/strong.refl"))
    left_out = {e["statistic"]: e["reason"] for e in document["results"]["not_computed"]}
    assert "intensity_per_frame" in left_out and "xyzcal.px" in left_out["intensity_per_frame"]
    assert "spot_size_histogram" in document["results"]["statistics"]
    assert "per_image_statistics" in document["results"]["statistics"]
    html = (tmp_path / "refl_stats.html").read_text()
    assert "Not computed" in html and "intensity_per_frame" in html
    log = (tmp_path / "dials.refl_stats.log").read_text()
    assert "dials.intensity_per_frame not computed" in log
    assert "Statistics: computed=" in log


def test_per_image_analysis_without_variances_leaves_its_member_out(tmp_path):
    """With experiments, DIALS's per-image analysis needs the summed intensities and their
    variances: on a table without variances (written by DIALS) the per-image member is
    not computed, with the reason, and the others are."""
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(data_path("ssx_CuNiR/indexed.refl")))
    del table["intensity.sum.variance"]
    table.as_file(str(tmp_path / "no_variance.refl"))
    (tmp_path / "run").mkdir()
    document = run_refl_stats(
        tmp_path / "run", data_path("ssx_CuNiR/indexed.expt"), tmp_path / "no_variance.refl"
    )
    left_out = {e["statistic"]: e["reason"] for e in document["results"]["not_computed"]}
    reason = left_out["per_image_statistics"]
    assert "no 'intensity.sum.variance' column (DIALS's per-image analysis needs it" in reason
    assert "spot_size_histogram" in document["results"]["statistics"]


def test_one_phil_file_configures_the_suite(tmp_path):
    phil = tmp_path / "suite.phil"
    phil.write_text(
        "spot_size_histogram.histogram.n_slots = 12\nper_image_statistics.hit.min_spots = 3\n"
    )
    document = run_refl_stats(tmp_path, data_path("ssx_CuNiR/indexed.refl"), phil)
    statistics = document["results"]["statistics"]
    assert statistics["spot_size_histogram"]["results"]["overall"]["histogram"]["n_slots"] == 12
    assert statistics["per_image_statistics"]["results"]["stills"] is None  # no .expt: frames
    assert "n_slots = 12" in document["parameters"]["effective_phil"]


def test_prefix_names_every_output(tmp_path):
    code, _, err = run_inprocess(
        "refl_stats", [*(data_path(p) for p in INTEGRATED), "output.prefix=night1"], tmp_path
    )
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["dials.night1.log", "night1.html", "night1.json"]


@pytest.mark.parametrize("argument", ["output.html=/nonexistent/r.html", "output.prefix=/no/dir/x"])
def test_unwritable_report_is_sorry_before_any_work(tmp_path, argument):
    code, _, err = run_inprocess(
        "refl_stats", [*(data_path(p) for p in INTEGRATED), argument], tmp_path
    )
    assert code == 1 and err.startswith("Sorry: ") and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
