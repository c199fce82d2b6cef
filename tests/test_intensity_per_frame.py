"""dials.intensity_per_frame: how does intensity vary with image number?

Real DIALS files, real DIALS (flex) for the independent reference computations.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import data_path, needs_dials, run_program

from dials_refl_stats.analysis.grouping import group_by_index, group_by_value
from dials_refl_stats.analysis.intensity_per_frame import (
    image_numbers,
    per_frame_table,
    plot_positions,
    summarise_intensities,
    z_floor_frames,
)
from dials_refl_stats.schemas import validate

SIM = "sim_small/integrated"
TWO = "sim_twoexp/integrated"
SSX = "ssx_CuNiR/integrated"
QUARTZ = "quartz_processed/integrated"
CENTROID_REFL = "centroid_test_data/integrated.refl"
PROGRAM = "intensity_per_frame"
OUTPUTS = (f"dials.{PROGRAM}.log", f"{PROGRAM}.json", f"{PROGRAM}.png")


def expt_refl(stem: str) -> list[str]:
    return [str(data_path(stem + ".expt")), str(data_path(stem + ".refl"))]


@pytest.fixture
def run_ok(run_inprocess):
    """Run the program in-process (in ``tmp_path``); exit 0, nothing on stderr; the
    validated JSON document."""

    def call(*args) -> dict:
        result = run_inprocess(PROGRAM, *args)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        assert result.document is not None
        return result.document

    return call


@pytest.fixture
def run_sorry(run_inprocess, tmp_path):
    """Run in-process in an empty directory: exit 1, one ``Sorry:`` line, no files."""

    def call(*args) -> str:
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        result = run_inprocess(PROGRAM, *args, cwd=work)
        assert result.exit_code == 1, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Sorry:"), result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert list(work.iterdir()) == []
        return lines[0]

    return call


def load_table(refl: str):
    from dials.array_family import flex

    return flex.reflection_table.from_file(str(refl))


def seed(refl: str, variant: str = "integrated"):
    """The tutorial script, in DIALS flex: integrated rows, z of xyzcal.px, I sum."""
    from dials.array_family import flex

    table = flex.reflection_table.from_file(refl)
    table = table.select(table.get_flags(getattr(table.flags, variant)))
    z = table["xyzcal.px"].parts()[2].as_numpy_array()
    intensity = table["intensity.sum.value"].as_numpy_array()
    return z, intensity, table


def plain_per_frame(frames, values):
    """Reference per-frame statistics with a plain Python loop."""
    out = {}
    for f in sorted(set(frames.tolist())):
        v = values[frames == f]
        out[f] = (v.size, float(np.mean(v)), float(np.median(v)))
    return out


def intensity_block(document, choice="sum"):
    return next(b for b in document["results"]["intensities"] if b["intensity"] == choice)


# ---------------------------------------------------------------- pure analysis


def test_image_numbers_are_floor_z_plus_one_for_any_first_image():
    z = np.array([-1.0, -0.5, -1e-9, 0.0, 0.999, 1.0, 18.7, 19.0])
    for first in (0, 1, 17):
        assert np.array_equal(image_numbers(z, first), np.floor(z).astype(int) + 1)
    # a scan with images 0..9 has array range (-1, 9): z in [-1, 0) is image 0
    assert image_numbers(np.array([-1.0, -0.01, 0.0, 8.99]), 0).tolist() == [0, 0, 1, 9]
    assert z_floor_frames(np.array([-0.5, 0.0, 2.7])).tolist() == [-1, 0, 2]


def test_per_frame_table_matches_a_plain_loop():
    rng = np.random.default_rng(7)
    frames = rng.integers(3, 40, size=5000)
    frames = frames[(frames < 10) | (frames > 14)]  # leave empty frames
    intensity = rng.normal(50, 80, size=frames.size)
    variance = rng.uniform(-5, 100, size=frames.size)
    table = per_frame_table(frames, intensity, variance, bin_width=1, frame_range=(1, 45))
    assert table.frame_first[0] == 1 and table.frame_last[-1] == 45
    for i, f in enumerate(table.frame_first):
        rows = frames == f
        assert table.count[i] == rows.sum()
        assert table.n_non_positive[i] == (intensity[rows] <= 0).sum()
        if rows.any():
            assert table.mean[i] == pytest.approx(intensity[rows].mean())
            assert table.median[i] == pytest.approx(np.median(intensity[rows]))
            good = rows & (variance > 0)
            assert table.n_with_sigma[i] == good.sum()
            expected = (intensity[good] / np.sqrt(variance[good])).mean()
            assert table.mean_i_over_sigma[i] == pytest.approx(expected)
        else:
            assert np.isnan(table.mean[i]) and np.isnan(table.median[i])


def test_bins_of_several_frames_start_at_the_scan_start_and_extend_outside():
    frames = np.array([-1, 0, 1, 2, 3, 4, 5, 6, 21])
    values = np.arange(frames.size, dtype=float)
    table = per_frame_table(frames, values, np.ones(frames.size), bin_width=5, frame_range=(1, 20))
    # aligned to image 1: ... -4..0, 1..5, 6..10, 11..15, 16..20, 21..25
    assert table.frame_first.tolist() == [-4, 1, 6, 11, 16, 21]
    assert table.frame_last.tolist() == [0, 5, 10, 15, 20, 25]
    assert table.count.tolist() == [2, 5, 1, 0, 0, 1]
    assert table.median[1] == pytest.approx(4.0)
    assert table.count.sum() == frames.size


def test_empty_input_gives_an_empty_table():
    empty = np.array([], dtype=float)
    table = per_frame_table(empty.astype(int), empty, empty)
    assert table.n_bins == 0
    with_range = per_frame_table(empty.astype(int), empty, empty, frame_range=(1, 3))
    assert with_range.count.tolist() == [0, 0, 0]
    assert summarise_intensities(empty, empty, empty).n == 0


def test_plot_positions_centre_frames_on_integers():
    z = np.array([0.0, 0.5, 0.99, -0.5])
    frames = image_numbers(z, 1)
    x = plot_positions(frames, z)
    assert np.all((x >= frames - 0.5) & (x < frames + 0.5))
    still = plot_positions(np.array([2, 2, 2]), np.zeros(3), continuous=False)
    assert np.all(np.abs(still - 2) <= 0.3 + 1e-9)


def test_grouping_hands_out_each_groups_rows_in_order():
    index = np.array([2, 0, 5, -1, 2, 0])
    grouping = group_by_index(index, 3)
    assert [g.tolist() for g in grouping] == [[1, 5], [], [0, 4]]
    assert grouping.inverse.tolist() == [2, 0, -1, -1, 2, 0]
    values, grouping = group_by_value(np.array([7, -1, 7, 3]))
    assert values.tolist() == [-1, 3, 7]
    assert [g.tolist() for g in grouping] == [[1], [3], [0, 2]]
    assert grouping.inverse.tolist() == [2, 0, 2, 1]


@pytest.mark.parametrize("low,high", [(0, 40), (0, 70_000), (-3, 9)])
def test_group_then_value_order_equals_lexsort(low, high):
    from dials_refl_stats.analysis.grouping import order_by_group_then_value, stable_order

    rng = np.random.default_rng(high)
    groups = rng.integers(low, high, size=20_000)
    values = np.round(rng.normal(size=20_000), 2)  # many ties
    values[rng.random(20_000) < 0.01] = np.nan
    assert np.array_equal(stable_order(groups), np.argsort(groups, kind="stable"))
    order = order_by_group_then_value(groups, values)
    reference = np.lexsort((values, groups))
    assert np.array_equal(groups[order], groups[reference])
    assert np.array_equal(values[order], values[reference], equal_nan=True)
    assert sorted(order.tolist()) == list(range(20_000))


# ---------------------------------------------------------------- the program


@needs_dials
def test_seed_equivalent_run_selects_exactly_the_seed_rows(run_ok):
    expt, refl = expt_refl(SIM)
    document = run_ok(expt, refl, "selection.flags=integrated", "output.points=True")
    z, intensity, _ = seed(refl)
    block = intensity_block(document)
    points = block["points"]
    assert document["selection"]["n_selected"] == z.size == 4976
    assert block["overall"]["n"] == z.size
    assert document["selection"]["mask"] == 768
    assert document["selection"]["dials_equivalent"] == "flex.reflection_table.get_flags(mask)"
    np.testing.assert_allclose(points["z"], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(points["intensity"], intensity, rtol=1e-5, atol=1e-6)
    frames = np.floor(z).astype(int) + 1
    assert points["frame"] == frames.tolist()

    table = block["series"][0]["per_frame"]
    reference = plain_per_frame(frames, intensity)
    by_frame = dict(zip(table["frame_first"], range(table["n_bins"])))
    assert sum(table["count"]) == z.size
    for frame, (count, mean, median) in reference.items():
        i = by_frame[frame]
        assert table["count"][i] == count
        assert table["mean"][i] == pytest.approx(mean, rel=1e-5)
        assert table["median"][i] == pytest.approx(median, rel=1e-5, abs=1e-6)
    assert document["results"]["frame_numbering"] == ["image_number"]
    assert document["results"]["series"][0]["image_range"] == [1, 20]


@needs_dials
def test_default_selection_is_per_intensity(run_ok):
    expt, refl = expt_refl(SIM)
    document = run_ok(expt, refl, "intensity.choice=sum+prf")
    from dials.array_family import flex

    table = flex.reflection_table.from_file(refl)
    n_sum = table.get_flags(table.flags.integrated_sum).count(True)
    n_prf = table.get_flags(table.flags.integrated_prf).count(True)
    n_any = table.get_flags(table.flags.integrated, all=False).count(True)
    selection = document["selection"]
    assert selection["default_per_intensity"] is True
    assert selection["flags_requested"] == ["Auto"]
    per = {p["intensity"]: p for p in selection["per_intensity"]}
    assert per["sum"]["flags"] == ["integrated_sum"] and per["sum"]["n_selected"] == n_sum
    assert per["prf"]["flags"] == ["integrated_prf"] and per["prf"]["n_selected"] == n_prf
    assert selection["n_selected"] == n_any and selection["rule"] == "any"
    assert intensity_block(document, "prf")["overall"]["n"] == n_prf
    assert intensity_block(document, "sum")["overall"]["n"] == n_sum


@needs_dials
def test_scan_starting_at_image_zero(tmp_path, run_ok):
    """dials/dials#1153: images 0..19 have z in [-1, 19); image = floor(z) + 1."""
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    expt, refl = expt_refl(SIM)
    experiments = ExperimentListFactory.from_json_file(expt, check_format=False)
    scan = experiments[0].scan
    first, last = scan.get_image_range()
    scan.set_image_range((0, last - first))
    assert scan.get_array_range() == (-1, last - first)
    shifted_expt = tmp_path / "zero.expt"
    experiments.as_file(str(shifted_expt))
    table = flex.reflection_table.from_file(refl)
    for column in ("xyzcal.px", "xyzobs.px.value"):
        x, y, z = table[column].parts()
        table[column] = flex.vec3_double(x, y, z - 1.0)  # same rows, one image earlier
    shifted_refl = tmp_path / "zero.refl"
    table.as_file(str(shifted_refl))

    original = run_ok(expt, refl, "intensity.choice=prf", "output.points=True")
    (tmp_path / "intensity_per_frame.json").unlink()
    zero = run_ok(shifted_expt, shifted_refl, "intensity.choice=prf", "output.points=True")
    assert zero["results"]["series"][0]["image_range"] == [0, 19]
    before = intensity_block(original, "prf")
    after = intensity_block(zero, "prf")
    assert after["n_outside_scan"] == before["n_outside_scan"] == 0
    assert np.array_equal(
        np.array(after["points"]["frame"]), np.array(before["points"]["frame"]) - 1
    )
    z = np.array(after["points"]["z"])
    assert z.min() < 0  # the first image really is at negative z
    assert np.all(np.array(after["points"]["frame"]) == np.floor(z) + 1)
    table_before = before["series"][0]["per_frame"]
    table_after = after["series"][0]["per_frame"]
    assert table_after["frame_first"] == list(range(0, 20))
    assert table_before["frame_first"] == list(range(1, 21))
    assert table_after["count"] == table_before["count"]
    assert table_after["median"] == table_before["median"]


