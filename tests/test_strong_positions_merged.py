"""dials.strong_reflection_positions computed in the tasks equals the rows joined here.

With experiments whose panels are simple, the program's tasks compute every result
(:mod:`dials_refl_stats.analysis.strong_positions_merge`) and the main process keeps only
d and "strong" per selected row; ``rows_on_driver=True`` joins every selected row in the
main process and computes there (the original algorithm). Both runs must write the same
JSON results, the same log tables and the same plot, byte for byte, on real DIALS files:
single- and multi-panel detectors, rotation sweeps and stills, several experiments and
files, every criterion and resolution option, serial and on worker processes.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import data_path, needs_dials, split_stills
from test_strong_reflection_positions import split_into_pilatus_modules

from dials_refl_stats.command_line import strong_reflection_positions as program
from dials_refl_stats.geometry import map_positions, panel_frames
from dials_refl_stats.plotting import detector

pytestmark = needs_dials

PROGRAM = "strong_reflection_positions"
MERGED = "Computed in the tasks"
JOINED = "Selected rows joined in this process"


def both_ways(run_inprocess, tmp_path, *args):
    """Run with the tasks computing and with the rows joined; the two documents and the
    runs' directories."""
    runs = {}
    for name, extra in (("merged", ()), ("joined", ("rows_on_driver=True",))):
        directory = tmp_path / name
        directory.mkdir()
        result = run_inprocess(PROGRAM, *args, *extra, cwd=directory)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        runs[name] = (result.document, directory)
    return runs


def log_lines(directory):
    """The log from the version line on, without the lines that name the parameters or
    the path taken (DIALS's citation is logged by a process's first run only)."""
    lines = (directory / f"dials.{PROGRAM}.log").read_text().splitlines()
    lines = lines[[k for k, line in enumerate(lines) if line.startswith("dials_refl_stats")][0] :]
    return [
        line
        for line in lines
        if "rows_on_driver" not in line and MERGED not in line and JOINED not in line
    ]


def assert_same(runs, *, merged_path=True):
    (merged, merged_dir), (joined, joined_dir) = runs["merged"], runs["joined"]
    log = (merged_dir / f"dials.{PROGRAM}.log").read_text()
    assert (MERGED in log) == merged_path, log
    assert JOINED in (joined_dir / f"dials.{PROGRAM}.log").read_text()
    assert merged["results"] == joined["results"]
    assert merged["selection"] == joined["selection"]
    assert merged["inputs"] == joined["inputs"]
    assert log_lines(merged_dir) == log_lines(joined_dir)
    png = f"{PROGRAM}.png"
    assert (merged_dir / png).read_bytes() == (joined_dir / png).read_bytes()


def files(*relative):
    return [str(data_path(r)) for r in relative]


