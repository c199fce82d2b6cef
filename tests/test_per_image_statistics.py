"""dials.per_image_statistics against DIALS: dials.spot_counts_per_image and the flex API."""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import pytest
from conftest import data_path, split_stills
from test_programs_common import run_inprocess

from dials_refl_stats.schemas import validate

PROGRAM = "per_image_statistics"


def run_ours(tmp_path, *args) -> dict:
    code, _, err = run_inprocess(PROGRAM, [*map(str, args), "output.plot=None"], tmp_path)
    assert code == 0, err
    return json.loads((tmp_path / f"{PROGRAM}.json").read_text())


def spot_counts_per_image(tmp_path, expt, refl) -> dict:
    from dials.command_line import spot_counts_per_image as dials_program

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        dials_program.run([str(expt), str(refl), "json=spc.json"])
    finally:
        os.chdir(here)
    return json.loads((tmp_path / "spc.json").read_text())


@pytest.mark.parametrize(
    "expt,refl",
    [
        ("sim_small/imported.expt", "sim_small/strong.refl"),
        ("ssx_CuNiR/imported_no_ref_5.expt", "ssx_CuNiR/strong_5.refl"),
    ],
)
def test_equals_dials_spot_counts_per_image(tmp_path, expt, refl):
    expected = spot_counts_per_image(tmp_path, data_path(expt), data_path(refl))
    ours = run_ours(tmp_path, data_path(expt), data_path(refl))["results"]["per_image"]
    names = {"n_spots_total": "n_strong", "total_intensity": "total_intensity_no_ice"}
    for key, values in expected.items():
        mine = ours[names.get(key, key)]
        assert len(mine) == len(values), key
        for a, b in zip(mine, values):
            if isinstance(b, int):
                assert a == b, key
            else:
                # our JSON keeps 6 significant digits
                assert a == pytest.approx(b, rel=1e-5, abs=1e-9), key


def flex_per_image(path, mask_code: int = 4):
    """Per floor(z) of xyzobs: strong, indexed, total I, sizes, written plainly with flex."""
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(path))
    z = flex.floor(table["xyzobs.px.value"].parts()[2])
    result = {}
    for frame in sorted(set(z)):
        rows = table.select(z == frame)
        strong = rows.select(rows.get_flags(rows.flags.strong))
        result[int(frame)] = {
            "n_strong": len(strong),
            "n_indexed": strong.get_flags(strong.flags.indexed).count(True),
            "total": flex.sum(strong["intensity.sum.value"]),
            "intensities": list(strong["intensity.sum.value"]),
            "sizes": list(strong["shoebox"].count_mask_values(mask_code)),
        }
    return result


def test_counts_sizes_and_intensities_match_flex(tmp_path):
    expt, refl = data_path("sim_small/indexed.expt"), data_path("sim_small/indexed.refl")
    document = run_ours(tmp_path, expt, refl)
    table = document["results"]["per_image"]
    expected = flex_per_image(refl)
    assert table["numbering"] == ["image_number"] * len(table["image"])
    by_image = {image: i for i, image in enumerate(table["image"])}
    for frame, want in expected.items():
        i = by_image[frame + 1]  # image number = floor(z) + 1
        assert table["n_strong"][i] == want["n_strong"]
        assert table["n_indexed"][i] == want["n_indexed"]
        assert table["fraction_indexed"][i] == pytest.approx(want["n_indexed"] / want["n_strong"])
        assert table["total_intensity"][i] == pytest.approx(want["total"], rel=1e-6)
        assert table["median_spot_size"][i] == np.median(want["sizes"])
        exact = np.median(want["intensities"])
        assert abs(table["median_intensity"][i] - exact) <= 0.0101 * abs(exact)
    assert document["results"]["overall"]["n_strong"] == sum(
        w["n_strong"] for w in expected.values()
    )


