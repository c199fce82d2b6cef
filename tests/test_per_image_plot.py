"""The dials.per_image_statistics figure on real data: one line per experiment, binned
series labelled and centred, the d_min note, unit-cell histograms of constant angles.

Each test runs the program in this process on shipped DIALS files and inspects the
figure it drew (captured from the plotting module's ``save``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import data_path, needs_dials
from test_programs_common import run_inprocess

from dials_refl_stats.plotting import per_image

pytestmark = needs_dials

PROGRAM = "per_image_statistics"


#: Shipped inputs (experiments, reflections).
TWO_SWEEPS = ("sim_twoexp/indexed.expt", "sim_twoexp/indexed.refl")
STILLS = ("ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl")
LONG_SCAN = ("quartz_processed/indexed.expt", "quartz_processed/indexed.refl")
STRONG_SPOTS = ("sim_small/imported.expt", "sim_small/strong.refl")


def data_paths(files: tuple[str, ...]) -> list:
    return [data_path(f) for f in files]


def run_and_capture(tmp_path, monkeypatch, *args) -> tuple[dict, object]:
    """Run the program (PNG on) and return its JSON document and the figure it saved."""
    figures = []
    original_save = per_image.save

    def capture(figure, path, format_from):
        figures.append(figure)
        original_save(figure, path, format_from)

    monkeypatch.setattr(per_image, "save", capture)
    code, _, err = run_inprocess(PROGRAM, [*map(str, args)], tmp_path)
    assert code == 0, err
    assert (tmp_path / f"{PROGRAM}.png").stat().st_size > 0
    assert len(figures) == 1
    return json.loads((tmp_path / f"{PROGRAM}.json").read_text()), figures[0]


def panel(figure, ylabel_start: str):
    """The axes whose y label starts with ``ylabel_start``."""
    (found,) = [ax for ax in figure.axes if ax.get_ylabel().startswith(ylabel_start)]
    return found


def data_lines(ax) -> list:
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def texts(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


@pytest.fixture
def two_experiments(tmp_path, monkeypatch):
    return run_and_capture(tmp_path, monkeypatch, *data_paths(TWO_SWEEPS))


def test_two_experiments_draw_one_line_per_experiment_that_never_goes_back(two_experiments):
    document, figure = two_experiments
    table = document["results"]["per_image"]
    experiments = sorted(set(table["experiment"]))
    assert experiments == [-1, 0, 1]
    spots = panel(figure, "Spots per image")
    # strong, indexed and "to 4 Å" for each of the three experiments
    assert len(data_lines(spots)) == 3 * len(experiments)
    for ax in (spots, panel(figure, "Indexed (%)"), panel(figure, "d_min")):
        for line in data_lines(ax):
            x = np.asarray(line.get_xdata(), dtype=float)
            assert np.all(np.diff(x) > 0), ax.get_ylabel()
    indexed = data_lines(panel(figure, "Indexed (%)"))
    assert len(indexed) == len(experiments)
    assert len({line.get_color() for line in indexed}) == len(experiments)


def test_two_experiments_legend_names_them_and_unassigned_rows_are_frames(two_experiments):
    _, figure = two_experiments
    legend = panel(figure, "Indexed (%)").get_legend()
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == ["unassigned (id -1), frame = floor(z)", "expt 0", "expt 1"]
    assert "floor(z)" in panel(figure, "Spots per image").get_xlabel()


def test_two_experiments_heatmap_is_by_table_row_with_separators(two_experiments):
    document, figure = two_experiments
    table = document["results"]["per_image"]
    heatmap = panel(figure, "I/sigma")
    assert heatmap.get_xlabel().startswith("Table row")
    (mesh,) = heatmap.collections
    assert mesh.get_coordinates().shape[1] - 1 == len(table["image"])  # a column per row
    separators = [line.get_xdata()[0] for line in heatmap.get_lines()]
    starts = [table["experiment"].index(e) for e in (0, 1)]
    assert separators == [start - 0.5 for start in starts]
    assert texts(heatmap) == ["unassigned", "expt 0", "expt 1"]


def test_stills_stay_one_series_in_input_order(tmp_path, monkeypatch):
    document, figure = run_and_capture(tmp_path, monkeypatch, *data_paths(STILLS))
    assert set(document["results"]["per_image"]["numbering"]) == {"still"}
    spots = panel(figure, "Spots per image")
    assert [line.get_label() for line in data_lines(spots)] == ["strong", "indexed", "to 4 Å"]
    for line in data_lines(spots):
        assert line.get_xdata().tolist() == document["results"]["per_image"]["image"]
    assert panel(figure, "I/sigma").get_xlabel() == "Image"


def test_binned_series_say_per_bin_and_sit_at_the_bin_centres(tmp_path, monkeypatch):
    document, figure = run_and_capture(
        tmp_path, monkeypatch, *data_paths(LONG_SCAN), "output.max_images=10"
    )
    results = document["results"]
    assert results["binned"]["images_per_bin"] == 10
    table = results["per_image"]
    centres = (np.asarray(table["image"]) + np.asarray(table["image_last"])) / 2
    spots = panel(figure, "Spots per bin")
    assert spots.get_ylabel() == "Spots per bin (10 images)"
    for ax in (spots, panel(figure, "Indexed (%)")):
        for line in data_lines(ax):
            assert np.asarray(line.get_xdata()).tolist() == centres.tolist()
    (mesh,) = panel(figure, "I/sigma").collections
    x_edges = mesh.get_coordinates()[0, :, 0]
    assert x_edges[0] == table["image"][0] - 0.5
    assert x_edges[-1] == table["image_last"][-1] + 0.5
    strong = data_lines(spots)[0].get_ydata()
    assert strong.tolist() == table["n_strong"]  # sums per bin, as in the JSON


def test_d_min_note_when_dials_gave_no_estimate(tmp_path, monkeypatch):
    document, figure = run_and_capture(
        tmp_path, monkeypatch, *data_paths(STRONG_SPOTS), "selection.flags=integrated_prf"
    )
    assert set(document["results"]["per_image"]["estimated_d_min"]) == {-1.0}
    assert "DIALS gave no d_min estimate" in texts(panel(figure, "d_min"))


def test_d_min_note_asks_for_experiments_only_without_them(tmp_path, monkeypatch):
    _, figure = run_and_capture(tmp_path, monkeypatch, data_path("sim_twoexp/indexed.refl"))
    assert "no d_min estimates (give the experiments, .expt)" in texts(panel(figure, "d_min"))
    assert panel(figure, "Spots per image").get_xlabel() == "Frame = floor(z), 0-based"


def test_d_min_note_when_the_analysis_was_switched_off(tmp_path, monkeypatch):
    _, figure = run_and_capture(
        tmp_path, monkeypatch, *data_paths(STRONG_SPOTS), "resolution_analysis=False"
    )
    assert per_image.NOT_RUN_NOTE in texts(panel(figure, "d_min"))


def test_constant_cell_angles_are_one_bin_holding_every_crystal(tmp_path, monkeypatch):
    document, figure = run_and_capture(tmp_path, monkeypatch, *data_paths(STILLS))
    cells = document["results"]["stills"]["unit_cells"]
    n = cells["n_crystals"]
    for name in ("alpha", "beta", "gamma"):
        assert cells[name]["counts"] == [n]
        low, high = cells[name]["edges"]
        assert low < 90.0 < high
    assert sum(cells["a"]["counts"]) == n and len(cells["a"]["counts"]) > 1
    angle_axes = [ax for ax in figure.axes if ax.get_title() == "alpha (°)"]
    (patch,) = angle_axes[0].patches
    assert patch.get_data().values.tolist() == [n]


def test_repeated_frames_of_files_without_experiments_are_drawn_by_table_row(tmp_path, monkeypatch):
    """The stills of two files given without experiments: frames (floor(z)) repeat from
    one file to the next, so every panel's x is the table row, and the one series is
    labelled as rows without an experiment (not as unassigned id -1 rows)."""
    refls = data_paths(("ssx_CuNiR/strong_5.refl", "ssx_CuNiR/indexed.refl"))
    document, figure = run_and_capture(tmp_path, monkeypatch, *refls)
    table = document["results"]["per_image"]
    assert len(set(table["image"])) < len(table["image"])
    rows = list(range(len(table["image"])))
    for ylabel in ("Spots per image", "Indexed (%)"):
        ax = panel(figure, ylabel)
        assert ax.get_xlabel() == per_image.REPEATED_LABEL
        for line in data_lines(ax):
            assert line.get_xdata().tolist() == rows
    assert panel(figure, "I/sigma").get_xlabel() == per_image.REPEATED_LABEL
    (series,) = per_image.split_series(table)
    assert series.label == "no experiment, frame = floor(z)"


def reference_split_series(table: dict) -> list[tuple[str, list[int]]]:
    """The per-row grouping the vectorised one replaced (verbatim, labels for id -1)."""
    experiments = np.asarray(table.get("experiment", []), dtype=np.int64)
    numbering = np.asarray(table.get("numbering", []), dtype=object)
    keys = [
        per_image.STILL if n == per_image.STILL else int(e) for e, n in zip(experiments, numbering)
    ]
    groups = list(dict.fromkeys(keys))
    result = []
    for key in groups:
        rows = np.flatnonzero([k == key for k in keys])
        label = (
            "stills" if key == per_image.STILL else per_image.series_label(key, numbering[rows[0]])
        )
        result.append((label, rows.tolist()))
    return result


@pytest.mark.parametrize("seed", range(20))
def test_series_split_as_row_by_row(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    numbering = rng.choice(["image_number", "still", "z_floor"], n)
    experiment = np.where(numbering == "z_floor", -1, rng.integers(0, 4, n))
    table = {"experiment": experiment.tolist(), "numbering": numbering.tolist()}
    mine = per_image.split_series(table)
    assert [(s.label, s.rows.tolist()) for s in mine] == reference_split_series(table)
    table["id"] = [-1] * n  # every row without an experiment unassigned: the same labels
    assert [(s.label, s.rows.tolist()) for s in per_image.split_series(table)] == [
        (label, rows) for label, rows in reference_split_series(table)
    ]


def test_a_few_sweeps_without_experiments_are_one_line_each(tmp_path, monkeypatch):
    """sim_twoexp's table alone: its ids (two sweeps and the unassigned rows) are three
    series drawn against their frames, each line going forwards, named by id."""
    document, figure = run_and_capture(tmp_path, monkeypatch, data_path("sim_twoexp/indexed.refl"))
    table = document["results"]["per_image"]
    assert set(table["experiment"]) == {-1} and set(table["id"]) == {-1, 0, 1}
    indexed = panel(figure, "Indexed (%)")
    labels = [text.get_text() for text in indexed.get_legend().get_texts()]
    frames = ", frame = floor(z)"
    assert labels == [f"unassigned (id -1){frames}", f"expt 0{frames}", f"expt 1{frames}"]
    for line in data_lines(panel(figure, "Spots per image")):
        assert np.all(np.diff(np.asarray(line.get_xdata(), dtype=float)) > 0)
    assert len(data_lines(indexed)) == 3