@needs_dials
def test_two_experiments_give_two_series(run_ok):
    expt, refl = expt_refl(TWO)
    document = run_ok(expt, refl, "output.points=True")
    from dials.array_family import flex

    table = flex.reflection_table.from_file(refl)
    table = table.select(table.get_flags(table.flags.integrated_sum))
    ids = table["id"].as_numpy_array()
    series = document["results"]["series"]
    assert [s["experiments"][0]["id"] for s in series] == [0, 1]
    assert all(s["numbering"] == "image_number" and s["image_range"] == [1, 30] for s in series)
    block = intensity_block(document)
    for k, experiment_id in enumerate([0, 1]):
        rows = ids == experiment_id
        assert block["series"][k]["summary"]["n"] == rows.sum()
        assert sum(block["series"][k]["per_frame"]["count"]) == rows.sum()
        z = table["xyzcal.px"].parts()[2].as_numpy_array()[rows]
        intensity = table["intensity.sum.value"].as_numpy_array()[rows]
        reference = plain_per_frame(np.floor(z).astype(int) + 1, intensity)
        per_frame = block["series"][k]["per_frame"]
        got = {
            f: (c, m)
            for f, c, m in zip(per_frame["frame_first"], per_frame["count"], per_frame["median"])
            if c
        }
        assert got.keys() == reference.keys()
        for frame, (count, _, median) in reference.items():
            assert got[frame][0] == count
            assert got[frame][1] == pytest.approx(median, rel=1e-5, abs=1e-6)
    assert block["overall"]["n"] == len(table)