def flex_rows_per_image(table, unassigned_experiment=None) -> dict:
    """(experiment, image) -> rows, written plainly with flex: image number floor(z) + 1
    on a sweep's images; id -1 rows on ``unassigned_experiment``'s images, else numbered
    floor(z) (``z_floor``: no experiment known)."""
    from dials.array_family import flex

    z = flex.floor(table["xyzobs.px.value"].parts()[2])
    counts: dict = {}
    for i, frame in zip(table["id"], z):
        i = unassigned_experiment if i < 0 and unassigned_experiment is not None else i
        key = (int(i), int(frame) + 1) if i >= 0 else (-1, int(frame))
        counts[key] = counts.get(key, 0) + 1
    return counts


def ours_rows_per_image(results) -> dict:
    """(experiment, image) -> rows of our per-image table (images with rows)."""
    table = results["per_image"]
    keys = zip(table["experiment"], table["image"])
    return {key: n for key, n in zip(keys, table["n_rows"]) if n}


def test_unassigned_rows_of_two_sweeps_stay_their_own_group(tmp_path):
    """sim_twoexp: two sweeps with equal image ranges (1-30) but their own scans and
    images; id -1 rows belong to neither, so each sweep's images count only its rows."""
    from dials.array_family import flex

    refl = data_path("sim_twoexp/indexed.refl")
    table = flex.reflection_table.from_file(str(refl))
    assert (table["id"] == -1).count(True) > 0
    results = run_ours(tmp_path, data_path("sim_twoexp/indexed.expt"), refl)["results"]
    assert ours_rows_per_image(results) == flex_rows_per_image(table)
    # image numbers repeat across the sweeps: the log's table names the experiment
    log = (tmp_path / "dials.per_image_statistics.log").read_text()
    assert "expt    image  strong" in log and "\n   0        1     164 " in log


def test_unassigned_rows_of_lattices_sharing_a_scan_count_on_its_images(tmp_path):
    """Two lattices of one sweep (experiments naming one scan, as dials.index writes
    them): id -1 rows count on the sweep's images, with the first lattice."""
    from dials.array_family import flex
    from dxtbx.model import Experiment
    from dxtbx.model.experiment_list import ExperimentListFactory

    experiments = ExperimentListFactory.from_json_file(
        str(data_path("sim_small/indexed.expt")), check_format=False
    )
    first = experiments[0]
    experiments.append(
        Experiment(
            beam=first.beam,
            detector=first.detector,
            goniometer=first.goniometer,
            scan=first.scan,
            imageset=first.imageset,
            crystal=copy.deepcopy(first.crystal),
            identifier="second-lattice",
        )
    )
    experiments.as_file(str(tmp_path / "two.expt"))
    table = flex.reflection_table.from_file(str(data_path("sim_small/indexed.refl")))
    ids = table["id"]
    second = flex.bool([i % 3 == 0 and n >= 0 for i, n in enumerate(ids)])
    ids.set_selected(second, 1)
    table["id"] = ids
    table.experiment_identifiers()[1] = "second-lattice"
    table.as_file(str(tmp_path / "two.refl"))
    unassigned = (table["id"] == -1).count(True)
    assert unassigned > 0 and (table["id"] == 1).count(True) > 0

    results = run_ours(tmp_path, tmp_path / "two.expt", tmp_path / "two.refl")["results"]
    assert ours_rows_per_image(results) == flex_rows_per_image(table, unassigned_experiment=0)


