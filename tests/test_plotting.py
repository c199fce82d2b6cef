"""Plots stay readable on sparse, multi-experiment, multi-panel and 10^6-point data.

Each test calls a plotting function directly with arrays taken from real program runs
on the shipped DIALS files (their JSON, or the tables read with the fast reader) and
asserts on the matplotlib objects it returns; the PNGs are written to ``tmp_path``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import data_path, needs_dials, run_program

from dials_refl_stats.analysis.distribution import Histogram
from dials_refl_stats.analysis.intensity_per_frame import (
    FrameTable,
    per_frame_table,
    plot_positions,
)
from dials_refl_stats.plotting import style
from dials_refl_stats.plotting.detector import (
    EXTENT_FROM_DATA,
    EXTENT_FROM_DETECTOR,
    ShellView,
    positions_view,
    strong_positions_figure,
)
from dials_refl_stats.plotting.frames import (
    Crowd,
    Panel,
    SeriesPoints,
    intensity_per_frame_figure,
)
from dials_refl_stats.plotting.histogram import histogram_bars
from dials_refl_stats.reader import read_reflections

pytestmark = needs_dials


# --- real program runs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(name, program, *args)`` -> the JSON ``results`` of that run (cached)."""
    cache = {}

    def run(name: str, program: str, *args) -> dict:
        if name not in cache:
            workdir = tmp_path_factory.mktemp(name)
            done = run_program(program, *args, "output.plot=None", cwd=workdir)
            assert done.returncode == 0, done.stderr
            path = workdir / f"{program}.json"
            cache[name] = json.loads(path.read_text())["results"]
        return cache[name]

    return run


def twoexp_spot_sizes(runs) -> dict:
    return runs(
        "ssh_twoexp",
        "spot_size_histogram",
        data_path("sim_twoexp/indexed.expt"),
        data_path("sim_twoexp/indexed.refl"),
    )


def intensity_run(runs, name: str, *files, extra=()) -> dict:
    return runs(name, "intensity_per_frame", *map(data_path, files), "output.points=True", *extra)


def histogram_of(record: dict) -> Histogram:
    return Histogram(
        np.array(record["edges"], dtype=float),
        np.array(record["counts"], dtype=np.int64),
        record["below_range"],
        record["above_range"],
    )


def experiment_histograms(results: dict) -> list[tuple[str, Histogram]]:
    """``(label, histogram)`` of every experiment of a spot_size_histogram run."""
    if "per_experiment_histograms" in results:
        return [(h["label"], histogram_of(h)) for h in results["per_experiment_histograms"]]
    return [
        (e["experiment"]["label"], histogram_of(e["histogram"])) for e in results["per_experiment"]
    ]


def frame_table(per_frame: dict) -> FrameTable:
    def floats(key):
        return np.array([np.nan if v is None else v for v in per_frame[key]], dtype=float)

    return FrameTable(
        per_frame["bin_width"],
        np.array(per_frame["frame_first"], dtype=np.int64),
        np.array(per_frame["frame_last"], dtype=np.int64),
        np.array(per_frame["count"], dtype=np.int64),
        floats("mean"),
        floats("median"),
        floats("mean_i_over_sigma"),
        np.array(per_frame["n_with_sigma"], dtype=np.int64),
        np.array(per_frame["n_non_positive"], dtype=np.int64),
    )


def panels_of(results: dict) -> list[Panel]:
    """The program's panels rebuilt from its JSON (tables and points)."""
    panels = []
    for block in results["intensities"]:
        points = block["points"]
        of_series = np.array(points["series"], dtype=np.int64)
        series = []
        for k, (record, meta) in enumerate(zip(block["series"], results["series"])):
            mine = of_series == k
            image_range = tuple(meta["image_range"]) if meta["image_range"] else None
            x = plot_positions(
                np.array(points["frame"])[mine],
                np.array(points["z"])[mine],
                continuous=image_range is not None,
            )
            intensity = np.array(points["intensity"], dtype=float)[mine]
            series.append(
                SeriesPoints(
                    record["label"], x, intensity, frame_table(record["per_frame"]), image_range
                )
            )
        panels.append(Panel(f"{block['value_column']} against image number", series))
    return panels