@needs_dials
def test_without_experiments_frames_are_floor_z_and_say_so(run_ok, tmp_path):
    refl = str(data_path(CENTROID_REFL))
    document = run_ok(refl, "selection.flags=integrated", "output.points=True")
    z, intensity, _ = seed(refl)
    block = intensity_block(document)
    assert document["results"]["frame_numbering"] == ["z_floor"]
    assert "floor(z)" in document["results"]["numbering_rules"]["z_floor"]
    assert block["points"]["frame"] == np.floor(z).astype(int).tolist()
    assert block["overall"]["n"] == z.size == 1657
    log = (tmp_path / "dials.intensity_per_frame.log").read_text()
    assert "No experiments given: frames are floor(z)" in log


@needs_dials
def test_stills_one_frame_per_experiment_and_empty_prf_style_selection(run_ok, tmp_path):
    expt, refl = expt_refl(SSX)
    document = run_ok(expt, refl)
    block = intensity_block(document)
    assert document["results"]["frame_numbering"] == ["experiment_index"]
    (series,) = block["series"]
    assert series["per_frame"]["frame_first"] == [0, 1, 2, 3, 4]
    assert sum(series["per_frame"]["count"]) == block["overall"]["n"] == 4482
    assert len(document["results"]["series"][0]["experiments"]) == 5

    (tmp_path / "intensity_per_frame.json").unlink()
    empty = run_ok(expt, refl, "selection.flags=integrated")
    assert empty["selection"]["n_selected"] == 0
    assert intensity_block(empty)["overall"]["n"] == 0
    assert intensity_block(empty)["series"] == []
    log = (tmp_path / "dials.intensity_per_frame.log").read_text()
    assert "no reflections selected" in log
    assert "4482 reflections have integrated_sum (try selection.flags=integrated_sum)" in log