def test_resolution_estimates_failing_on_weak_integrated_rows_leave_the_counts(tmp_path):
    """DIALS's resolution estimates fail (math errors) on images of integrated rows with
    intensities <= 0: the run goes on, those images keep DIALS's counts and get -1, and
    the JSON and the log say how many. Checked against DIALS on its own rlp mapping."""
    from dials.algorithms.spot_finding.per_image_analysis import stats_for_reflection_table
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    expt = data_path("sim_small/integrated.expt")
    refl = data_path("sim_small/integrated.refl")
    document = run_ours(tmp_path, expt, refl, "selection.flags=integrated_sum")
    results = document["results"]

    table = flex.reflection_table.from_file(str(refl))
    table = table.select(table.get_flags(table.flags.integrated_sum))
    experiments = ExperimentListFactory.from_json_file(str(expt), check_format=False)
    observed = table.get_flags(table.flags.observed) | table.get_flags(table.flags.strong)
    z = np.where(
        observed.as_numpy_array(),
        table["xyzobs.px.value"].parts()[2].as_numpy_array(),
        table["xyzcal.px"].parts()[2].as_numpy_array(),
    )
    image_of_row = np.floor(z).astype(int) + 1
    table.centroid_px_to_mm(experiments)
    table.map_centroids_to_reciprocal_space(experiments)
    failed, no_ice = set(), {}
    for image in sorted(set(image_of_row.tolist())):
        rows = table.select(flex.bool(image_of_row == image))
        spots = flex.reflection_table()
        for column in ("rlp", "intensity.sum.value", "intensity.sum.variance"):
            spots[column] = rows[column]
        try:
            stats_for_reflection_table(spots)
        except ValueError:
            failed.add(image)
        no_ice[image] = stats_for_reflection_table(spots, resolution_analysis=False)
    assert failed  # the case this test is about

    per_image = results["per_image"]
    assert results["resolution_failed"]["n_images"] == len(failed)
    assert results["resolution_failed"]["first"] == f"image {min(failed)} of experiment 0"
    for i, image in enumerate(per_image["image"]):
        if image in no_ice:
            assert per_image["n_spots_no_ice"][i] == no_ice[image].n_spots_no_ice
            assert per_image["n_spots_4A"][i] == no_ice[image].n_spots_4A
        if image in failed:
            assert per_image["estimated_d_min"][i] == -1
            assert per_image["noisiness_method_1"][i] == -1
    log = (tmp_path / "dials.per_image_statistics.log").read_text()
    assert f"resolution estimates failed on {len(failed)} of " in log

    strong = run_ours(
        tmp_path, data_path("sim_small/indexed.expt"), data_path("sim_small/indexed.refl")
    )
    assert strong["results"]["resolution_failed"]["n_images"] == 0
    assert run_ours(tmp_path, refl)["results"]["resolution_failed"] is None  # no experiments


def test_isigma_histogram_counts_every_selected_spot(tmp_path):
    document = run_ours(tmp_path, data_path("sim_small/indexed.refl"))
    results = document["results"]
    counts = np.asarray(results["isigma"]["counts"])
    assert counts.shape == (results["n_images"], len(results["isigma"]["labels"]))
    assert counts.sum(axis=1).tolist() == results["per_image"]["n_selected"]


def test_stills_rates_and_unit_cells(tmp_path):
    from dxtbx.model.experiment_list import ExperimentListFactory

    expt = data_path("ssx_CuNiR/indexed.expt")
    document = run_ours(tmp_path, expt, data_path("ssx_CuNiR/indexed.refl"), "hit.min_spots=70")
    results = document["results"]
    stills = results["stills"]
    table = results["per_image"]
    assert table["numbering"] == ["still"] * 5 and table["image"] == [0, 1, 2, 3, 4]
    hits = [n >= 70 for n in table["n_strong"]]
    assert stills["n_hits"] == sum(hits) and stills["hit_rate"] == pytest.approx(sum(hits) / 5)
    assert stills["n_indexed_images"] == sum(n > 0 for n in table["n_indexed"])
    experiments = ExperimentListFactory.from_json_file(str(expt), check_format=False)
    cells = [e.crystal.get_unit_cell().parameters() for e in experiments]
    assert stills["unit_cells"]["n_crystals"] == len(cells)
    a = stills["unit_cells"]["a"]
    assert sum(a["counts"]) == len(cells)
    assert a["mean"] == pytest.approx(np.mean([c[0] for c in cells]), rel=1e-5)
    assert len(stills["sliding"]["hit_rate"]) == 5


