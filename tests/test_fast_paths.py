"""The faster paths give exactly what the slower ones gave (byte for byte).

* detector geometry: numpy's millimetres, lab coordinates and d of pixel positions on
  ``SimplePxMmStrategy`` panels against dxtbx's own ``Panel.pixel_to_millimeter`` and
  ``get_lab_coord`` (flex calls), on every shipped experiment list with its table (a
  parallax-corrected detector included, which dxtbx converts itself) and on a 60-panel
  hierarchical detector; pair by pair and with per-row gathers;
* per-bin medians by partitioning each bin against one sort by (bin, value);
* distinct table ids by counting against ``np.unique``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TESTS_DATA, data_path, needs_dials

from dials_refl_stats import geometry
from dials_refl_stats.analysis.grouping import order_by_group_then_value
from dials_refl_stats.analysis.intensity_per_frame import bin_medians, per_frame_table
from dials_refl_stats.experiment_groups import distinct_ids
from dials_refl_stats.plotting.frames import wide_bin_medians

PAIRS = [
    ("sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"),
    ("sim_twoexp/indexed.expt", "sim_twoexp/indexed.refl"),
    ("ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"),  # parallax correction
    ("ssx_CuNiR/indexed.expt", "ssx_CuNiR/indexed.refl"),
    ("centroid_test_data/indexed.expt", "centroid_test_data/indexed.refl"),
    ("quartz_processed/integrated.expt", "quartz_processed/integrated.refl"),
    ("sim_small/integrated.expt", "sim_small/integrated.refl"),
]


def dxtbx_positions(experiments, experiment_of_row, panel, xy):
    """mm, lab and d as dxtbx computes them: one flex call per (experiment, panel)."""
    from dials.array_family import flex

    n = len(xy)
    mm, lab, d = np.full((n, 2), np.nan), np.full((n, 3), np.nan), np.full(n, np.nan)
    for e in np.unique(experiment_of_row[experiment_of_row >= 0]):
        experiment = experiments[int(e)]
        for p in np.unique(panel[experiment_of_row == e]):
            rows = np.flatnonzero((experiment_of_row == e) & (panel == p))
            points = flex.vec2_double(flex.double(xy[rows, 0]), flex.double(xy[rows, 1]))
            mm_points = experiment.detector[int(p)].pixel_to_millimeter(points)
            lab_points = experiment.detector[int(p)].get_lab_coord(mm_points)
            mm[rows] = np.array(mm_points).reshape(-1, 2)
            lab[rows] = np.array(lab_points).reshape(-1, 3)
            d[rows] = geometry.d_spacing(lab[rows], experiment.beam.get_s0())
    return mm, lab, d


def table_positions(expt, refl):
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    experiments = ExperimentListFactory.from_json_file(str(expt), check_format=False)
    table = flex.reflection_table.from_file(str(refl))
    ids = np.array(table["id"], dtype=np.int64)
    identifiers = dict(table.experiment_identifiers())
    experiment = geometry.experiment_indices(experiments, identifiers, ids, str(refl))
    xy = table["xyzobs.px.value"].as_numpy_array()[:, :2].copy()
    return experiments, experiment, np.array(table["panel"], dtype=np.int64), xy


def assert_identical(positions, reference) -> None:
    for name, expected in zip(("mm", "lab", "d"), reference):
        assert getattr(positions, name).tobytes() == expected.tobytes(), name
    assert positions.n_without_geometry == int(np.isnan(reference[2]).sum())


@needs_dials
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0])
@pytest.mark.parametrize("broadcast", [1, 0], ids=["one pair broadcast", "gathered"])
@pytest.mark.parametrize("block", [1 << 15, 1000], ids=["one block", "blocks"])
def test_positions_are_dxtbx_positions(pair, broadcast, block, monkeypatch):
    from dials_refl_stats.pipeline.experiment_models import read_experiments

    expt, refl = (data_path(p) for p in pair)
    experiments, experiment, panel, xy = table_positions(expt, refl)
    reference = dxtbx_positions(experiments, experiment, panel, xy)
    assert np.isfinite(reference[2][experiment >= 0]).all()
    monkeypatch.setattr(geometry, "PAIRS_BROADCAST", broadcast)
    monkeypatch.setattr(geometry, "BLOCK_ROWS", block)
    for models in (experiments, read_experiments(str(expt))):
        assert_identical(geometry.map_positions(models, experiment, panel, xy), reference)
    # rows without an experiment, and a subset of rows, stay NaN / are the same
    some = experiment.copy()
    some[::3] = -1
    positions = geometry.map_positions(experiments, some, panel, xy)
    assert np.isnan(positions.d[::3]).all()
    assert positions.d[1::3].tobytes() == reference[2][1::3].tobytes()


@needs_dials
def test_positions_on_a_hierarchical_detector_are_dxtbx_positions(tmp_path):
    from test_strong_reflection_positions import split_into_pilatus_modules

    from dials_refl_stats.pipeline.experiment_models import read_experiments

    expt, refl, _kept, _n = split_into_pilatus_modules(tmp_path)
    experiments, experiment, panel, xy = table_positions(expt, refl)
    assert len(np.unique(panel)) > geometry.PAIRS_BROADCAST  # the gathered path
    reference = dxtbx_positions(experiments, experiment, panel, xy)
    assert_identical(geometry.map_positions(experiments, experiment, panel, xy), reference)
    light = read_experiments(str(expt))
    assert_identical(geometry.map_positions(light, experiment, panel, xy), reference)


@needs_dials
def test_simple_panel_arithmetic_is_dxtbx_arithmetic():
    """Random positions on every simple panel: numpy's mm and lab are dxtbx's doubles."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    rng = np.random.default_rng(7)
    checked = 0
    for path in sorted(TESTS_DATA.glob("*/*.expt")):
        experiments = ExperimentListFactory.from_json_file(str(path), check_format=False)
        for detector in experiments.detectors():
            for p in detector:
                if p.get_px_mm_strategy().name() != "SimplePxMmStrategy":
                    continue
                xy = rng.uniform(-50, 3000, size=(200, 2))
                frame = [*p.get_pixel_size(), *p.get_d_matrix()]
                mm, lab = geometry.simple_panel_positions(xy, frame)
                for k in range(len(xy)):
                    point = (float(xy[k, 0]), float(xy[k, 1]))
                    assert tuple(mm[k]) == p.pixel_to_millimeter(point)
                    assert tuple(lab[k]) == p.get_pixel_lab_coord(point)
                checked += 1
    assert checked >= 5