@needs_dials
def test_xyzobs_frames_and_bins(run_ok):
    expt, refl = expt_refl(QUARTZ)
    document = run_ok(expt, refl, "frame.source=xyzobs", "bin_width=10")
    block = intensity_block(document)
    table = block["series"][0]["per_frame"]
    assert document["results"]["frame_source"] == "xyzobs.px.value"
    assert table["frame_first"] == list(range(1, 101, 10))
    assert table["frame_last"][-1] == 100
    assert sum(table["count"]) == block["overall"]["n"] == 1653
    assert block["n_outside_scan"] == 0


@needs_dials
def test_phil_rerun_reproduces_the_results(run_ok, tmp_path):
    expt, refl = expt_refl(SIM)
    first = run_ok(
        expt,
        refl,
        "intensity.choice=sum+prf",
        "bin_width=3",
        "frame.source=xyzobs",
        "selection.flags=integrated",
    )
    phil = tmp_path / "rerun.phil"
    phil.write_text(first["parameters"]["effective_phil"])
    (tmp_path / "intensity_per_frame.json").unlink()
    second = run_ok(expt, refl, phil)
    assert second["results"] == first["results"]
    assert second["selection"] == first["selection"]


# ---------------------------------------------------------------- selection fallback


@needs_dials
def test_tables_never_integrated_fall_back_to_strong(run_ok, tmp_path):
    """The shared rule: selection.flags at its default, and no row of the file has any of
    its bits (indexed.refl: nothing integrated yet): the file uses 'strong'."""
    expt, refl = (str(data_path(f"sim_twoexp/indexed.{s}")) for s in ("expt", "refl"))
    table = load_table(refl)
    integrated = table.flags.integrated_sum | table.flags.integrated_prf
    assert table.get_flags(integrated, all=False).count(True) == 0
    strong = table.get_flags(table.flags.strong)
    intensity = table["intensity.sum.value"].select(strong).as_numpy_array()

    document = run_ok(expt, refl, "output.points=True")
    selection = document["selection"]
    assert selection["n_selected"] == strong.count(True) > 0
    (fallback,) = selection["fallbacks"]
    assert fallback["file_index"] == [0] and fallback["flags"] == ["strong"]
    block = intensity_block(document)
    assert block["overall"]["n"] == strong.count(True)
    np.testing.assert_allclose(np.sort(block["points"]["intensity"]), np.sort(intensity), rtol=1e-5)
    # the per-intensity log line names the rows used, not the intensity's default flags
    log = (tmp_path / "dials.intensity_per_frame.log").read_text()
    n = strong.count(True)
    assert f"sum: {n} of {table.size()} reflections selected (strong: selection fallback)" in log

    off = run_ok(expt, refl, "selection.fallback=False", "json=off.json")
    assert off["selection"]["n_selected"] == 0 and off["selection"]["fallbacks"] == []