def test_long_series_are_binned_and_say_so(tmp_path):
    refl = data_path("sim_small/indexed.refl")
    whole = run_ours(tmp_path, refl)["results"]
    binned = run_ours(tmp_path, refl, "output.max_images=10")["results"]
    assert whole["binned"] is None and whole["n_images"] == 20
    assert binned["binned"]["images_per_bin"] == 2 and binned["binned"]["n_bins"] == 10
    assert len(binned["per_image"]["n_strong"]) == 10
    assert sum(binned["per_image"]["n_strong"]) == sum(whole["per_image"]["n_strong"])
    pairs = np.asarray(whole["per_image"]["n_strong"]).reshape(10, 2).sum(axis=1)
    assert binned["per_image"]["n_strong"] == pairs.tolist()


def test_bins_never_span_two_experiments(tmp_path):
    """sim_twoexp: unassigned rows, then two sweeps of 30 images; binned to at most 10
    bins, each bin's rows are of one experiment, and its counts are theirs."""
    expt, refl = data_path("sim_twoexp/indexed.expt"), data_path("sim_twoexp/indexed.refl")
    whole = run_ours(tmp_path, expt, refl)["results"]["per_image"]
    binned = run_ours(tmp_path, expt, refl, "output.max_images=10")["results"]
    table = binned["per_image"]
    assert binned["binned"]["n_bins"] == len(table["image"]) <= 10
    assert set(table["experiment"]) == {-1, 0, 1}
    rows = list(zip(whole["experiment"], whole["image"], whole["n_strong"]))
    for experiment, first, last, n_strong in zip(
        table["experiment"], table["image"], table["image_last"], table["n_strong"]
    ):
        mine = [n for e, image, n in rows if e == experiment and first <= image <= last]
        assert n_strong == sum(mine)
    assert sum(table["n_strong"]) == sum(whole["n_strong"])


def test_integrated_table_counts_integrated_rows(tmp_path):
    from dials.array_family import flex

    refl = data_path("sim_small/integrated.refl")
    document = run_ours(tmp_path, data_path("sim_small/integrated.expt"), refl)
    table = flex.reflection_table.from_file(str(refl))
    overall = document["results"]["overall"]
    assert overall["n_rows"] == table.size()
    assert overall["n_integrated_sum"] == table.get_flags(table.flags.integrated_sum).count(True)
    assert overall["n_integrated_prf"] == table.get_flags(table.flags.integrated_prf).count(True)
    assert overall["n_strong"] == table.get_flags(table.flags.strong).count(True)
    assert not math.isnan(overall["total_intensity"])


@pytest.mark.parametrize("batch_files", [1, 2, 7])
def test_images_completed_in_tasks_equal_their_value_counts(tmp_path, monkeypatch, batch_files):
    """Tasks hand back final per-image values (their files hold whole images); the
    driver's table is the one the value counts and sketches of every image give."""

    from dials_refl_stats.analysis.per_image import IMAGE_ARRAYS, PerImageStatistic
    from dials_refl_stats.pipeline import execute
    from dials_refl_stats.pipeline.inputs import open_files
    from dials_refl_stats.selection import FlagSelection

    split_stills("ssx_CuNiR/strong_5.refl", tmp_path)
    paths = sorted(str(p) for p in tmp_path.glob("*.refl"))
    paths += [str(data_path("sim_small/strong.refl")), str(data_path("ssx_CuNiR/strong_5.refl"))]
    opened = open_files(paths, "auto", [])
    infos, sizes = [o.info for o in opened], [o.size_bytes for o in opened]
    statistic = PerImageStatistic()
    plan = execute.SelectionPlan(FlagSelection(names=("strong",)))
    monkeypatch.setattr(execute, "BATCH_FILES", batch_files)
    completed = statistic.finalize(execute.reduce_files(statistic, plan, infos, sizes).partial)
    with monkeypatch.context() as patch:
        patch.setattr(PerImageStatistic, "complete", lambda self, partial: partial)
        counted = statistic.finalize(execute.reduce_files(statistic, plan, infos, sizes).partial)
    assert completed.n_images == counted.n_images > 5
    for name in IMAGE_ARRAYS:
        np.testing.assert_array_equal(getattr(completed, name), getattr(counted, name))
    for name, values in counted.counts.items():
        np.testing.assert_array_equal(completed.counts[name], values)


