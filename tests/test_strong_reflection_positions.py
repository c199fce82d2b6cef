"""dials.strong_reflection_positions against the seed script, computed with DIALS's flex.

Real DIALS, real files, no mocks. The seed: integrated reflections
(``get_flags(flags.integrated)``) with ``intensity.sum.value >= 5000``, x and y of
``xyzobs.px.value``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import data_path, needs_dials, run_program

from dials_refl_stats.analysis.grouping import group_by_pairs
from dials_refl_stats.analysis.strong_positions import (
    StrongCriteria,
    data_panel_extents,
    merge_extents,
    position_histograms,
    resolution_shells,
    select_strong,
)
from dials_refl_stats.schemas import validate

pytestmark = needs_dials

PROGRAM = "strong_reflection_positions"
OUTPUTS = (f"dials.{PROGRAM}.log", f"{PROGRAM}.json", f"{PROGRAM}.png")

# (experiments or None, reflections) of integrated data sets with both sum and prf.
INTEGRATED = [
    ("sim_small/integrated.expt", "sim_small/integrated.refl"),
    ("sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"),
    ("centroid_test_data/indexed.expt", "centroid_test_data/integrated.refl"),
    ("quartz_processed/integrated.expt", "quartz_processed/integrated.refl"),
]


# --- helpers --------------------------------------------------------------------------


def load_table(relative):
    from dials.array_family import flex

    return flex.reflection_table.from_file(str(data_path(relative)))


def load_experiments(path):
    from dxtbx.model.experiment_list import ExperimentListFactory

    return ExperimentListFactory.from_json_file(str(path), check_format=False)


def seed(table, threshold=5000):
    """The seed script's selection: integrated and intensity.sum.value >= threshold."""
    sel = table.get_flags(table.flags.integrated) & (table["intensity.sum.value"] >= threshold)
    xyz = table["xyzobs.px.value"].select(sel)
    x, y, _ = xyz.parts()
    return np.array(sel), np.array(x), np.array(y)


def args_of(expt, refl):
    return ([str(data_path(expt))] if expt else []) + [str(data_path(refl))]


@pytest.fixture
def run_ok(run_inprocess, tmp_path):
    """Run in-process (in ``cwd``, default ``tmp_path``): exit 0, nothing on stderr, every
    output written; return the validated document and the log."""

    def call(*args, cwd=None):
        directory = cwd or tmp_path
        result = run_inprocess(PROGRAM, *args, cwd=directory)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        for name in OUTPUTS:
            assert (directory / name).exists(), name
        assert result.document is not None
        return result.document, (directory / f"dials.{PROGRAM}.log").read_text()

    return call


@pytest.fixture
def run_sorry(run_inprocess, tmp_path):
    """Run in-process (in ``cwd``): exit 1, one ``Sorry:`` line, no output, no temporary."""

    def call(*args, cwd=None):
        directory = cwd or tmp_path
        result = run_inprocess(PROGRAM, *args, cwd=directory)
        assert result.exit_code == 1
        assert result.stderr.startswith("Sorry: "), result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in directory.iterdir() if p.name in OUTPUTS) == []
        assert not list(directory.glob(".*"))  # no temporary files left behind
        return result.stderr.strip()

    return call


def summary_line(log):
    lines = [line for line in log.splitlines() if line.startswith("Strong reflections: n=")]
    assert len(lines) == 1
    return lines[0]


# --- the seed's question, exactly --------------------------------------------------------


@pytest.mark.parametrize("expt,refl", INTEGRATED)
def test_selection_equals_the_seed_script(tmp_path, expt, refl, run_ok):
    table = load_table(refl)
    sel, x, y = seed(table)
    document, log = run_ok(*args_of(expt, refl), "output.positions=True")
    results = document["results"]

    n_integrated = table.get_flags(table.flags.integrated).count(True)
    assert document["selection"]["n_selected"] == n_integrated
    assert document["selection"]["files"] == {"n_selected": [n_integrated]}
    assert document["inputs"]["reflections"]["rows"] == [table.size()]
    assert document["selection"]["fallbacks"] == []
    assert document["selection"]["per_file"][0]["fallback"] is None
    assert document["selection"]["n_strong"] == sel.sum()
    assert results["n_strong"] == sel.sum() > 0
    positions = results["positions"]
    assert positions["row"] == np.flatnonzero(sel).tolist()
    np.testing.assert_allclose(positions["x_px"], x, rtol=1e-5)
    np.testing.assert_allclose(positions["y_px"], y, rtol=1e-5)
    assert summary_line(log).startswith(
        f"Strong reflections: n={sel.sum()} of {n_integrated} "
        f"({100 * sel.sum() / n_integrated:.1f}%) I>=5000 median_d="
    )

    # The 2D histograms hold exactly the seed's spots.
    panels = results["position_histograms"]["panels"]
    assert len(panels) == 1
    width, height = panels[0]["image_size"]
    counts, _, _ = np.histogram2d(
        y, x, bins=[np.linspace(0, height, 51), np.linspace(0, width, 51)]
    )
    assert panels[0]["counts"] == counts.astype(int).tolist()
    assert panels[0]["n_in_range"] + panels[0]["n_outside"] == sel.sum()


def test_strong_spots_sit_at_low_resolution(tmp_path, run_ok):
    """The seed's observation, as numbers: the strong fraction falls with resolution."""
    document, log = run_ok(*args_of(*INTEGRATED[0]))
    results = document["results"]
    shells = results["resolution_shells"]
    assert results["median_d_strong"] > 2 * results["median_d_all"]
    fractions = [f for f in shells["strong_fraction"] if f is not None]
    assert fractions[0] > 0.05 and fractions[-1] == 0
    assert shells["n_strong"][0] == max(shells["n_strong"])
    assert "Strong reflections per resolution shell" in log
    assert f"median_d={results['median_d_strong']:.2f}" in summary_line(log)


# --- resolution shells against independent computations ----------------------------------