def longer_scan(series: SeriesPoints, copies: int, keep_every: int) -> SeriesPoints:
    """``series`` repeated ``copies`` times along the scan (as benchmarks/make_big_table.py
    does), keeping every ``keep_every``-th reflection; per-frame table recomputed."""
    span = series.table.n_bins
    first = int(series.table.frame_first[0])
    x = np.concatenate([series.x + k * span for k in range(copies)])[::keep_every]
    intensity = np.tile(series.intensity, copies)[::keep_every]
    frames = np.floor(x + 0.5).astype(np.int64)
    variance = np.abs(intensity) + 1.0
    last = first + copies * span - 1
    table = per_frame_table(frames, intensity, variance, 1, (first, last))
    return SeriesPoints(series.label, x, intensity, table, (first, last))


def texts(figure) -> str:
    """Every text of the figure (axes texts, titles, labels, legends), joined."""
    found = [t.get_text() for t in figure.findobj(match=lambda a: hasattr(a, "get_text"))]
    return "\n".join(t for t in found if t)


# --- spot sizes -----------------------------------------------------------------------


def test_spot_size_axis_shows_the_data_and_json_keeps_every_slot(runs, tmp_path):
    results = twoexp_spot_sizes(runs)
    overall = results["overall"]["histogram"]
    assert overall["n_slots"] == 100 and overall["data_max"] == 1000  # JSON unchanged
    bars = experiment_histograms(results)
    figure = histogram_bars(
        str(tmp_path / "sizes.png"),
        bars,
        title="Spot sizes: /a/very/long/path/to/sim_twoexp/indexed.refl (n=3078)",
        xlabel="Spot size (pixels)",
    )
    (axes,) = figure.axes
    low, high = axes.get_xlim()
    counts = np.array(overall["counts"])
    edges = np.array(overall["edges"])
    at_995 = edges[np.searchsorted(np.cumsum(counts), 0.995 * counts.sum()) + 1]
    assert low == 0 and at_995 <= high < 0.5 * 1000
    words = texts(figure)
    assert "99.5% of the counts" in words and "all 100 slots (0 to 1000)" in words
    labels = [t.get_text() for t in axes.get_legend().get_texts()]
    assert labels == ["expt 0", "expt 1"]
    assert axes.get_title() == "Spot sizes: indexed.refl (n=3078)"
    assert (tmp_path / "sizes.png").stat().st_size > 0


def test_spot_size_empty_selection_says_so(runs, tmp_path):
    results = runs(
        "ssh_empty",
        "spot_size_histogram",
        data_path("sim_twoexp/indexed.refl"),
        "selection.flags=integrated_prf",
    )
    histogram = histogram_of(results["overall"]["histogram"])
    assert histogram.counts.sum() == 0
    figure = histogram_bars(
        str(tmp_path / "empty.png"), [("all selected", histogram)], title="t", xlabel="x"
    )
    (axes,) = figure.axes
    assert "no reflections selected" in texts(figure)
    assert axes.get_xlim() == (0.0, 1000.0)


# --- intensity per frame --------------------------------------------------------------