@pytest.mark.parametrize("extra", [[], ["input.on_error=skip"], ["mp.nproc=2"]])
def test_dials_analysis_in_the_tasks_names_a_file_with_a_bad_panel(tmp_path, extra):
    """The tasks give each spot its d: a spot on a panel the detector lacks stops the run
    with one line naming its file (``skip`` too: the file disagrees with the
    experiments), and nothing is written."""
    from dials.array_family import flex

    def bad_panel(i, still):
        if i == 3:
            still["panel"] = flex.size_t(still.size(), 2)

    folder = split_stills("ssx_CuNiR/strong_5.refl", tmp_path / "stills", edit=bad_panel)
    expt = data_path("ssx_CuNiR/imported_no_ref_5.expt")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_inprocess(PROGRAM, [str(expt), str(folder), *extra], out)
    assert code == 1
    assert err.strip().startswith(f"Sorry: {folder / 'still_3.refl'}: reflections on panel 2")
    assert not list(out.iterdir())


def test_dials_analysis_of_still_files_equals_dials_on_the_joint_table(tmp_path):
    """One file per still, analysed in the tasks on two processes: DIALS's numbers for the
    joint table (dials.spot_counts_per_image)."""
    refl = data_path("ssx_CuNiR/strong_5.refl")
    expt = data_path("ssx_CuNiR/imported_no_ref_5.expt")
    folder = split_stills("ssx_CuNiR/strong_5.refl", tmp_path / "stills")
    expected = spot_counts_per_image(tmp_path, expt, refl)
    ours = run_ours(tmp_path, expt, folder, "mp.nproc=2")["results"]["per_image"]
    for key in ("n_spots_no_ice", "n_spots_4A", "estimated_d_min", "d_min_distl_method_1"):
        assert ours[key] == pytest.approx(expected[key], rel=1e-5), key
    for key in ("total_intensity", "noisiness_method_1", "d_min_distl_method_2"):
        mine = ours["total_intensity_no_ice" if key == "total_intensity" else key]
        assert mine == pytest.approx(expected[key], rel=1e-5), key


def test_dials_analysis_without_dials_where_the_tasks_run_is_sorry(tmp_path, monkeypatch):
    """A Dask worker without DIALS cannot run DIALS's analysis: one line saying so."""
    import sys

    monkeypatch.setitem(sys.modules, "dials.algorithms.spot_finding.per_image_analysis", None)
    args = [str(data_path("sim_small/imported.expt")), str(data_path("sim_small/strong.refl"))]
    code, _, err = run_inprocess(PROGRAM, args, tmp_path)
    assert code == 1
    assert err.startswith("Sorry: DIALS's per-image analysis needs DIALS where the tasks run")
    assert "resolution_analysis=False" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
    code, _, err = run_inprocess(PROGRAM, [*args, "resolution_analysis=False"], tmp_path)
    assert code == 0, err


@pytest.mark.parametrize("form", ["full", "compact"])
def test_binned_stills_summary_in_either_json_form(tmp_path, form):
    """More stills than output.max_images: the sliding rates are binned too (found at
    10^5 stills with their experiments, where the JSON takes the compact form)."""
    folder = split_stills("ssx_CuNiR/strong_5.refl", tmp_path / "stills", copies=5)
    expt = data_path("ssx_CuNiR/imported_no_ref_5.expt")
    options = ("output.max_images=10", f"output.json_form={form}", "resolution_analysis=False")
    document = run_ours(tmp_path, expt, folder, *options)
    validate(document)
    results = document["results"]
    assert results["n_images"] == 25 and results["binned"]["n_bins"] == 9
    sliding = results["stills"]["sliding"]
    assert sliding["image_last"] is None  # the images are the per-image table's
    rates = sliding["hit_rate"]
    rates = rates if isinstance(rates, list) else [r[0] for r in rates["runs"]]
    assert all(0 <= r <= 1 for r in rates)