def independent_shells(d, strong, n_shells):
    inv_d2 = 1.0 / np.asarray(d) ** 2
    edges = np.linspace(inv_d2.min(), inv_d2.max(), n_shells + 1)
    n_all, _ = np.histogram(inv_d2, bins=edges)
    n_strong, _ = np.histogram(inv_d2[strong], bins=edges)
    return edges, n_all, n_strong


@pytest.mark.parametrize("expt,refl", INTEGRATED)
def test_shells_against_dials_reciprocal_space_mapping(tmp_path, expt, refl, run_ok):
    """d from the observed positions = 1/|rlp| of DIALS's own centroid mapping."""
    table = load_table(refl)
    experiments = load_experiments(data_path(expt))
    integrated = table.get_flags(table.flags.integrated)
    if not table.experiment_identifiers().keys():
        # No identifiers (older DIALS): id is the index into the experiment list.
        assert set(table["id"].select(integrated)) == {0}
    table.centroid_px_to_mm(experiments)
    table.map_centroids_to_reciprocal_space(experiments)
    selected = table.select(integrated)
    d = 1.0 / np.array(selected["rlp"].norms())
    strong = np.array(selected["intensity.sum.value"] >= 5000)
    edges, n_all, n_strong = independent_shells(d, strong, 12)

    document, _ = run_ok(*args_of(expt, refl), "n_shells=12")
    shells = document["results"]["resolution_shells"]
    assert document["results"]["d_source"] == "geometry"
    assert shells["n_all"] == n_all.tolist()
    assert shells["n_strong"] == n_strong.tolist()
    np.testing.assert_allclose(shells["inv_d2_edges"], edges, rtol=1e-5)
    assert document["results"]["median_d_strong"] == pytest.approx(np.median(d[strong]), rel=1e-5)
    assert document["results"]["median_d_all"] == pytest.approx(np.median(d), rel=1e-5)
    assert strong.sum() == document["results"]["n_strong"]


def test_shells_from_the_d_column_without_experiments(tmp_path, run_ok):
    """No experiments: the integrated table's own d column (d of the Miller index)."""
    table = load_table("centroid_test_data/integrated.refl")
    sel, _, _ = seed(table)
    integrated = np.array(table.get_flags(table.flags.integrated))
    d = np.array(table["d"])[integrated]
    edges, n_all, n_strong = independent_shells(d, sel[integrated], 10)

    document, _ = run_ok(data_path("centroid_test_data/integrated.refl"))
    results = document["results"]
    assert results["d_source"] == "column"
    assert results["resolution_shells"]["n_all"] == n_all.tolist()
    assert results["resolution_shells"]["n_strong"] == n_strong.tolist()
    assert results["beam_centres"] == []
    assert results["plot_view"].startswith("pixel")
    assert results["position_histograms"]["extent_source"].startswith("data")


def test_d_column_on_request_and_shell_limits(tmp_path, run_ok):
    table = load_table("sim_small/integrated.refl")
    sel, _, _ = seed(table)
    integrated = np.array(table.get_flags(table.flags.integrated))
    d = np.array(table["d"])[integrated]
    strong = sel[integrated]
    edges = np.linspace(1 / 20.0**2, 1 / 2.0**2, 5 + 1)
    inv_d2 = 1 / d**2
    n_all, _ = np.histogram(inv_d2, bins=edges)
    n_strong, _ = np.histogram(inv_d2[strong], bins=edges)
    outside = ((inv_d2 < edges[0]) | (inv_d2 > edges[-1])).sum()

    document, log = run_ok(
        *args_of(*INTEGRATED[0]),
        "d_source=column",
        "n_shells=5",
        "d_min=2",
        "d_max=20",
    )
    shells = document["results"]["resolution_shells"]
    assert shells["n_all"] == n_all.tolist()
    assert shells["n_strong"] == n_strong.tolist()
    assert shells["n_outside"] == outside > 0
    assert f"{outside} selected reflections outside these shells" in log
    assert shells["d_max"] == pytest.approx(20) and shells["d_min"] == pytest.approx(2)


# --- millimetres, lab frame, beam centre ------------------------------------------------


def test_mm_lab_and_d_match_dxtbx_point_by_point(tmp_path, run_ok):
    expt, refl = INTEGRATED[1]  # two experiments, two detector models
    experiments = load_experiments(data_path(expt))
    document, _ = run_ok(*args_of(expt, refl), "output.positions=True")
    positions = document["results"]["positions"]
    n = len(positions["row"])
    assert set(positions["experiment"]) == {0, 1}
    for i in np.linspace(0, n - 1, 7).astype(int):
        experiment = experiments[positions["experiment"][i]]
        panel = experiment.detector[positions["panel"][i]]
        xy = (positions["x_px"][i], positions["y_px"][i])
        assert (positions["x_mm"][i], positions["y_mm"][i]) == pytest.approx(
            panel.pixel_to_millimeter(xy), rel=1e-5
        )
        lab = panel.get_pixel_lab_coord(xy)
        assert (positions["lab_x"][i], positions["lab_y"][i], positions["lab_z"][i]) == (
            pytest.approx(lab, rel=1e-5, abs=1e-3)
        )
        d = panel.get_resolution_at_pixel(experiment.beam.get_s0(), xy)
        assert positions["d"][i] == pytest.approx(d, rel=1e-5)

    for centre, experiment in zip(document["results"]["beam_centres"], experiments):
        panel_id, xy_mm = experiment.detector.get_ray_intersection(experiment.beam.get_s0())
        assert centre["panel"] == panel_id
        assert centre["mm"] == pytest.approx(xy_mm, rel=1e-5)
        assert centre["px"] == pytest.approx(
            experiment.detector[panel_id].millimeter_to_pixel(xy_mm), rel=1e-5
        )