def test_sparse_scan_is_binned_with_count_panel_and_note(runs, tmp_path):
    (panel,) = panels_of(
        intensity_run(
            runs,
            "ipf_quartz",
            "quartz_processed/integrated.expt",
            "quartz_processed/integrated.refl",
        )
    )
    sparse = longer_scan(panel.series[0], copies=18, keep_every=5)  # ~1800 frames, ~3 each
    per_frame = sparse.table.count.sum() / sparse.table.n_bins
    assert sparse.table.n_bins > 1800 and per_frame < 4
    figure = intensity_per_frame_figure(
        str(tmp_path / "sparse.png"),
        [Panel(panel.title, [sparse])],
        title="Intensity per frame: quartz",
        xlabel="Image number",
    )
    top, middle, bottom = figure.axes[:3]
    assert len(figure.axes) == 3
    assert "plotted in bins of" in texts(figure) and "sparse" in texts(figure)
    (median,) = [line for line in top.get_lines() if line.get_label() == "median per frame bin"]
    step = np.diff(median.get_xdata())
    width = int(round(step[0]))
    assert width > 1 and np.allclose(step, width)
    assert f"per {width} frames" in middle.get_ylabel()
    (stairs,) = middle.patches
    assert stairs.get_data().values.sum() == sparse.table.count.sum()


def test_lines_break_at_empty_frames(runs, tmp_path):
    results = intensity_run(
        runs, "ipf_twoexp", "sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"
    )
    panels = panels_of(results)
    figure = intensity_per_frame_figure(
        str(tmp_path / "twoexp.png"), panels, title="t", xlabel="Image number"
    )
    top, _, bottom = figure.axes[:3]
    table = panels[0].series[0].table
    assert (table.count == 0).any()  # the subset stops at image 12 of 30
    medians = [line for line in top.get_lines() if line.get_label().startswith("median")]
    ydata = np.asarray(medians[0].get_ydata(), dtype=float)
    assert ydata.size == table.n_bins
    assert np.isnan(ydata[table.count == 0]).all() and np.isfinite(ydata[table.count > 0]).all()
    ios = np.asarray(bottom.get_lines()[0].get_ydata(), dtype=float)
    assert np.isnan(ios[table.count == 0]).all()


def test_experiments_have_short_labels_and_the_same_colours_in_every_column(runs, tmp_path):
    results = intensity_run(
        runs,
        "ipf_twoexp_both",
        "sim_twoexp/integrated.expt",
        "sim_twoexp/integrated.refl",
        extra=("intensity.choice=sum+prf",),
    )
    panels = panels_of(results)
    assert len(panels) == 2
    figure = intensity_per_frame_figure(
        str(tmp_path / "both.png"), panels, title="t", xlabel="Image number"
    )
    tops = [figure.axes[0], figure.axes[3]] if len(figure.axes) == 6 else None
    tops = [ax for ax in figure.axes if ax.get_ylabel().startswith("Intensity")]
    assert len(tops) == 2
    colours = []
    for top in tops:
        labels = [t.get_text() for t in top.get_legend().get_texts()]
        assert labels[:2] == ["median: expt 0", "median: expt 1"]
        colours.append([line.get_color() for line in top.get_lines()[:2]])
    assert colours[0] == colours[1] and colours[0][0] != colours[0][1]


def test_many_series_draw_lines_for_a_few_and_points_for_all(runs, tmp_path):
    """10^4 stills without experiments are 10^4 series: the plot overlays lines for the
    first 8 (one legend entry) and draws every point; it does not grow with the series."""
    results = intensity_run(
        runs, "ipf_twoexp", "sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"
    )
    (panel,) = panels_of(results)
    many = [
        SeriesPoints(f"file {k}: {s.label}", s.x, s.intensity, s.table, s.image_range)
        for k in range(20)
        for s in panel.series
    ]
    figure = intensity_per_frame_figure(
        str(tmp_path / "many.png"), [Panel("many", many)], title="t", xlabel="Image number"
    )
    top, middle, bottom = figure.axes[:3]
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert legend[0] == "median per frame bin (first 8 of 40 series)"
    assert len(legend) <= 2  # and the scan image range
    assert len(middle.patches) == 8  # count stairs
    assert len(bottom.get_lines()) == 8 + 3  # I/sigma lines, scan limits, zero line
    notes = " ".join(t.get_text() for t in top.texts)
    assert "40 series, one colour; lines for the first 8, points for all" in notes
    n_points = sum(s.intensity.size for s in many)
    assert f"of {n_points} intensities" in notes