@pytest.mark.parametrize("program", [PROGRAM, "strong_reflection_positions"])
def test_corrupt_centroids_on_parallax_corrected_panels_have_no_d(tmp_path, program):
    """A centroid that is not finite, or absurdly far, gets no position (dxtbx's parallax
    correction asserts on it): the run goes on, on one process or two."""

    def corrupt_centroids(i, still):
        if i == 1:
            xyz = still["xyzobs.px.value"]
            xyz[0] = (float("nan"), 10.0, 0.5)
            xyz[1] = (1e300, 10.0, 0.5)
            still["xyzobs.px.value"] = xyz

    folder = split_stills("ssx_CuNiR/strong_5.refl", tmp_path / "stills", edit=corrupt_centroids)
    expt = data_path("ssx_CuNiR/imported_no_ref_5.expt")
    documents = []
    for extra in ([], ["mp.nproc=2"]):
        out = tmp_path / f"out{len(documents)}"
        out.mkdir()
        code, _, err = run_inprocess(program, [str(expt), str(folder), *extra], out)
        assert code == 0, err
        assert err == ""
        documents.append(json.loads((out / f"{program}.json").read_text())["results"])
    assert documents[0] == documents[1]


def flex_rows_per_file_image(paths) -> dict:
    """(file index, id, floor(z)) -> rows of strong tables given without experiments,
    written plainly with flex."""
    from dials.array_family import flex

    counts: dict = {}
    for f, path in enumerate(paths):
        table = flex.reflection_table.from_file(str(path))
        z = flex.floor(table["xyzobs.px.value"].parts()[2])
        for i, frame in zip(table["id"], z):
            key = (f, int(i), int(frame))
            counts[key] = counts.get(key, 0) + 1
    return counts


WITHOUT_EXPERIMENTS = ("ssx_CuNiR/strong_5.refl", "sim_small/strong.refl")


def test_images_without_experiments_are_named_by_file_and_id(tmp_path):
    """Without experiments an image is floor(z) of one file's id: the JSON says which
    (``file_index``, ``id``), the log's table too, and the counts are flex's."""
    paths = [data_path(name) for name in WITHOUT_EXPERIMENTS]
    document = run_ours(tmp_path, *paths)
    validate(document)
    table = document["results"]["per_image"]
    assert set(table["numbering"]) == {"z_floor"} and set(table["experiment"]) == {-1}
    keys = zip(table["file_index"], table["id"], table["image"])
    assert dict(zip(keys, table["n_rows"])) == flex_rows_per_file_image(paths)
    log = (tmp_path / "dials.per_image_statistics.log").read_text()
    assert " file    id    image  strong" in log
    # the second still of the first file: one line naming file 0, id 1 and its frame
    i = list(zip(table["file_index"], table["id"])).index((0, 1))
    assert f"\n    0     1 {table['image'][i]:8d} {table['n_strong'][i]:7d} " in log


def test_bins_of_images_without_experiments_stay_in_one_file_and_id(tmp_path):
    """6 series (5 stills' ids of one file, one sweep in another) in at most 10 bins:
    no bin mixes two series; 15 series in 10 bins: bins run on over them (the cap holds)."""
    paths = [data_path(name) for name in WITHOUT_EXPERIMENTS]
    whole = run_ours(tmp_path, *paths)["results"]["per_image"]
    results = run_ours(tmp_path, *paths, "output.max_images=10")["results"]
    binned = results["per_image"]
    assert results["binned"]["n_bins"] == len(binned["image"]) <= 10
    rows = list(zip(whole["file_index"], whole["id"], whole["image"], whole["n_rows"]))
    for f, i, first, last, n in zip(
        binned["file_index"], binned["id"], binned["image"], binned["image_last"], binned["n_rows"]
    ):
        assert n == sum(m for g, j, image, m in rows if (g, j) == (f, i) and first <= image <= last)
    assert sum(binned["n_rows"]) == sum(whole["n_rows"])
    many = [data_path(f"ssx_CuNiR/{name}") for name in ("strong_5.refl", "indexed.refl")]
    many.append(data_path("ssx_CuNiR/integrated.refl"))
    whole = run_ours(tmp_path, *many)["results"]["per_image"]
    assert len(set(zip(whole["file_index"], whole["id"]))) == 15
    results = run_ours(tmp_path, *many, "output.max_images=10")["results"]
    binned = results["per_image"]
    assert results["binned"]["n_bins"] == len(binned["image"]) <= 10
    assert sum(binned["n_rows"]) == sum(whole["n_rows"])
    assert binned["file_index"] == [whole["file_index"][k] for k in range(0, 15, 2)]