@needs_dials
def test_explicit_flags_never_fall_back(run_ok):
    refl = str(data_path("sim_twoexp/indexed.refl"))
    document = run_ok(refl, "selection.flags=integrated_sum", "frame.source=xyzobs")
    assert document["selection"]["n_selected"] == 0
    assert document["selection"]["fallbacks"] == []
    assert document["selection"]["default_per_intensity"] is False


# ---------------------------------------------------------------- command line


@needs_dials
def test_console_script_success(tmp_path):
    """End to end, in a subprocess: outputs, nothing on stderr, the summary lines."""
    result = run_program(PROGRAM, *expt_refl(TWO), "intensity.choice=sum+prf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    for name in OUTPUTS:
        assert (tmp_path / name).stat().st_size > 0
    document = json.loads((tmp_path / f"{PROGRAM}.json").read_text())
    validate(document)
    table = load_table(expt_refl(TWO)[1])
    n_sum = table.get_flags(table.flags.integrated_sum).count(True)
    n_prf = table.get_flags(table.flags.integrated_prf).count(True)
    log = (tmp_path / f"dials.{PROGRAM}.log").read_text()
    assert f"Intensity per frame [sum]: n={n_sum} frames=" in log
    assert f"Intensity per frame [prf]: n={n_prf} frames=" in log
    assert "intensities are <= 0" in log
    assert f"Intensity per frame [sum]: n={n_sum} frames=" in result.stdout


@needs_dials
def test_console_script_sorry(tmp_path):
    """End to end, in a subprocess: exit 1, one Sorry line, no files."""
    result = run_program(PROGRAM, data_path(SIM + ".refl"), "bin_width=0", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Sorry:") and "bin_width" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


@needs_dials
def test_no_arguments_prints_help(tmp_path, run_inprocess):
    result = run_inprocess(PROGRAM)
    assert result.exit_code == 0 and result.stderr == ""
    assert "dials.intensity_per_frame" in result.stdout
    assert list(tmp_path.iterdir()) == []


@needs_dials
@pytest.mark.parametrize(
    "args, message",
    [
        (["quartz_processed/strong.refl"], "no 'xyzcal.px' column"),
        (
            [SSX + ".expt", SSX + ".refl", "intensity.choice=prf"],
            "no 'intensity.prf.value' column for intensity.choice=prf",
        ),
        ([SIM + ".refl", "selection.flags=integratd"], "unknown reflection flag 'integratd'"),
        ([SIM + ".refl", "plot=out.gif"], "unsupported plot format"),
        ([SIM + ".refl", "intensity.choice=None"], "intensity.choice"),
        (["missing.refl"], "missing.refl: file not found"),
        ([TWO + ".refl", SIM + ".expt"], "is not in the experiments given"),
        ([SIM + ".refl", "bin_width=0"], "bin_width"),
        ([SIM + ".refl", "json=no_such_dir/out.json"], "no_such_dir"),
    ],
)
def test_bad_input_is_one_sorry_line_and_no_files(run_sorry, args, message):
    resolved = [a if "=" in a or a == "missing.refl" else str(data_path(a)) for a in args]
    line = run_sorry(*resolved)
    assert message.lower() in line.lower()


@needs_dials
@pytest.mark.parametrize("value", ["bin_width=abc", "frame.source=foo"])
def test_bad_parameter_values_are_sorry(run_inprocess, tmp_path, value):
    """DIALS's own phil errors (a choice error lists the choices on further lines)."""
    result = run_inprocess(PROGRAM, data_path(SIM + ".refl"), value)
    assert result.exit_code == 1
    assert result.stderr.startswith("Sorry:") and value.split("=")[0] in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


@needs_dials
def test_missing_columns_name_the_dials_step(run_sorry):
    line = run_sorry(data_path("quartz_processed/strong.refl"))
    assert re.search(r"strong\.refl: no 'xyzcal\.px' column .*dials\.integrate", line), line
    line = run_sorry(*expt_refl(SSX), "intensity.choice=sum+prf")
    assert "written by dials.integrate" in line and "intensity.choice=sum" in line


# ---------------------------------------------------------------- plots


def test_large_scatter_png_stays_small(tmp_path):
    from dials_refl_stats.plotting.frames import Panel, SeriesPoints, intensity_per_frame_figure

    rng = np.random.default_rng(1)
    n = 100_000
    z = rng.uniform(0, 360, n)
    frames = image_numbers(z, 1)
    intensity = rng.lognormal(4, 2, n) - 20
    table = per_frame_table(frames, intensity, np.abs(intensity) + 1, 1, (1, 360))
    path = tmp_path / "big.png"
    panel = Panel(
        "sum", [SeriesPoints("experiment 0", plot_positions(frames, z), intensity, table, (1, 360))]
    )
    intensity_per_frame_figure(str(path), [panel], title="big", xlabel="Image number")
    assert path.stat().st_size < 400_000
    svg = tmp_path / "big.svg"
    intensity_per_frame_figure(str(svg), [panel], title="big", xlabel="Image number")
    assert svg.stat().st_size < 1_500_000  # points rasterised, not 10^5 vector paths
    assert "<image" in svg.read_text()


@needs_dials
def test_empty_default_selection_says_which_other_intensity_has_data(run_ok, tmp_path):
    """Summation-only stills given prf columns: the prf default selects nothing."""
    from dials.array_family import flex

    expt, refl = expt_refl(SSX)
    table = flex.reflection_table.from_file(refl)
    table["intensity.prf.value"] = flex.double(len(table), 0.0)
    table["intensity.prf.variance"] = flex.double(len(table), -1.0)
    with_prf = tmp_path / "prf_columns.refl"
    table.as_file(str(with_prf))
    document = run_ok(expt, with_prf, "intensity.choice=prf")
    assert document["selection"]["per_intensity"][0]["flags"] == ["integrated_prf"]
    assert document["selection"]["n_selected"] == 0
    assert intensity_block(document, "prf")["overall"]["n"] == 0
    log = (tmp_path / "dials.intensity_per_frame.log").read_text()
    assert "prf: no reflections selected" in log
    assert "4482 reflections have integrated_sum (try intensity.choice=sum)" in log
    assert (tmp_path / "intensity_per_frame.png").stat().st_size > 0