def test_a_missing_panel_is_named_as_before():
    class Panel:
        def get_px_mm_strategy(self):
            raise AssertionError("not reached")

    class Experiment:
        detector = [Panel()]
        beam = object()

    with pytest.raises(geometry.GeometryError, match="panel 3, but the detector of experiment 1"):
        geometry.map_positions(
            [Experiment(), Experiment()],
            np.array([0, 1, 1, 1]),
            np.array([0, 5, 3, 0]),
            np.zeros((4, 2)),
            path="x.refl",
        )


# --- medians per bin, distinct ids ----------------------------------------------------------


def sorted_medians(bins, values, count):
    """The former rule: one sort by (bin, value), middle values of each run."""
    ordered = values[order_by_group_then_value(bins, values)]
    starts = np.concatenate(([0], np.cumsum(count)[:-1])) if count.size else count
    filled = count > 0
    median = np.full(count.size, np.nan)
    low = starts[filled] + (count[filled] - 1) // 2
    high = starts[filled] + count[filled] // 2
    median[filled] = 0.5 * (ordered[low] + ordered[high])
    return median


@pytest.mark.parametrize("n,n_bins", [(0, 0), (1, 1), (10, 3), (5000, 4), (20000, 3000)])
@pytest.mark.parametrize("kind", ["spread", "ties", "nan", "inf"])
def test_bin_medians_are_the_sorted_medians(n, n_bins, kind):
    rng = np.random.default_rng(n + n_bins)
    bins = rng.integers(0, max(n_bins, 1), n)
    values = rng.normal(100.0, 80.0, n)
    if kind == "ties":
        values = np.round(values / 25.0)
    elif kind == "nan" and n:
        values[rng.integers(0, n, max(1, n // 7))] = np.nan
    elif kind == "inf" and n:
        values[rng.integers(0, n, max(1, n // 7))] = -np.inf
    count = np.bincount(bins, minlength=n_bins)
    assert bin_medians(bins, values, count).tobytes() == (
        sorted_medians(bins, values, count).tobytes()
    )


def test_wide_bin_medians_are_the_wide_tables_medians():
    rng = np.random.default_rng(3)
    frames = rng.integers(5, 400, 30000)
    intensity = rng.lognormal(5.0, 2.0, frames.size)
    for width in (1, 4, 9):
        table = per_frame_table(
            frames, intensity, np.zeros(frames.size), bin_width=width, frame_range=(5, 399)
        )
        wide = wide_bin_medians(frames, intensity, 5, width, table.n_bins)
        assert wide.tobytes() == table.median.tobytes()
        fewer = wide_bin_medians(frames, intensity, 5, width, table.n_bins // 2)
        assert fewer.tobytes() == table.median[: table.n_bins // 2].tobytes()


@pytest.mark.parametrize(
    "ids",
    [
        np.array([], dtype=np.int32),
        np.array([-1, -1, 0, 3, 3, 1], dtype=np.int32),
        np.arange(-1, 5000, dtype=np.int64)[::-1],
        np.array([7, 10**9, -5], dtype=np.int64),  # too wide to count
        np.array([2.0, 1.0, 2.0]),
    ],
    ids=["empty", "table ids", "many", "wide", "floats"],
)
def test_distinct_ids_are_unique_ids(ids):
    values, inverse = distinct_ids(ids)
    expected_values, expected_inverse = np.unique(ids, return_inverse=True)
    assert np.array_equal(values, expected_values)
    assert np.array_equal(inverse, expected_inverse)
    assert inverse.dtype == np.int64


@pytest.mark.parametrize("seed", range(12))
def test_mask_segment_counts_equal_counting_each_mask(seed):
    """The mask counter (and-ed bytes summed as 64-bit words per mask range, lanes for
    int32 masks, long masks in pieces) against counting each mask's bytes plainly: int32
    masks (stride 4) and uint8 ones, units 1-16, masks of 1 to 2000 pixels, the last one
    ending at the very end of the window."""
    from dials_refl_stats.reader.mask_counts import segment_counts

    rng = np.random.default_rng(1000 + seed)
    width = int(rng.choice([1, 4]))
    unit = int(rng.choice([1, 2, 4, 8, 16]))
    n_rows = int(rng.integers(1, 60))
    npix = rng.choice([1, 2, 3, 7, 64, 255, 2000], n_rows)
    starts, position = [], 0
    for n in npix:
        position += 29 + int(rng.integers(0, 9)) + 4 * int(n)  # header, data
        starts.append(position)
        position += width * int(n) + (4 * int(n) if rng.random() < 0.9 else 0)
    length = position + (-position) % 8 if rng.random() < 0.5 else position
    hit = np.zeros(length + 64, dtype=np.uint8)
    hit[:length] = np.where(rng.random(length) < 0.4, unit, 0)
    if length % 8:  # zero up to the next multiple of 8, as the callers leave it
        hit[length : length + 8 - length % 8] = 0
    s, n = np.array(starts, dtype=np.int64), npix.astype(np.int64)
    expected = [int(hit[a : a + width * k : width].sum()) // unit for a, k in zip(s, n)]
    assert segment_counts(hit.copy(), length, s, n, width, unit).tolist() == expected