def reference_bin_starts(series: np.ndarray, max_images: int):
    """bin_starts before it searched the size by halving (verbatim; it never ended with
    more series than max_images)."""
    if not series.size:
        return 1, np.zeros(0, np.int64)
    first = np.flatnonzero(np.append(True, series[1:] != series[:-1]))
    lengths = np.diff(np.append(first, series.size))
    size = max(1, -(-series.size // max_images))
    while (-(-lengths // size)).sum() > max_images:
        size += 1
    position = np.arange(series.size) - np.repeat(first, lengths)
    return size, np.flatnonzero(position % size == 0)


@pytest.mark.parametrize("seed", range(40))
def test_bin_starts_as_the_linear_search_and_within_the_cap(seed):
    from dials_refl_stats.analysis.stills import bin_starts

    rng = np.random.default_rng(seed)
    n_series = int(rng.integers(1, 30))
    lengths = rng.integers(1, 3000 if seed % 2 else 20, n_series)
    series = np.repeat(rng.permutation(n_series), lengths)
    max_images = int(rng.integers(1, 60))
    size, starts = bin_starts(series, max_images)
    assert starts.size <= max_images and starts[0] == 0
    if n_series <= max_images:
        want_size, want_starts = reference_bin_starts(series, max_images)
        assert size == want_size and starts.tolist() == want_starts.tolist()
        # no bin spans two series
        ends = np.append(starts[1:], series.size) - 1
        assert (series[starts] == series[ends]).all()
    else:  # more series than bins: bins of the whole run
        assert (
            starts.tolist() == reference_bin_starts(np.zeros_like(series), max_images)[1].tolist()
        )


def test_spots_at_an_impossible_d_are_sorry_not_a_crash(tmp_path):
    """A beam of 0.001 Å puts spots at d ~ 0.002 Å, where DIALS's ice-ring filter would
    make ~10^10 rings (a segfault once memory runs out): a one-line Sorry naming the file
    and the image, nothing written; resolution_analysis=False still runs."""
    document = json.loads(data_path("sim_small/imported.expt").read_text())
    for beam in document["beam"]:
        beam["wavelength"] = 0.001
    expt = tmp_path / "inputs" / "short_wavelength.expt"
    expt.parent.mkdir()
    expt.write_text(json.dumps(document))
    refl = data_path("sim_small/strong.refl")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_inprocess(PROGRAM, [expt, refl], out)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"Sorry: {refl}: DIALS's per-image analysis failed on image ")
    assert "ice rings are made down to 0.05 Å" in err and "resolution_analysis=False" in err
    assert not list(out.iterdir())
    code, _, err = run_inprocess(PROGRAM, [expt, refl, "resolution_analysis=False"], out)
    assert code == 0, err


def test_a_crystal_with_a_cell_that_is_not_finite_is_sorry(tmp_path):
    """An infinite crystal vector (a hand-edited file): the unit-cell histograms cannot
    hold it; one Sorry naming the experiment file and the experiment, nothing written."""
    document = json.loads(data_path("ssx_CuNiR/indexed.expt").read_text())
    document["crystal"][2]["real_space_b"][0] = float("inf")
    expt = tmp_path / "inputs" / "infinite_cell.expt"
    expt.parent.mkdir()
    expt.write_text(json.dumps(document))
    out = tmp_path / "out"
    out.mkdir()
    refl = data_path("ssx_CuNiR/indexed.refl")
    for program, quiet in (("per_image_statistics", "output.plot=None"), ("refl_stats", "")):
        code, _, err = run_inprocess(program, [expt, refl, *([quiet] if quiet else [])], out)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"Sorry: {expt}: the crystal of experiment ")
        assert "has a unit cell that is not finite (" in err
        assert not list(out.iterdir())