def test_empty_selection_writes_no_reflections_selected(runs, tmp_path):
    results = intensity_run(
        runs, "ipf_empty", "sim_twoexp/indexed.refl", extra=("selection.flags=integrated_prf",)
    )
    panels = panels_of(results)
    assert sum(s.intensity.size for p in panels for s in p.series) == 0
    figure = intensity_per_frame_figure(
        str(tmp_path / "empty.png"), panels, title="t", xlabel="Frame"
    )
    assert "no reflections selected" in texts(figure)
    assert figure.axes[0].get_xlim() != pytest.approx((-0.04, 0.04))


def test_one_image_scan_has_integer_ticks(runs, tmp_path):
    (panel,) = panels_of(
        intensity_run(
            runs,
            "ipf_quartz",
            "quartz_processed/integrated.expt",
            "quartz_processed/integrated.refl",
        )
    )
    series = panel.series[0]
    frames = np.floor(series.x + 0.5).astype(np.int64)
    image = int(np.bincount(frames - frames.min()).argmax() + frames.min())
    mine = frames == image
    table = per_frame_table(
        frames[mine], series.intensity[mine], np.ones(mine.sum()), 1, (image, image)
    )
    one = SeriesPoints(series.label, series.x[mine], series.intensity[mine], table, (image, image))
    figure = intensity_per_frame_figure(
        str(tmp_path / "one.png"), [Panel(panel.title, [one])], title="t", xlabel="Image number"
    )
    for axes in figure.axes[:3]:
        low, high = axes.get_xlim()
        assert high - low >= 4
        ticks = [t for t in axes.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert image in ticks


def test_title_uses_basenames_and_wraps():
    paths = [f"/work/data/run_{k}/integrated_{k}.refl" for k in range(12)]
    title = style.display_title(f"Intensity per frame: {', '.join(paths)}", width=60)
    assert "/" not in title and "integrated_0.refl" in title
    assert all(len(line) <= 60 for line in title.splitlines())
    assert len(title.splitlines()) <= 3
    assert style.display_title("I/sigma >= 20: ./a/b.refl") == "I/sigma >= 20: b.refl"
    assert style.short_label("file 1: experiment 0 (f2db43fc-b225-f9a0-4fdc-62b699634b40)") == (
        "file 1: expt 0"
    )
    assert style.short_label("unassigned (id -1)") == "unassigned (id -1)"


def test_million_intensities_become_a_density(runs, tmp_path):
    from matplotlib.collections import PathCollection, QuadMesh

    (panel,) = panels_of(
        intensity_run(
            runs, "ipf_twoexp", "sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"
        )
    )
    series = [longer_scan(s, copies=145, keep_every=1) for s in panel.series]
    assert sum(s.intensity.size for s in series) > 10**6
    figure = intensity_per_frame_figure(
        str(tmp_path / "million.png"), [Panel(panel.title, series)], title="t", xlabel="Image"
    )
    top = figure.axes[0]
    (mesh,) = [c for c in top.collections if isinstance(c, QuadMesh)]
    assert mesh.norm.__class__.__name__ == "LogNorm"
    assert not [c for c in top.collections if isinstance(c, PathCollection)]
    assert "density" in texts(figure)


# --- positions on the detector --------------------------------------------------------


def selected_positions(relative: str, flags: int | None = None):
    """xy, panel, id and intensity of the rows with all bits of ``flags``."""
    columns = ["xyzobs.px.value", "flags", "id", "panel", "intensity.sum.value"]
    c = read_reflections(str(data_path(relative)), columns=columns).columns
    keep = np.ones(c["flags"].size, bool) if flags is None else (c["flags"] & flags) == flags
    return (
        c["xyzobs.px.value"][keep, :2],
        c["panel"][keep].astype(np.int64),
        c["id"][keep].astype(np.int64),
        c["intensity.sum.value"][keep],
    )


def shells_of(results: dict) -> ShellView | None:
    s = results["resolution_shells"]
    if s is None:
        return None
    return ShellView(
        np.array(s["inv_d2_edges"]), np.array(s["n_all"]), np.array(s["n_strong"]), "geometry"
    )


def twoexp_positions(runs) -> dict:
    return runs(
        "srp_twoexp",
        "strong_reflection_positions",
        data_path("sim_twoexp/integrated.expt"),
        data_path("sim_twoexp/integrated.refl"),
    )


def test_positions_coloured_by_experiment_with_their_beam_centres(runs, tmp_path):
    results = twoexp_positions(runs)
    xy, panel, ids, intensity = selected_positions("sim_twoexp/integrated.refl", 768)
    strong = intensity >= results["criteria"]["intensity_min"]
    assert int(strong.sum()) == results["n_strong"] and len(results["beam_centres"]) == 2
    view = positions_view(
        xy, strong, {0: (1000, 1000)}, results["beam_centres"], panel=panel, experiment=ids
    )
    figure = strong_positions_figure(
        str(tmp_path / "twoexp.png"),
        view,
        shells_of(results),
        title="Strong reflections: /x/y/integrated.refl",
        strong_label="I >= 5000",
    )
    axes = figure.axes[0]
    handles, labels = axes.get_legend_handles_labels()
    colour = {label: tuple(h.get_facecolor()[0][:3]) for h, label in zip(handles, labels)}
    for k in (0, 1):
        (strong_label,) = [label for label in labels if label.startswith(f"strong expt {k} (")]
        beam = f"beam centre expt {k}"
        assert beam in labels
        assert colour[strong_label] == pytest.approx(colour[beam])
    assert colour["beam centre expt 0"] != pytest.approx(colour["beam centre expt 1"])
    assert not any("-" in label and len(label) > 40 for label in labels)  # no UUIDs
    assert axes.get_xlim()[1] - axes.get_xlim()[0] >= 1000
    assert EXTENT_FROM_DETECTOR in texts(figure)


def pilatus_modules(xy: np.ndarray):
    """Real Pilatus 6M positions as its 60 modules (487 x 195 pixels, gaps 7 and 17),
    the panels DIALS uses for a multi-panel Pilatus: module-local xy and module number."""
    column = (xy[:, 0] // (487 + 7)).astype(np.int64)
    row = (xy[:, 1] // (195 + 17)).astype(np.int64)
    local = xy - np.stack([column * (487 + 7), row * (195 + 17)], axis=1)
    keep = (local[:, 0] < 487) & (local[:, 1] < 195) & (column < 5) & (row < 12)
    return keep, local[keep], (row * 5 + column)[keep]


@pytest.mark.parametrize("from_data", [True, False])
def test_multi_panel_detector_drawn_as_small_multiples(tmp_path, from_data):
    xy, _, _, intensity = selected_positions("centroid_test_data/integrated.refl")
    keep, local, panel = pilatus_modules(xy)
    if from_data:  # as the program does without experiments: largest x and y per panel
        sizes = {
            p: (float(local[panel == p, 0].max()), float(local[panel == p, 1].max()))
            for p in np.unique(panel)
        }
    else:
        sizes = {p: (487, 195) for p in range(60)}
    strong = intensity[keep] >= 5000
    view = positions_view(local, strong, sizes, [], panel=panel, extent_from_data=from_data)
    figure = strong_positions_figure(
        str(tmp_path / "modules.png"), view, None, title="t", strong_label="I >= 5000"
    )
    grid = [ax for ax in figure.axes if ax.get_title() != "Strong fraction per resolution shell"]
    drawn = [ax for ax in grid if ax.axison]
    assert len(drawn) == len(sizes)
    for axes, (number, (width, height)) in zip(drawn, sorted(sizes.items())):
        assert axes.get_xlim() == (0, width) and axes.get_ylim() == (height, 0)
        label = axes.texts[0].get_text()
        n_all = int((panel == number).sum())
        assert label == f"{number}: {int(strong[panel == number].sum())}/{n_all}"
    words = texts(figure)
    assert (EXTENT_FROM_DATA in words) == from_data
    assert (EXTENT_FROM_DETECTOR in words) == (not from_data)
    assert "overlaid" not in words


def test_marker_size_fits_the_number_of_points(runs, tmp_path):
    results = twoexp_positions(runs)
    xy, panel, ids, intensity = selected_positions("sim_twoexp/integrated.refl", 768)
    few = np.argsort(intensity)[-21:]  # the 21 brightest
    view = positions_view(
        xy[few], np.ones(21, bool), {0: (1000, 1000)}, results["beam_centres"], panel=panel[few]
    )
    figure = strong_positions_figure(
        str(tmp_path / "few.png"), view, None, title="t", strong_label="brightest 21"
    )
    sizes = [c.get_sizes()[0] for c in figure.axes[0].collections if len(c.get_offsets()) == 21]
    assert sizes and min(sizes) >= 16
    assert style.point_style(21)["s"] > 4 * style.point_style(20_000)["s"]


def test_million_positions_become_density_images(runs, tmp_path):
    from matplotlib.collections import PathCollection

    results = twoexp_positions(runs)
    xy, panel, ids, intensity = selected_positions("sim_twoexp/integrated.refl", 768)
    copies = 10**6 // len(xy) + 1
    big_xy = np.tile(xy, (copies, 1))
    big_strong = np.tile(intensity >= 5000, copies)
    big_ids = np.tile(ids, copies)
    assert len(big_xy) > 10**6 and big_strong.sum() > style.DENSITY_THRESHOLD
    view = positions_view(
        big_xy,
        big_strong,
        {0: (1000, 1000)},
        results["beam_centres"],
        panel=np.tile(panel, copies),
        experiment=big_ids,
    )
    figure = strong_positions_figure(
        str(tmp_path / "million.png"), view, None, title="t", strong_label="I >= 5000"
    )
    axes = figure.axes[0]
    every, strong = axes.images  # all selected (grey), strong (red): no markers
    assert every.norm.__class__.__name__ == "LogNorm"
    assert int(every.get_array().sum()) == len(big_xy)
    assert int(strong.get_array().sum()) == int(big_strong.sum())
    offsets = [len(c.get_offsets()) for c in axes.collections if isinstance(c, PathCollection)]
    assert max(offsets) <= 2  # only the two beam centres are markers


def test_density_counts_match_numpy_histogram2d():
    xy, *_ = selected_positions("sim_twoexp/integrated.refl", 768)
    counts = style.density_counts(xy[:, 0], xy[:, 1], (0, 1000), (0, 1000), (50, 40))
    expected, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=(50, 40), range=((0, 1000), (0, 1000)))
    np.testing.assert_array_equal(counts, expected.T)


def test_lab_frame_colours_experiments_and_draws_detector_outlines(runs, tmp_path):
    from dxtbx.model.experiment_list import ExperimentList

    from dials_refl_stats import geometry

    results = twoexp_positions(runs)
    experiments = ExperimentList.from_file(
        str(data_path("sim_twoexp/integrated.expt")), check_format=False
    )
    path = str(data_path("sim_twoexp/integrated.refl"))
    identifiers = read_reflections(path, columns=["id"]).identifiers
    xy, panel, ids, intensity = selected_positions("sim_twoexp/integrated.refl", 768)
    experiment = geometry.experiment_indices(experiments, identifiers, ids, path)
    lab = geometry.map_positions(experiments, experiment, panel, xy).lab
    outlines = geometry.lab_outlines(experiments)
    view = positions_view(
        xy,
        intensity >= 5000,
        {0: (1000, 1000)},
        results["beam_centres"],
        lab=lab,
        lab_outlines=outlines,
        experiment=experiment,
    )
    figure = strong_positions_figure(
        str(tmp_path / "lab.png"), view, None, title="t", strong_label="I >= 5000"
    )
    axes = figure.axes[0]
    assert axes.get_xlabel() == "lab x (mm)"
    low, high = axes.get_xlim()
    corners = np.concatenate(outlines)[:, 0]
    assert low <= corners.min() and high >= corners.max()
    labels = axes.get_legend_handles_labels()[1]
    assert "beam centre expt 0" in labels and "beam centre expt 1" in labels
    assert any(label.startswith("strong expt 1 (") for label in labels)


def test_coarse_slots_are_pointed_out(runs, tmp_path):
    results = runs("ssh_ssx", "spot_size_histogram", data_path("ssx_CuNiR/indexed.refl"))
    bars = experiment_histograms(results)
    assert len(bars) == 5
    figure = histogram_bars(str(tmp_path / "ssx.png"), bars, title="t", xlabel="x")
    (axes,) = figure.axes
    width = bars[0][1].slot_width
    assert axes.get_xlim()[1] <= 5 * width
    assert "a smaller data_max gives finer slots" in texts(figure)
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [f"expt {k}" for k in range(5)]


def summarised(series) -> Crowd:
    """The :class:`Crowd` of ``series``, from their objects (the program makes it from
    its columns)."""
    tables = [s.table for s in series]
    filled = [t for t in tables if t.n_bins]
    counted = [t for t in tables if t.count.sum()]
    return Crowd(
        n_series=len(series),
        x=np.concatenate([s.x for s in series]),
        intensity=np.concatenate([s.intensity for s in series]),
        frame_first=min(int(t.frame_first[0]) for t in filled) if filled else None,
        frame_last=max(int(t.frame_last[-1]) for t in filled) if filled else None,
        image_ranges=frozenset(s.image_range for s in series if s.image_range),
        max_n_bins=max(t.n_bins for t in tables),
        max_frames=max(t.n_bins * t.bin_width for t in tables),
        count_total=int(sum(t.count.sum() for t in counted)),
        bins_counted=sum(t.n_bins for t in counted),
    )


@pytest.mark.parametrize("points_per_series,threshold", [(6, None), (40, None), (40, 500)])
def test_many_series_summarised_draw_the_same_figure(
    tmp_path, monkeypatch, points_per_series, threshold
):
    """Past a few series the program passes the first ones and a summary of the rest
    (10^5 stills files: no object per series): the same PNG, byte for byte, sparse or
    not, as points or as a density."""
    from dials_refl_stats.plotting import frames as frames_plot

    if threshold:
        monkeypatch.setattr(frames_plot, "DENSITY_THRESHOLD", threshold)
    rng = np.random.default_rng(points_per_series)
    series = []
    for k in range(30):
        n = points_per_series
        scan = (k + 1, k + 25) if k % 3 == 0 else None
        frames = rng.integers(k, k + 30, n)
        intensity = rng.lognormal(3, 1.5, n) - 5
        table = per_frame_table(frames, intensity, rng.uniform(-1, 50, n), 2, scan)
        x = plot_positions(frames, frames - 1 + rng.random(n), k % 2 == 0)
        series.append(SeriesPoints(f"file {k}: experiment 0", x, intensity, table, scan))
    series.append(
        SeriesPoints(
            "file 30: stills",
            np.zeros(0),
            np.zeros(0),
            per_frame_table(np.zeros(0, int), np.zeros(0), np.zeros(0), 2),
            None,
        )
    )
    shown = frames_plot.MAX_LINED_SERIES
    whole = [Panel("I against frame", series)]
    parts = [Panel("I against frame", series[:shown], crowd=summarised(series[shown:]))]
    figures = {
        name: intensity_per_frame_figure(
            str(tmp_path / f"{name}.png"), panels, title="many", xlabel="Image number"
        )
        for name, panels in (("whole", whole), ("parts", parts))
    }
    assert (tmp_path / "whole.png").read_bytes() == (tmp_path / "parts.png").read_bytes()
    assert "31 series, one colour" in texts(figures["parts"])