CASES = {
    "rotation": (files("sim_small/integrated.expt", "sim_small/integrated.refl"), ()),
    "two experiments": (files("sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"), ()),
    "centroid, I/sigma": (
        files("centroid_test_data/indexed.expt", "centroid_test_data/integrated.refl"),
        ("i_over_sigma.min=5", "intensity.min=None", "n_shells=7", "n_bins=13"),
    ),
    "quartz prf, limits": (
        files("quartz_processed/integrated.expt", "quartz_processed/integrated.refl"),
        ("intensity.choice=prf", "d_min=1.5", "d_max=4", "intensity.min=100"),
    ),
    "quartz d column": (
        files("quartz_processed/integrated.expt", "quartz_processed/integrated.refl"),
        ("resolution.d_source=column",),
    ),
    "indexed with unindexed spots": (
        files("quartz_processed/indexed.expt", "quartz_processed/indexed.refl"),
        ("selection.flags=strong", "intensity.min=20"),
    ),
    "stills": (
        files("ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"),
        ("selection.flags=integrated_sum", "intensity.min=50"),
    ),
    "stills (parallax-corrected panels) on two processes": (
        files("ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"),
        ("selection.flags=integrated_sum", "intensity.min=50", "mp.nproc=2"),
    ),
    "stills, nothing selected": (
        files("ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"),
        (),
    ),
    "two files on two processes": (
        files(
            "sim_twoexp/integrated.expt",
            "sim_small/integrated.expt",
            "sim_twoexp/integrated.refl",
            "sim_small/integrated.refl",
        ),
        ("mp.nproc=2", "intensity.min=1000"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tasks_compute_what_the_joined_rows_give(run_inprocess, tmp_path, case):
    args, options = CASES[case]
    assert_same(both_ways(run_inprocess, tmp_path, *args, *options))


@pytest.mark.parametrize("case", ["rotation", "two experiments", "stills"])
def test_density_plots_binned_in_the_tasks(run_inprocess, tmp_path, monkeypatch, case):
    """Past the density threshold the tasks bin the plot's densities (sparse cells
    merged across files): the same image as binning the joined rows."""
    monkeypatch.setattr(detector, "DENSITY_THRESHOLD", 40)
    monkeypatch.setattr(program, "DENSITY_THRESHOLD", 40)
    args, options = CASES[case]
    runs = both_ways(run_inprocess, tmp_path, *args, *options, "intensity.min=200")
    assert runs["merged"][0]["results"]["n_selected"] > 40
    assert_same(runs)


def test_multi_panel_detector_in_the_lab_frame(run_inprocess, tmp_path, monkeypatch):
    expt, refl, _, n_panels = split_into_pilatus_modules(tmp_path)
    assert n_panels == 60
    runs = both_ways(run_inprocess, tmp_path, expt, refl, "n_bins=20")
    assert runs["merged"][0]["results"]["plot_view"].startswith("lab")
    assert_same(runs)
    monkeypatch.setattr(detector, "DENSITY_THRESHOLD", 30)
    monkeypatch.setattr(program, "DENSITY_THRESHOLD", 30)
    (tmp_path / "dense").mkdir()
    assert_same(both_ways(run_inprocess, tmp_path / "dense", expt, refl, "intensity.min=100"))


@pytest.mark.parametrize(
    "option,reason",
    [
        ("top_fraction=0.05", "top_fraction compares all selected rows"),
        ("output.positions=True", "output.positions lists the rows"),
    ],
)
def test_rows_joined_when_the_tasks_cannot(run_inprocess, tmp_path, option, reason):
    runs = both_ways(run_inprocess, tmp_path, *CASES["rotation"][0], option)
    assert_same(runs, merged_path=False)
    log = (tmp_path / "merged" / f"dials.{PROGRAM}.log").read_text()
    assert f"{JOINED} ({reason})" in log


NO_EXPERIMENTS = {
    "rotation": (files("sim_small/integrated.refl"), ("intensity.min=1000",)),
    "two experiments, I/sigma": (
        files("sim_twoexp/integrated.refl"),
        ("i_over_sigma.min=3", "intensity.choice=prf"),
    ),
    "d column": (files("centroid_test_data/integrated.refl"), ("resolution.d_source=column",)),
    "two files on two processes": (
        files("quartz_processed/strong.refl", "centroid_test_data/indexed.refl"),
        ("mp.nproc=2", "selection.flags=strong"),
    ),
}


@pytest.mark.parametrize("case", sorted(NO_EXPERIMENTS))
def test_without_experiments_a_first_pass_finds_the_panel_sizes(run_inprocess, tmp_path, case):
    """No detector: the panel sizes (largest x and y of each panel's rows, all files)
    come from a first pass, then the tasks compute as with experiments."""
    args, options = NO_EXPERIMENTS[case]
    runs = both_ways(run_inprocess, tmp_path, *args, *options)
    assert_same(runs)
    histograms = runs["merged"][0]["results"]["position_histograms"]
    assert histograms["extent_source"].startswith("data")
    log = (tmp_path / "merged" / f"dials.{PROGRAM}.log").read_text()
    assert "no experiments: a first pass over the files found each panel's size" in log


def test_without_experiments_many_panels_and_stills_files(run_inprocess, tmp_path, monkeypatch):
    """60 panels (the plot's small multiples draw the rows joined here; without a plot
    the tasks compute), and one file per still on two processes, past the density
    threshold."""
    _, refl, _, n_panels = split_into_pilatus_modules(tmp_path)
    assert n_panels == 60
    (tmp_path / "panels").mkdir()
    assert_same(both_ways(run_inprocess, tmp_path / "panels", refl, "n_bins=20"), merged_path=False)
    log = (tmp_path / "panels" / "merged" / f"dials.{PROGRAM}.log").read_text()
    assert "no experiments and several panels: the plot draws each panel's rows" in log
    (tmp_path / "no plot").mkdir()
    runs = both_ways(run_inprocess, tmp_path / "no plot", refl, "n_bins=20", "output.plot=None")
    merged, joined = (runs[k][0]["results"] for k in ("merged", "joined"))
    assert merged == joined
    assert MERGED in (tmp_path / "no plot" / "merged" / f"dials.{PROGRAM}.log").read_text()
    monkeypatch.setattr(detector, "DENSITY_THRESHOLD", 40)
    monkeypatch.setattr(program, "DENSITY_THRESHOLD", 40)
    stills = split_stills("ssx_CuNiR/strong_5.refl", tmp_path / "stills")
    (tmp_path / "dense").mkdir()
    runs = both_ways(
        run_inprocess, tmp_path / "dense", stills, "mp.nproc=2", "selection.flags=strong"
    )
    assert runs["merged"][0]["results"]["n_selected"] > 40
    assert_same(runs)


def test_panel_frames_give_the_doubles_of_map_positions():
    """The numpy tables the tasks use: the same lab coordinates and d as
    ``geometry.map_positions`` (itself tested against dxtbx) for every row."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    experiments = ExperimentListFactory.from_json_file(
        str(data_path("sim_twoexp/integrated.expt")), check_format=False
    )
    frames = panel_frames(experiments)
    assert frames is not None
    rng = np.random.default_rng(3)
    n = 5000
    experiment = rng.integers(-1, len(experiments), size=n)
    panel = np.zeros(n, dtype=np.int64)
    xy = rng.uniform(0, 2000, size=(n, 2))
    expected = map_positions(experiments, experiment, panel, xy)
    lab, d = frames.lab_and_d(experiment, panel, xy)
    np.testing.assert_array_equal(lab, expected.lab)
    np.testing.assert_array_equal(d, expected.d)
    assert int(np.isnan(d).sum()) == expected.n_without_geometry == int((experiment < 0).sum())


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_rows_on_a_panel_the_detector_lacks_name_the_file(run_inprocess, tmp_path, on_error):
    """Checked in the tasks: one Sorry line naming the file, as with the joined rows
    (``skip`` too: the file is readable but disagrees with the experiments)."""
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(data_path("sim_small/integrated.refl")))
    table["panel"] = flex.size_t(table.size(), 3)
    bad = tmp_path / "bad.refl"
    table.as_file(str(bad))
    expt = data_path("sim_small/integrated.expt")
    messages = []
    for extra in ((), ("rows_on_driver=True",)):
        result = run_inprocess(
            PROGRAM, expt, bad, f"input.on_error={on_error}", *extra, cwd=tmp_path
        )
        assert result.exit_code == 1
        messages.append(result.stderr.strip())
        assert not list(tmp_path.glob(f"*{PROGRAM}*"))
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"Sorry: {bad}: reflections on panel 3")


def test_parallax_corrected_panels_travel_to_workers_and_convert_as_dxtbx():
    """Stills with parallax correction: their detectors go to the tasks by pickle (a
    dxtbx panel alone cannot) and convert rows as ``map_positions`` does."""
    import pickle

    from dxtbx.model.experiment_list import ExperimentListFactory

    experiments = ExperimentListFactory.from_json_file(
        str(data_path("ssx_CuNiR/imported_no_ref_5.expt")), check_format=False
    )
    assert experiments[0].detector[0].get_px_mm_strategy().name() != "SimplePxMmStrategy"
    frames = pickle.loads(pickle.dumps(panel_frames(experiments)))
    assert frames.others
    rng = np.random.default_rng(5)
    experiment = rng.integers(-1, len(experiments), size=3000)
    panel = np.zeros(experiment.size, dtype=np.int64)
    xy = rng.uniform(0, 1000, size=(experiment.size, 2))
    # corrupt centroids (dxtbx's parallax correction asserts on them): no position
    xy[:4] = [[np.nan, 5.0], [np.inf, 5.0], [1e300, 5.0], [5.0, -1e300]]
    experiment[:4] = 0
    expected = map_positions(experiments, experiment, panel, xy)
    lab, d = frames.lab_and_d(experiment, panel, xy)
    np.testing.assert_array_equal(lab, expected.lab)
    np.testing.assert_array_equal(d, expected.d)
    assert np.isnan(d[:4]).all() and np.isfinite(d[experiment >= 0][4:]).all()


def test_the_last_rows_mapped_are_kept_and_never_stale():
    """``dials.refl_stats``'s statistics share one ``PanelFrames`` (the same for the same
    experiments object) which keeps the last rows it mapped: asking again gives copies of
    the same doubles, other rows are mapped afresh, and the kept rows do not travel."""
    import pickle

    from dxtbx.model.experiment_list import ExperimentListFactory

    experiments = ExperimentListFactory.from_json_file(
        str(data_path("ssx_CuNiR/imported_no_ref_5.expt")), check_format=False
    )
    frames = panel_frames(experiments)
    assert panel_frames(experiments) is frames
    rng = np.random.default_rng(8)
    rows = []
    for _ in range(2):
        experiment = rng.integers(0, len(experiments), size=500)
        xy = rng.uniform(0, 1000, size=(500, 2))
        rows.append((experiment, np.zeros(500, dtype=np.int64), xy))
    for experiment, panel, xy in (rows[0], rows[0], rows[1], rows[0]):
        expected = map_positions(experiments, experiment, panel, xy)
        lab, d = frames.lab_and_d(experiment, panel, xy)
        np.testing.assert_array_equal(lab, expected.lab)
        np.testing.assert_array_equal(d, expected.d)
        lab[:] = d[:] = 0  # the caller's copies: the kept result stays
    moved = rows[0][2].copy()
    moved[7, 0] += 1.0  # one position changed: mapped again
    lab, d = frames.lab_and_d(rows[0][0], rows[0][1], moved)
    expected = map_positions(experiments, rows[0][0], rows[0][1], moved)
    np.testing.assert_array_equal(d, expected.d)
    assert "_last" not in pickle.loads(pickle.dumps(frames)).__dict__


def test_parallax_corrected_detectors_of_their_own_convert_as_dxtbx():
    """Stills whose experiments each have their own detector model (one panel model per
    still, not one for all): rows grouped by model, the doubles of ``map_positions``;
    the geometry pickles again after use (its cached panels are left out)."""
    import pickle

    from dxtbx.model import Detector
    from dxtbx.model.experiment_list import ExperimentListFactory

    experiments = ExperimentListFactory.from_json_file(
        str(data_path("ssx_CuNiR/imported_no_ref_5.expt")), check_format=False
    )
    for experiment in experiments:
        experiment.detector = Detector.from_dict(experiment.detector.to_dict())
    frames = panel_frames(experiments)
    assert len(frames.others) == len(experiments)
    rng = np.random.default_rng(9)
    experiment = rng.integers(-1, len(experiments), size=5000)
    panel = np.zeros(experiment.size, dtype=np.int64)
    xy = rng.uniform(0, 1000, size=(experiment.size, 2))
    expected = map_positions(experiments, experiment, panel, xy)
    for geometry in (frames, pickle.loads(pickle.dumps(frames))):
        lab, d = geometry.lab_and_d(experiment, panel, xy)
        np.testing.assert_array_equal(lab, expected.lab)
        np.testing.assert_array_equal(d, expected.d)


@pytest.fixture(scope="module")
def still_files(tmp_path_factory):
    """The five integrated stills of ``ssx_CuNiR``, one file each (cut with DIALS's
    select/as_file), and their experiments: small files that tasks read together."""
    folder = tmp_path_factory.mktemp("still_files")
    split_stills("ssx_CuNiR/integrated.refl", folder)
    return data_path("ssx_CuNiR/integrated.expt"), folder


def spy_on_chunks(monkeypatch) -> list[int]:
    """The number of files of every chunk the tasks compute."""
    from dials_refl_stats.analysis.strong_positions_merge import StrongPositionsStatistic

    sizes, original = [], StrongPositionsStatistic.partial

    def partial(self, chunk):
        sizes.append(len(chunk.files) or 1)
        return original(self, chunk)

    monkeypatch.setattr(StrongPositionsStatistic, "partial", partial)
    return sizes


@pytest.mark.parametrize("density", [False, True])
def test_small_files_in_one_chunk_give_the_joined_results(
    run_inprocess, tmp_path, monkeypatch, still_files, density
):
    """A chunk of several small files (rows told apart by their group keys): the same
    JSON, log and plot (points in file order, or density cells) as joined rows."""
    expt, folder = still_files
    if density:
        monkeypatch.setattr(detector, "DENSITY_THRESHOLD", 40)
        monkeypatch.setattr(program, "DENSITY_THRESHOLD", 40)
    sizes = spy_on_chunks(monkeypatch)
    options = ("selection.flags=integrated_sum", "intensity.min=50")
    runs = both_ways(run_inprocess, tmp_path, expt, folder, *options)
    assert max(sizes) > 1  # files of a task in one chunk
    assert runs["merged"][0]["results"]["n_strong"] > (40 if density else 0)
    assert_same(runs)


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_bad_panel_among_small_files_names_its_file(
    run_inprocess, tmp_path, still_files, on_error
):
    """The file of the first row on a panel the detector lacks is named, as with joined
    rows; the files disagree with the experiments, so ``skip`` stops too."""
    from dials.array_family import flex

    expt, source = still_files
    folder = tmp_path / "stills"
    folder.mkdir()
    for path in sorted(source.glob("*.refl")):
        table = flex.reflection_table.from_file(str(path))
        if path.name == "still_2.refl":
            table["panel"] = flex.size_t(table.size(), 3)
        table.as_file(str(folder / path.name))
    messages = []
    for extra in ((), ("rows_on_driver=True",)):
        out = tmp_path / f"out{len(messages)}"
        out.mkdir()
        options = ("selection.flags=integrated_sum", f"input.on_error={on_error}", *extra)
        result = run_inprocess(PROGRAM, expt, folder, *options, cwd=out)
        assert result.exit_code == 1
        assert not list(out.iterdir())
        messages.append(result.stderr.strip())
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"Sorry: {folder / 'still_2.refl'}: reflections on panel 3")


def test_without_experiments_a_huge_panel_number_is_one_more_panel(run_inprocess, tmp_path):
    """Panel numbers index the tasks' histogram cells, not a dense array over every
    number up to the largest (found by fuzzing: panel 33554432 asked for 625 GiB)."""
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(data_path("sim_small/integrated.refl")))
    panel = table["panel"]
    for row in range(0, table.size(), 7):
        panel[row] = 33554432
    table["panel"] = panel
    path = tmp_path / "huge_panel.refl"
    table.as_file(str(path))
    runs = both_ways(run_inprocess, tmp_path, path, "output.plot=None", "intensity.min=1000")
    (merged, merged_dir), (joined, _) = runs["merged"], runs["joined"]
    assert merged["results"] == joined["results"]
    assert MERGED in (merged_dir / f"dials.{PROGRAM}.log").read_text()
    panels = merged["results"]["position_histograms"]["panels"]
    assert [p["panel"] for p in panels] == [0, 33554432]
    assert sum(p["n_in_range"] + p["n_outside"] for p in panels) == merged["results"]["n_strong"]


@pytest.mark.parametrize("parallax", [True, False])
def test_offset_maps_travel_to_workers(parallax):
    """Panels with dx/dy correction maps (dxtbx 3.22+ sets them from a ``.expt`` without
    the images): the maps travel with the pickled geometry (``to_dict()`` leaves them
    out), so tasks on workers convert rows as ``map_positions`` does here."""
    import pickle

    from dxtbx.model import OffsetParallaxCorrectedPxMmStrategy, OffsetPxMmStrategy
    from dxtbx.model.experiment_list import ExperimentListFactory
    from scitbx.array_family import flex

    experiments = ExperimentListFactory.from_json_file(
        str(data_path("ssx_CuNiR/imported_no_ref_5.expt")), check_format=False
    )
    panel = experiments[0].detector[0]
    nx, ny = panel.get_image_size()
    rng = np.random.default_rng(11)
    dx, dy = (flex.double(rng.normal(0, 0.4, size=(ny, nx))) for _ in range(2))
    if parallax:
        strategy = OffsetParallaxCorrectedPxMmStrategy(
            panel.get_mu(), panel.get_thickness(), dx, dy
        )
    else:
        strategy = OffsetPxMmStrategy(dx, dy)
    experiment = rng.integers(0, len(experiments), size=4000)
    panels = np.zeros(experiment.size, dtype=np.int64)
    xy = rng.uniform(0, 1000, size=(experiment.size, 2))
    without_maps = map_positions(experiments, experiment, panels, xy)
    panel.set_px_mm_strategy(strategy)
    expected = map_positions(experiments, experiment, panels, xy)
    assert not np.array_equal(expected.lab, without_maps.lab)  # the maps matter
    travelled = pickle.loads(pickle.dumps(panel_frames(experiments)))
    name = travelled.detectors[0].model[0].get_px_mm_strategy().name()
    assert name == strategy.name()
    lab, d = travelled.lab_and_d(experiment, panels, xy)
    np.testing.assert_array_equal(lab, expected.lab)
    np.testing.assert_array_equal(d, expected.d)


def _same_partials(a, b) -> None:
    import dataclasses

    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name == "plot":
            assert (x is None) == (y is None)
            if x is not None:
                for part in ("all_density", "strong_density"):
                    for u, v in zip(getattr(x, part), getattr(y, part)):
                        np.testing.assert_array_equal(u, v)
                for part in ("all_points", "strong_points"):
                    p, q = getattr(x, part), getattr(y, part)
                    assert p.n == q.n
                    for name in ("xy", "experiment", "order"):
                        np.testing.assert_array_equal(getattr(p, name), getattr(q, name))
        elif isinstance(x, tuple):  # sparse cells, pending (key, d)
            for u, v in zip(x, y):
                np.testing.assert_array_equal(u, v)
        elif isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, field.name
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y, field.name


@pytest.mark.parametrize("cap", [10**6, 40])
def test_partials_merged_at_once_equal_every_pairwise_order(
    run_inprocess, tmp_path, monkeypatch, still_files, cap
):
    """``merge_many`` (one copy of the per-row arrays) gives what pairwise merges give in
    any tree: the property that lets the driver and the workers merge many at once."""
    import functools

    from dials_refl_stats.analysis.strong_positions_merge import StrongPositionsStatistic

    made, original = [], StrongPositionsStatistic.partial

    def partial(self, chunk):
        made.append((self, original(self, chunk)))
        return made[-1][1]

    monkeypatch.setattr(StrongPositionsStatistic, "partial", partial)
    monkeypatch.setattr(program, "DENSITY_THRESHOLD", 40)
    expt, folder = still_files
    options = ("selection.flags=integrated_sum", "intensity.min=50", "reader=dials")
    result = run_inprocess(PROGRAM, expt, folder, *options, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    statistic = made[0][0]
    monkeypatch.setattr(statistic, "point_cap", cap)
    parts = [p for _s, p in made]
    assert len(parts) >= 4  # one chunk a file (DIALS reads them one by one)
    at_once = statistic.merge_many(parts)
    left = functools.reduce(statistic.merge, parts)
    right = functools.reduce(lambda a, b: statistic.merge(b, a), parts[::-1])
    assert at_once.d.size > 0 and at_once.plot is not None
    _same_partials(at_once, left)
    _same_partials(at_once, right)