def test_experiments_matched_by_identifier_not_by_order(tmp_path, run_ok):
    """Reversing the experiment list must not move any reflection."""
    expt, refl = INTEGRATED[1]
    experiments = load_experiments(data_path(expt))
    from dxtbx.model.experiment_list import ExperimentList

    reversed_list = ExperimentList(list(experiments)[::-1])
    reversed_path = tmp_path / "reversed.expt"
    reversed_list.as_file(str(reversed_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = run_ok(*args_of(expt, refl), "output.positions=True", cwd=tmp_path / "a")
    second, _ = run_ok(reversed_path, data_path(refl), "output.positions=True", cwd=tmp_path / "b")
    p, q = first["results"]["positions"], second["results"]["positions"]
    assert q["experiment"] == [1 - e for e in p["experiment"]]
    assert q["d"] == p["d"] and q["lab_x"] == p["lab_x"]
    assert first["results"]["resolution_shells"] == second["results"]["resolution_shells"]

    table = load_table(refl)
    sel, _, _ = seed(table)
    ids = np.array(table["id"])
    per_experiment = first["results"]["per_experiment"]
    for k, eid in enumerate(per_experiment["id"]):
        assert per_experiment["n_strong"][k] == (sel & (ids == eid)).sum()
        d_strong = np.array(p["d"])[np.array(p["id"]) == eid]
        assert per_experiment["median_d_strong"][k] == pytest.approx(np.median(d_strong), rel=1e-5)
        assert per_experiment["identifier"][k] == table.experiment_identifiers()[eid]


def test_unindexed_rows_without_shared_models_get_no_geometry(tmp_path, run_ok):
    """sim_twoexp/indexed.refl: id -1 spots, two detector models -> no mm, no d."""
    table = load_table("sim_twoexp/indexed.refl")
    ids = np.array(table["id"])
    document, log = run_ok(
        *args_of("sim_twoexp/indexed.expt", "sim_twoexp/indexed.refl"),
        "intensity.min=2000",
        "output.positions=True",
    )
    results = document["results"]
    assert results["n_without_geometry"] == (ids < 0).sum() > 0
    assert results["unassigned_rows"].startswith("rows with id -1 get no mm, lab or d")
    assert results["resolution_shells"]["n_without_d"] == (ids < 0).sum()
    positions = results["positions"]
    for i, eid in enumerate(positions["id"]):
        assert (positions["d"][i] is None) == (eid < 0)
    labels = results["per_experiment"]["label"]
    assert labels[0] == "unassigned (id -1)"


def test_several_files_and_experiment_lists(tmp_path, run_ok):
    tables = [load_table(INTEGRATED[0][1]), load_table(INTEGRATED[1][1])]
    document, _ = run_ok(
        *args_of(*INTEGRATED[0]), *args_of(*INTEGRATED[1]), "output.positions=True"
    )
    results = document["results"]
    assert results["n_strong"] == sum(seed(t)[0].sum() for t in tables)
    assert len(results["per_experiment"]["id"]) == 3
    assert document["inputs"]["experiments"]["n_experiments"] == 3
    assert document["inputs"]["experiments"]["paths"] == [
        str(data_path(INTEGRATED[0][0])),
        str(data_path(INTEGRATED[1][0])),
    ]
    assert document["selection"]["files"]["n_selected"] == [
        t.get_flags(t.flags.integrated).count(True) for t in tables
    ]
    assert [f["path"] for f in document["selection"]["per_file"]] == [
        str(data_path(INTEGRATED[0][1])),
        str(data_path(INTEGRATED[1][1])),
    ]
    assert results["n_without_geometry"] == 0
    assert set(results["positions"]["file_index"]) == {0, 1}
    assert set(results["positions"]["experiment"]) == {0, 1, 2}


# --- criteria -----------------------------------------------------------------------------


def test_i_over_sigma_and_top_fraction_against_numpy(tmp_path, run_ok):
    table = load_table("sim_small/integrated.refl")
    integrated = np.array(table.get_flags(table.flags.integrated))
    intensity = np.array(table["intensity.sum.value"])[integrated]
    variance = np.array(table["intensity.sum.variance"])[integrated]
    k = math.ceil(0.05 * intensity.size)
    threshold = np.sort(intensity)[::-1][k - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        i_sigma = np.where(variance > 0, intensity / np.sqrt(variance), -np.inf)
    expected = (intensity >= 1000) & (i_sigma >= 20) & (intensity >= threshold)

    document, log = run_ok(
        *args_of(*INTEGRATED[0]),
        "intensity.min=1000",
        "i_over_sigma.min=20",
        "top_fraction=0.05",
        "output.positions=True",
    )
    results = document["results"]
    assert results["n_strong"] == expected.sum() > 0
    assert results["strong_selection"]["top_fraction_k"] == k
    chosen = results["strong_selection"]["top_fraction_threshold"]
    assert chosen == pytest.approx(threshold, rel=1e-5)
    rows = np.flatnonzero(integrated)[expected]
    assert results["positions"]["row"] == rows.tolist()
    assert "I>=1000 I/sigma>=20 top5%" in summary_line(log)


def test_top_fraction_alone_is_the_brightest_five_percent(tmp_path, run_ok):
    document, log = run_ok(*args_of(*INTEGRATED[0]), "intensity.min=None", "top_fraction=0.05")
    results = document["results"]
    n = results["n_selected"]
    assert results["n_strong"] == math.ceil(0.05 * n)  # no ties in these intensities
    assert " top5% " in summary_line(log)


def test_profile_fitted_intensities(tmp_path, run_ok):
    table = load_table("sim_small/integrated.refl")
    integrated = table.get_flags(table.flags.integrated)
    expected = (integrated & (table["intensity.prf.value"] >= 3000)).count(True)
    document, log = run_ok(*args_of(*INTEGRATED[0]), "intensity.choice=prf", "intensity.min=3000")
    assert document["results"]["n_strong"] == expected
    assert document["results"]["criteria"]["intensity_column"] == "intensity.prf.value"
    assert summary_line(log).endswith("intensity=prf")


def test_select_strong_rules():
    intensity = np.array([10.0, 50.0, 50.0, np.nan, 30.0, 90.0])
    variance = np.array([1.0, 25.0, 0.0, 1.0, 100.0, 81.0])
    # Ties at the threshold are kept: top 1/3 of 5 finite -> k=2, threshold 50.
    top = select_strong(intensity, StrongCriteria(None, None, 1 / 3))
    assert top.top_fraction_k == 2 and top.top_fraction_threshold == 50
    assert top.strong.tolist() == [False, True, True, False, False, True]
    assert top.n_intensity_not_finite == 1
    snr = select_strong(intensity, StrongCriteria(None, 5.0, None), variance)
    assert snr.strong.tolist() == [True, True, False, False, False, True]
    assert snr.n_without_sigma == 1
    both = select_strong(intensity, StrongCriteria(40.0, 5.0, None), variance)
    assert both.strong.tolist() == [False, True, False, False, False, True]
    empty = select_strong(np.zeros(0), StrongCriteria(5000, None, 0.05))
    assert empty.n_strong == 0 and empty.strong_fraction is None
    with pytest.raises(ValueError, match="top_fraction"):
        StrongCriteria(top_fraction=0)


def test_resolution_shells_and_histograms_pure():
    d = np.array([10.0, 5.0, 2.5, np.nan, 2.0])
    strong = np.array([True, True, False, True, False])
    shells = resolution_shells(d, strong, n_shells=2)
    assert shells.n_all.tolist() == [2, 2] and shells.n_strong.tolist() == [2, 0]
    assert shells.n_without_d == 1
    assert shells.d_edges[0] == pytest.approx(10) and shells.d_edges[-1] == pytest.approx(2)
    nothing = resolution_shells(np.zeros(0), np.zeros(0, bool), n_shells=3)
    assert nothing.inv_d2_edges is None and nothing.n_all.tolist() == [0, 0, 0]
    # d so small that 1/d^2 overflows (a damaged d column) has no shell
    tiny = resolution_shells(np.array([5e-324, 1e-200, 2.0, 4.0]), np.ones(4, bool), 2)
    assert tiny.n_without_d == 2 and np.isfinite(tiny.inv_d2_edges).all()
    (hist,) = position_histograms(
        np.array([0.5, 9.5, 9.5, 20.0]),
        np.array([0.5, 0.5, 4.9, 1.0]),
        np.zeros(4, int),
        {0: (10, 5)},
        n_bins=2,
    )
    assert hist.counts.tolist() == [[1, 1], [0, 1]] and hist.n_outside == 1


def plain_shells(d, strong, n_shells, d_min=None, d_max=None):
    """The shells written plainly, row by row (an independent computation)."""
    inv = [1.0 / x**2 if math.isfinite(x) and x > 0 else math.nan for x in d]
    usable = [i for i, v in enumerate(inv) if math.isfinite(v)]
    low = 1.0 / d_max**2 if d_max else min(inv[i] for i in usable)
    high = 1.0 / d_min**2 if d_min else max(inv[i] for i in usable)
    edges = np.linspace(low, high, n_shells + 1)
    n_all, n_strong, outside = [0] * n_shells, [0] * n_shells, 0
    for i in usable:
        if not edges[0] <= inv[i] <= edges[-1]:
            outside += 1
            continue
        shell = min(max(int(np.searchsorted(edges, inv[i], side="right")) - 1, 0), n_shells - 1)
        n_all[shell] += 1
        n_strong[shell] += bool(strong[i])
    return n_all, n_strong, len(d) - len(usable), outside


@pytest.mark.parametrize("bounds", [(None, None), (2.0, None), (None, 20.0), (1.5, 30.0)])
def test_resolution_shells_block_by_block_equal_a_plain_count(monkeypatch, bounds):
    """Blocks of a few rows (monkeypatched) give the counts of one pass and of the plain
    row-by-row computation, with unusable d (NaN, inf, 0, negative, 1e-200) among them."""
    from dials_refl_stats.analysis import resolution_shells as shells_module

    rng = np.random.default_rng(7)
    d = rng.uniform(1.0, 40.0, size=997)
    d[rng.integers(0, d.size, 40)] = rng.choice([np.nan, np.inf, 0.0, -3.0, 1e-200], 40)
    strong = rng.random(d.size) < 0.3
    whole = resolution_shells(d, strong, 7, *bounds)
    monkeypatch.setattr(shells_module, "SHELL_BLOCK", 13)
    blocks = resolution_shells(d, strong, 7, *bounds)
    n_all, n_strong, n_without_d, n_outside = plain_shells(d, strong, 7, *bounds)
    for shells in (whole, blocks):
        assert shells.n_all.tolist() == n_all and shells.n_strong.tolist() == n_strong
        assert shells.n_without_d == n_without_d and shells.n_outside == n_outside
    np.testing.assert_array_equal(whole.inv_d2_edges, blocks.inv_d2_edges)
    assert whole.n_strong_outside == blocks.n_strong_outside


# --- tables that were never integrated; stills ---------------------------------------------


def test_panel_extents_from_the_data_and_merged():
    panel = np.array([0, 0, 3, 3, 5])
    x = np.array([10.2, 99.5, np.nan, 40.0, -3.0])
    y = np.array([7.0, 1.0, 12.0, np.inf, 0.0])
    extents = data_panel_extents(panel, x, y)
    assert extents == {0: (100.0, 7.0), 3: (40.0, 12.0), 5: (1.0, 1.0)}
    merged = merge_extents([extents, {5: (8.0, 0.5), 1: (2.0, 3.0)}])
    assert list(merged) == [0, 3, 5, 1]
    assert merged[5] == (8.0, 1.0) and merged[1] == (2.0, 3.0)


@pytest.mark.parametrize("key_range", [(0, 60), (-5, 3), (0, 1 << 20)])
def test_max_per_key_equals_a_plain_loop(key_range):
    from dials_refl_stats.analysis.strong_positions import max_per_key

    rng = np.random.default_rng(key_range[1])
    keys = rng.integers(*key_range, size=5000)
    values = rng.normal(size=5000)
    values[rng.random(5000) < 0.1] = np.nan
    values[rng.random(5000) < 0.05] = np.inf
    expected = {}
    for k in np.unique(keys):
        v = values[(keys == k) & np.isfinite(values)]
        expected[int(k)] = float(v.max()) if v.size else -np.inf
    assert max_per_key(keys, values) == expected
    assert max_per_key(np.array([], int), np.array([])) == {}


def test_group_by_pairs_and_histograms_per_panel_by_one_sort():
    pairs, grouping = group_by_pairs(np.array([2, 0, 2, 0, 1]), np.array([1, 5, 0, 5, 3]))
    assert pairs.tolist() == [[0, 5], [1, 3], [2, 0], [2, 1]]
    assert [g.tolist() for g in grouping] == [[1, 3], [4], [2], [0]]
    rng = np.random.default_rng(5)
    panel = rng.integers(0, 6, size=2000)
    x, y = rng.uniform(-5, 105, size=(2, 2000))
    sizes = {number: (100, 50 + number) for number in range(5)}  # panel 5: nowhere
    for h in position_histograms(x, y, panel, sizes, n_bins=7):
        on = panel == h.panel
        expected, _, _ = np.histogram2d(y[on], x[on], bins=[h.y_edges, h.x_edges])
        np.testing.assert_array_equal(h.counts, expected)
        assert h.n_outside == on.sum() - expected.sum()


def test_strong_refl_falls_back_to_strong_visibly(tmp_path, run_ok):
    table = load_table("quartz_processed/strong.refl")
    expected = (table["intensity.sum.value"] >= 5000).count(True)
    document, log = run_ok(data_path("quartz_processed/strong.refl"))
    record = document["selection"]["per_file"][0]
    assert record["flags"] == ["strong"]
    assert "no row has the 'integrated' flag; using 'strong'" in record["fallback"]
    assert record["intensity_origin"].startswith("dials.find_spots")
    assert document["selection"]["fallbacks"] == [
        {"flags": ["strong"], "reason": record["fallback"], "n_files": 1, "file_index": [0]}
    ]
    assert document["selection"]["n_selected"] == table.size()
    assert document["selection"]["flags"] == ["integrated"]  # what was asked for
    assert document["results"]["n_selected"] == table.size()
    assert document["results"]["n_strong"] == expected
    assert document["results"]["resolution_shells"] is None
    assert "using 'strong'" in log
    assert summary_line(log) == (
        f"Strong reflections: n={expected} of {table.size()} "
        f"({100 * expected / table.size():.1f}%) I>=5000 median_d=nan intensity=sum"
    )


def test_fallback_can_be_switched_off_and_explicit_flags_are_kept(tmp_path, run_ok):
    (tmp_path / "off").mkdir()
    (tmp_path / "indexed").mkdir()
    document, log = run_ok(
        data_path("quartz_processed/strong.refl"), "selection.fallback=False", cwd=tmp_path / "off"
    )
    assert document["results"]["n_selected"] == 0
    assert document["selection"]["per_file"][0]["fallback"] is None
    assert document["selection"]["fallbacks"] == []
    assert "no reflections selected" in log

    table = load_table("quartz_processed/indexed.refl")
    indexed = table.get_flags(table.flags.indexed)
    expected = (indexed & (table["intensity.sum.value"] >= 5000)).count(True)
    document, _ = run_ok(
        *args_of("quartz_processed/indexed.expt", "quartz_processed/indexed.refl"),
        "selection.flags=indexed",
        cwd=tmp_path / "indexed",
    )
    assert document["selection"]["per_file"][0]["fallback"] is None
    assert document["selection"]["fallbacks"] == []
    assert document["results"]["n_selected"] == indexed.count(True)
    assert document["results"]["n_strong"] == expected


def test_stills_summation_only_select_nothing_by_default(tmp_path, run_ok):
    """ssx_CuNiR: integrated_sum but no integrated_prf, so get_flags(integrated) is empty."""
    table = load_table("ssx_CuNiR/integrated.refl")
    assert table.get_flags(table.flags.integrated).count(True) == 0
    document, log = run_ok(*args_of("ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"))
    results = document["results"]
    assert results["n_selected"] == results["n_strong"] == 0
    assert results["strong_fraction"] is None
    assert results["resolution_shells"]["n_all"] == [0] * 10
    assert results["resolution_shells"]["inv_d2_edges"] is None
    assert all(sum(map(sum, p["counts"])) == 0 for p in results["position_histograms"]["panels"])
    assert "use selection.flags=integrated_sum" in log
    assert summary_line(log).startswith("Strong reflections: n=0 of 0 (nan%)")


def test_stills_with_integrated_sum(tmp_path, run_ok):
    table = load_table("ssx_CuNiR/integrated.refl")
    summed = table.get_flags(table.flags.integrated_sum)
    expected = (summed & (table["intensity.sum.value"] >= 100)).count(True)
    document, _ = run_ok(
        *args_of("ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"),
        "selection.flags=integrated_sum",
        "intensity.min=100",
    )
    results = document["results"]
    assert results["n_selected"] == summed.count(True)
    assert results["n_strong"] == expected > 0
    assert len(results["per_experiment"]["id"]) == 5 and len(results["beam_centres"]) == 5
    assert results["n_without_geometry"] == 0


# --- a multi-panel detector built from a real one -------------------------------------------


def split_into_pilatus_modules(tmp_path):
    """centroid_test_data as DIALS models a Pilatus 6M with multi_panel=True: 60 modules.

    The single panel's frame becomes the hierarchy's root frame; module (i, j) starts at
    pixel (i * 494, j * 212) (487 x 195 modules, 7- and 17-pixel gaps, as
    dxtbx.format.FormatCBFMiniPilatus builds it). Reflections move to their module's
    pixels; those in gaps are dropped. Written with DIALS to ``tmp_path``.
    """
    from dials.array_family import flex
    from dxtbx.format.FormatPilatusHelpers import _DetectorDatabase
    from dxtbx.model import Detector

    experiments = load_experiments(data_path("centroid_test_data/indexed.expt"))
    single = experiments[0].detector[0]
    module = _DetectorDatabase["Pilatus"]
    mx, my = module.module_size_fast, module.module_size_slow
    step_x, step_y = mx + module.gap_fast, my + module.gap_slow
    width, height = single.get_image_size()
    n_fast, n_slow = (width + module.gap_fast) // step_x, (height + module.gap_slow) // step_y
    px, py = single.get_pixel_size()

    detector = Detector()
    root = detector.hierarchy()
    root.set_frame(single.get_fast_axis(), single.get_slow_axis(), single.get_origin())
    for j in range(n_slow):
        for i in range(n_fast):
            panel = detector.add_panel()
            panel.set_name(f"Panel{j * n_fast + i}")
            panel.set_type(single.get_type())
            panel.set_image_size((mx, my))
            panel.set_pixel_size((px, py))
            panel.set_trusted_range(single.get_trusted_range())
            panel.set_thickness(single.get_thickness())
            panel.set_material(single.get_material())
            panel.set_mu(single.get_mu())
            panel.set_px_mm_strategy(single.get_px_mm_strategy())
            panel.set_local_frame((1, 0, 0), (0, 1, 0), (i * step_x * px, j * step_y * py, 0))
    experiments[0].detector = detector
    experiments.as_file(str(tmp_path / "split.expt"))

    table = load_table("centroid_test_data/integrated.refl")
    x, y, z = (np.array(p) for p in table["xyzobs.px.value"].parts())
    i, lx = np.divmod(x, step_x)
    j, ly = np.divmod(y, step_y)
    keep = (lx < mx) & (ly < my) & (i < n_fast) & (j < n_slow)
    table["original_row"] = flex.size_t(range(table.size()))
    table = table.select(flex.bool(keep))
    table["panel"] = flex.size_t((j[keep] * n_fast + i[keep]).astype(np.uint64))
    table["xyzobs.px.value"] = flex.vec3_double(
        flex.double(lx[keep]), flex.double(ly[keep]), flex.double(z[keep])
    )
    table.as_file(str(tmp_path / "split.refl"))
    return tmp_path / "split.expt", tmp_path / "split.refl", np.flatnonzero(keep), n_fast * n_slow


def test_multi_panel_detector_positions_agree_with_the_single_panel(tmp_path, run_ok):
    (tmp_path / "single").mkdir()
    (tmp_path / "split").mkdir()
    expt, refl, kept, n_panels = split_into_pilatus_modules(tmp_path)
    assert n_panels == 60
    assert len(load_experiments(expt)[0].detector) == 60

    single, _ = run_ok(*args_of(*INTEGRATED[2]), "output.positions=True", cwd=tmp_path / "single")
    split, log = run_ok(expt, refl, "output.positions=True", cwd=tmp_path / "split")
    a, b = single["results"]["positions"], split["results"]["positions"]
    # Every strong spot not in a gap is found again, at the same lab position and d.
    index = {row: k for k, row in enumerate(a["row"])}
    assert len(b["row"]) == len(set(kept[b["row"]]) & set(a["row"])) > 40
    for k, row in enumerate(b["row"]):
        m = index[int(kept[row])]
        for key in ("lab_x", "lab_y", "lab_z"):
            assert b[key][k] == pytest.approx(a[key][m], abs=2e-3)
        assert b["d"][k] == pytest.approx(a["d"][m], rel=1e-5)
        assert 0 <= b["x_px"][k] < 487 and 0 <= b["y_px"][k] < 195
    assert len(set(b["panel"])) > 5

    results = split["results"]
    assert results["plot_view"].startswith("lab")
    panels = results["position_histograms"]["panels"]
    assert len(panels) == 60 and {tuple(p["image_size"]) for p in panels} == {(487, 195)}
    assert sum(p["n_in_range"] for p in panels) == results["n_strong"]
    per_panel = np.bincount(b["panel"], minlength=60)
    assert [p["n_in_range"] for p in panels] == per_panel.tolist()
    # The beam centre: same lab point, now on a module (or in a gap: no panel).
    (centre_single,) = single["results"]["beam_centres"]
    (centre_split,) = results["beam_centres"]
    assert centre_split["lab"] == pytest.approx(centre_single["lab"], abs=2e-3)


# --- errors: Sorry, exit 1, no output --------------------------------------------------------


def test_missing_column_names_file_column_and_dials_step(tmp_path, run_sorry):
    table = load_table("quartz_processed/strong.refl")
    del table["xyzobs.px.value"]
    table.as_file(str(tmp_path / "nopos.refl"))
    (tmp_path / "run").mkdir()
    message = run_sorry(tmp_path / "nopos.refl", cwd=tmp_path / "run")
    assert "nopos.refl" in message and "'xyzobs.px.value'" in message
    assert "dials.find_spots" in message

    message = run_sorry(
        data_path("quartz_processed/strong.refl"), "intensity.choice=prf", cwd=tmp_path / "run"
    )
    assert "strong.refl" in message and "'intensity.prf.value'" in message
    assert "dials.integrate" in message


@pytest.mark.parametrize(
    "args,words",
    [
        (["sim_small/integrated.refl", "top_fraction=1.5"], ["top_fraction"]),
        (["sim_small/integrated.refl", "n_shells=0"], ["n_shells"]),
        (["sim_small/integrated.refl", "n_bins=0"], ["n_bins"]),
        (["sim_small/integrated.refl", "d_min=3", "d_max=2"], ["d_max", "d_min"]),
        (["sim_small/integrated.refl", "plot=x.jpg"], ["x.jpg", "jpg"]),
        (["sim_small/integrated.refl", "selection.flags=bogus"], ["bogus"]),
        (["quartz_processed/strong.refl", "d_source=geometry"], ["experiments"]),
        (["sim_small/integrated.refl", "does_not_exist.refl"], ["does_not_exist.refl"]),
        (
            ["quartz_processed/indexed.expt", "quartz_processed/strong.refl"],
            ["strong.refl", "identifier"],
        ),
        (
            ["sim_small/integrated.expt", "sim_twoexp/integrated.refl"],
            ["integrated.refl", "identifier"],
        ),
    ],
)
def test_bad_input_is_one_sorry_line_and_no_output(tmp_path, args, words, run_sorry):
    resolved = [
        str(data_path(a))
        if a.endswith((".refl", ".expt")) and "=" not in a and a != "does_not_exist.refl"
        else a
        for a in args
    ]
    message = run_sorry(*resolved)
    for word in words:
        assert word in message


def test_no_identifiers_and_too_few_experiments(tmp_path, run_sorry):
    """A table without identifiers maps id to the list index; id beyond the list: Sorry."""
    from dials.array_family import flex

    table = load_table("centroid_test_data/integrated.refl")
    table["id"] = flex.int(table.size(), 1)
    table.as_file(str(tmp_path / "id1.refl"))
    (tmp_path / "run").mkdir()
    message = run_sorry(
        data_path("centroid_test_data/indexed.expt"), tmp_path / "id1.refl", cwd=tmp_path / "run"
    )
    assert "id1.refl" in message and "id 1" in message


# --- reruns, formats, direct calls -------------------------------------------------------------


def test_effective_phil_reproduces_the_results(tmp_path, run_ok):
    (tmp_path / "first").mkdir()
    (tmp_path / "rerun").mkdir()
    args = args_of(*INTEGRATED[1])
    first, _ = run_ok(
        *args,
        "top_fraction=0.1",
        "i_over_sigma.min=10",
        "intensity.min=None",
        "n_shells=7",
        "n_bins=20",
        "output.positions=True",
        cwd=tmp_path / "first",
    )
    phil = tmp_path / "params.phil"
    phil.write_text(first["parameters"]["effective_phil"])
    rerun, _ = run_ok(*args, phil, cwd=tmp_path / "rerun")
    assert rerun["results"] == first["results"]
    assert rerun["parameters"]["effective_phil"] == first["parameters"]["effective_phil"]


def test_console_script_svg_plot(tmp_path):
    """End to end, in a subprocess (the console script): outputs, an svg plot."""
    path = data_path("sim_small/integrated.refl")
    result = run_program(PROGRAM, path, "plot=pos.svg", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert (tmp_path / "pos.svg").read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*OUTPUTS[:2], "pos.svg"])
    document = json.loads((tmp_path / f"{PROGRAM}.json").read_text())
    validate(document)
    sel, _, _ = seed(load_table(path))
    assert document["results"]["n_strong"] == sel.sum()
    assert summary_line(result.stdout).startswith(f"Strong reflections: n={sel.sum()} of ")


def test_no_plot(tmp_path, run_inprocess):
    result = run_inprocess(PROGRAM, data_path("sim_small/integrated.refl"), "plot=None")
    assert result.exit_code == 0 and result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS[:2])


def test_console_script_sorry(tmp_path):
    """End to end, in a subprocess: exit 1, one Sorry line, no files."""
    result = run_program(
        PROGRAM, data_path("sim_small/integrated.refl"), "top_fraction=1.5", cwd=tmp_path
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Sorry: ") and "top_fraction" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []


def test_no_arguments_prints_help(tmp_path, run_inprocess):
    result = run_inprocess(PROGRAM)
    assert result.exit_code == 0 and result.stderr == ""
    assert "Where are the strong reflections?" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_relative_paths_and_output_names(tmp_path, run_inprocess):
    (tmp_path / "integrated.refl").write_bytes(data_path("sim_small/integrated.refl").read_bytes())
    result = run_inprocess(
        PROGRAM, "integrated.refl", "json=in_process.json", "plot=in_process.png"
    )
    assert result.exit_code == 0 and result.stderr == ""
    sel, _, _ = seed(load_table("sim_small/integrated.refl"))
    assert result.document["results"]["n_strong"] == sel.sum()
    assert result.document["inputs"]["reflections"]["paths"] == ["integrated.refl"]
    assert result.document["inputs"]["reflections"]["directory"] == str(tmp_path)
    assert (tmp_path / "in_process.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["integrated.refl", "in_process.json", "in_process.png", f"dials.{PROGRAM}.log"]
    )


def test_unindexed_rows_with_one_detector_and_beam_use_it(tmp_path, run_ok):
    """centroid_test_data: one experiment, so id -1 rows are placed on its detector."""
    table = load_table("centroid_test_data/integrated.refl")
    assert (np.array(table["id"]) < 0).sum() > 0
    document, _ = run_ok(
        *args_of(*INTEGRATED[2]),
        "selection.flags=all",
        "intensity.min=None",
    )
    results = document["results"]
    assert results["n_selected"] == results["n_strong"] == table.size()
    assert results["n_without_geometry"] == 0
    assert results["unassigned_rows"].startswith("rows with id -1 use experiment 0")


@needs_dials
@pytest.mark.parametrize("extra", [[], ["rows_on_driver=True"]])
def test_a_d_column_with_overflowing_inverse_squares_is_plotted(run_ok, tmp_path, extra):
    """d values so small that 1/d^2 is infinite (found by fuzzing: a plot axis of
    infinite limits was a traceback, and the JSON's shell edges null)."""
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(data_path("quartz_processed/integrated.refl")))
    d = table["d"]
    d[0], d[1] = 5e-324, 1e-200
    table["d"] = d
    path = tmp_path / "tiny_d.refl"
    table.as_file(str(path))
    (tmp_path / "run").mkdir()
    document, _ = run_ok(path, "selection.flags=all", *extra, cwd=tmp_path / "run")
    shells = document["results"]["resolution_shells"]
    assert shells["n_without_d"] == 2 and None not in shells["inv_d2_edges"]


def test_experiments_with_different_detectors_say_their_positions_share_panels(run_ok, tmp_path):
    """A directory of sim_small's and quartz's integrated files: two different detectors,
    whose pixel positions share one histogram per panel number on the largest panel; the
    JSON, the log and the plot say so (one detector's files say nothing of it)."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    folder = tmp_path / "two_detectors"
    folder.mkdir()
    sizes = []
    for name in ("sim_small", "quartz_processed"):
        for suffix in ("refl", "expt"):
            source = data_path(f"{name}/integrated.{suffix}")
            (folder / f"{name}.{suffix}").write_bytes(source.read_bytes())
        experiments = ExperimentListFactory.from_json_file(
            str(data_path(f"{name}/integrated.expt")), check_format=False
        )
        sizes.append(experiments[0].detector[0].get_image_size())
    assert sizes[0] != sizes[1]  # the case this test is about

    work = tmp_path / "work"
    work.mkdir()
    document, log = run_ok(folder, cwd=work)
    histograms = document["results"]["position_histograms"]
    assert histograms["extent_source"].startswith(
        "largest image size of each panel over 2 different detectors"
    )
    panel = histograms["panels"][0]
    assert [panel["x_edges"][-1], panel["y_edges"][-1]] == [max(s) for s in zip(*sizes)]
    assert "Position histograms: largest image size of each panel over 2 different" in log

    document, log = run_ok(*args_of("sim_small/integrated.expt", "sim_small/integrated.refl"))
    assert document["results"]["position_histograms"]["extent_source"] == (
        "image size of each panel of the experiments' detectors"
    )
    assert "Position histograms" not in log


def test_nothing_integrated_by_both_methods_says_why(tmp_path):
    """ssx_CuNiR/integrated.refl was integrated by summation only: the default
    'integrated' (both bits, as DIALS's get_flags) selects nothing, and the warning says
    how to keep the summation-integrated rows; rule=any keeps exactly those (flex)."""
    from dials.array_family import flex
    from test_programs_common import run_inprocess

    expt, refl = data_path("ssx_CuNiR/integrated.expt"), data_path("ssx_CuNiR/integrated.refl")
    code, _, err = run_inprocess(PROGRAM, [expt, refl, "output.plot=None"], tmp_path)
    assert code == 0, err
    log = (tmp_path / f"dials.{PROGRAM}.log").read_text()
    assert "No reflections selected (selection.flags=integrated, rule=all): rows need" in log
    assert "selection.rule=any keeps rows with any of them" in log
    code, _, err = run_inprocess(
        PROGRAM, [expt, refl, "output.plot=None", "selection.rule=any"], tmp_path
    )
    assert code == 0, err
    table = flex.reflection_table.from_file(str(refl))
    either = table.get_flags(table.flags.integrated, all=False).count(True)
    selected = json.loads((tmp_path / f"{PROGRAM}.json").read_text())["selection"]["n_selected"]
    assert selected == either > 0
    assert "No reflections selected" not in (tmp_path / f"dials.{PROGRAM}.log").read_text()


def test_a_detector_at_no_finite_place_has_no_beam_centre(tmp_path, run_ok):
    """A hand-edited detector origin of NaN or infinity: the beam meets it nowhere, so
    the experiment gets no beam centre (as a beam missing the plane), not NaN in the
    JSON; the rest is computed."""
    document = json.loads(data_path("sim_twoexp/integrated.expt").read_text())
    document["detector"][0]["panels"][0]["origin"] = [float("nan"), 0.0, float("inf")]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    expt = inputs / "nan_origin.expt"
    expt.write_text(json.dumps(document))
    out = tmp_path / "out"
    out.mkdir()
    result, _ = run_ok(str(expt), str(data_path("sim_twoexp/integrated.refl")), cwd=out)
    centres = result["results"]["beam_centres"]
    assert [c["experiment"] for c in centres] == [1]  # experiment 0 uses detector 0
    assert result["results"]["n_strong"] > 0


@pytest.mark.parametrize(
    "edit",
    [
        {"origin": [float("nan"), 0.0, 1.0]},  # no finite geometry
        {"origin": [-217.6, 226.6, 0.0], "fast_axis": [1.0, 0.0, 0.0]},  # through the sample
        {"origin": [-217.6, 226.6, -1e300]},  # the beam meets it, its correction asserts
    ],
    ids=["nan_origin", "through_the_sample", "far_away"],
)
def test_a_parallax_panel_dxtbx_cannot_convert_leaves_its_rows_without_geometry(
    tmp_path, run_ok, run_inprocess, edit
):
    """dxtbx's parallax correction asserts on such panels (for every point): their rows
    have no position (counted), not a traceback; DIALS's per-image analysis runs on the
    rest."""
    document = json.loads(data_path("ssx_CuNiR/indexed.expt").read_text())
    panel = document["detector"][0]["panels"][0]
    panel.update(edit)
    if "fast_axis" in edit:
        panel["slow_axis"] = [0.0, -1.0, 0.0]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    expt = inputs / "edited.expt"
    expt.write_text(json.dumps(document))
    refl = data_path("ssx_CuNiR/indexed.refl")
    out = tmp_path / "out"
    out.mkdir()
    result, _ = run_ok(str(expt), str(refl), "selection.flags=all", cwd=out)
    assert result["results"]["n_without_geometry"] == 360  # every row: one shared detector
    for program in ("per_image_statistics", "refl_stats"):
        (tmp_path / program).mkdir()
        other = run_inprocess(program, expt, refl, cwd=tmp_path / program)
        assert other.exit_code == 0 and not other.stderr, other.stderr
