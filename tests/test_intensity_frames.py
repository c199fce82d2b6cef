"""Intensity per frame finished in the tasks equals the plain per-series computation.

:class:`IntensityFramesStatistic` bins every series of a task at once; the reference is
the plain algorithm, one series at a time (``intensity_series`` of each series' rows,
numbered as :mod:`dials_refl_stats.frames` says). Any split of the rows into chunks and
of the files into tasks gives identical results; the overall median and the plot's
sample keep their form past their limits, whatever the split.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import data_path, needs_dials

from dials_refl_stats.analysis import sketches
from dials_refl_stats.analysis.intensity_frames import (
    EXPERIMENT_INDEX,
    IMAGE_NUMBER,
    Z_FLOOR,
    FrameError,
    IntensityColumns,
    IntensityFramesStatistic,
)
from dials_refl_stats.analysis.intensity_per_frame import (
    image_numbers,
    intensity_series,
    n_outside_range,
    plot_positions,
    summarise_intensities,
    z_floor_frames,
)
from dials_refl_stats.analysis.sketches import MedianState, Sample
from dials_refl_stats.analysis.statistic import Chunk, FileInfo
from dials_refl_stats.output import to_plain
from dials_refl_stats.selection import FlagSelection

#: Experiments 0 and 1 have scans (images 1-20 and 0-9); 2-9 are stills.
SCANS = {0: (1, 20), 1: (0, 9)}
#: Per file: table ids and the experiment of each (``None``: no experiment).
FILES = [
    {0: 0, 1: 1, -1: None},
    {0: 2, 1: 3, 2: 4},
    {0: 5, 3: 6, 4: 1},
    {-1: None},
    {0: 7, 1: 8, 2: 9, 5: 0},
]
SUM = IntensityColumns(
    "sum", "intensity.sum.value", "intensity.sum.variance", FlagSelection(("integrated_sum",))
)
PRF = IntensityColumns(
    "prf", "intensity.prf.value", "intensity.prf.variance", FlagSelection(("integrated_prf",))
)


def make_chunks(seed: int = 7, rows: int = 400) -> list[Chunk]:
    rng = np.random.default_rng(seed)
    chunks = []
    for index, ids in enumerate(FILES):
        table_ids = np.array(sorted(ids), dtype=np.int64)
        id_column = rng.choice(table_ids, rows)
        z = rng.uniform(-2.5, 22.0, rows)
        value = rng.normal(50, 80, rows)
        variance = np.where(
            rng.random(rows) < 0.1, rng.uniform(-1, 0, rows), rng.uniform(1, 900, rows)
        )
        flags = np.where(rng.random(rows) < 0.7, 256, 0) | np.where(rng.random(rows) < 0.5, 512, 0)
        if index == 3:  # never integrated: its selected rows count for both intensities
            flags = np.full(rows, 32)
        mapping = {i: e for i, e in ids.items() if e is not None}
        info = FileInfo(index, f"/data/file_{index}.refl", rows, {}, mapping)
        columns = {
            "flags": flags.astype(np.int64),
            "id": id_column.astype(np.int32),
            "xyzobs.px.value": np.stack([rng.uniform(0, 100, rows)] * 2 + [z], axis=1),
            "intensity.sum.value": value,
            "intensity.sum.variance": variance,
            "intensity.prf.value": value * 1.1,
            "intensity.prf.variance": variance,
        }
        chunks.append(Chunk(info, 0, columns, rng.random(rows) < 0.85))
    return chunks


def statistic(**options) -> IntensityFramesStatistic:
    return IntensityFramesStatistic(
        [SUM, PRF],
        "xyzobs.px.value",
        options.pop("bin_width", 3),
        scans=SCANS,
        with_experiments=True,
        **options,
    )


def reference(chunks: list[Chunk], choice: int, bin_width: int):
    """The plain algorithm: one series at a time, numbered by its experiment."""
    series = {}  # (file, first id) -> frames, intensities, variances, range, numbering
    for chunk in chunks:
        file, columns = chunk.file, chunk.columns
        flags = columns["flags"]
        wanted = [c.selection.apply(flags) for c in (SUM, PRF)]
        used = chunk.selected & (wanted[choice] | ~(wanted[0] | wanted[1]))
        stills = [
            i for i in sorted(FILES[file.index]) if i >= 0 and file.experiment_of_id.get(i, -1) >= 2
        ]
        for table_id in sorted(FILES[file.index]):
            rows = used & (columns["id"] == table_id)
            z = columns["xyzobs.px.value"][rows, 2]
            experiment = file.experiment_of_id.get(table_id)
            if experiment is None:
                key, numbering, frames, frame_range = table_id, Z_FLOOR, z_floor_frames(z), None
            elif experiment in SCANS:
                frame_range = SCANS[experiment]
                key, numbering = table_id, IMAGE_NUMBER
                frames = image_numbers(z, frame_range[0])
            else:
                key, numbering, frame_range = stills[0], EXPERIMENT_INDEX, None
                frames = np.full(z.size, experiment)
            value = (SUM, PRF)[choice].value
            variance = (SUM, PRF)[choice].variance
            entry = series.setdefault(
                (file.index, key),
                {"frames": [], "i": [], "v": [], "range": frame_range, "numbering": numbering},
            )
            entry["frames"].append(frames)
            entry["i"].append(columns[value][rows])
            entry["v"].append(columns[variance][rows])
    results = []
    for key in sorted(series):
        entry = series[key]
        frames = np.concatenate(entry["frames"])
        results.append(
            (
                intensity_series(
                    frames,
                    np.concatenate(entry["i"]),
                    np.concatenate(entry["v"]),
                    bin_width,
                    entry["range"],
                ),
                n_outside_range(frames, entry["range"]),
                entry["numbering"],
            )
        )
    return results


def test_tasks_equal_the_plain_algorithm_per_series():
    chunks = make_chunks()
    for bin_width in (1, 3):
        stat = statistic(bin_width=bin_width)
        final = stat.finalize(stat.merge_all(stat.partial(c) for c in chunks))
        for choice in (0, 1):
            expected = reference(chunks, choice, bin_width)
            got = final.choices[choice]
            assert final.n_series == len(expected)
            bounds = got.bin_bounds(final.n_series)
            for k, (series, outside, numbering) in enumerate(expected):
                assert final.numbering[k] == numbering
                table, summary = series.table, series.summary
                rows = slice(bounds[k], bounds[k + 1])
                for name in (
                    "frame_first",
                    "frame_last",
                    "count",
                    "n_with_sigma",
                    "n_non_positive",
                ):
                    assert got.bins[name][rows].tolist() == getattr(table, name).tolist(), name
                for name in ("mean", "median", "mean_i_over_sigma"):
                    np.testing.assert_allclose(
                        got.bins[name][rows], getattr(table, name), rtol=1e-12
                    )
                assert got.summary["n"][k] == summary.n
                assert got.summary["n_non_positive"][k] == summary.n_non_positive
                assert got.summary["n_outside"][k] == outside
                if summary.n:
                    assert got.summary["median"][k] == summary.median
                    assert got.summary["mean"][k] == pytest.approx(summary.mean, rel=1e-12)
                    assert got.summary["frame_min"][k] == summary.frame_min
            every = [s.summary for s, _, _ in expected]
            assert got.overall.n == sum(s.n for s in every)
    assert set(final.numbering.tolist()) == {IMAGE_NUMBER, EXPERIMENT_INDEX, Z_FLOOR}


def overall_reference(chunks, choice):
    values = []
    for chunk in chunks:
        flags = chunk.columns["flags"]
        wanted = [c.selection.apply(flags) for c in (SUM, PRF)]
        used = chunk.selected & (wanted[choice] | ~(wanted[0] | wanted[1]))
        values.append(chunk.columns[(SUM, PRF)[choice].value][used])
    values = np.concatenate(values)
    return summarise_intensities(np.zeros(values.size, np.int64), values, np.ones(values.size))


def result_json(stat, partial) -> str:
    return json.dumps(to_plain(stat.finalize(partial)), sort_keys=True)


def pieces(chunks, rng):
    for chunk in chunks:
        n = chunk.n_rows
        cuts = sorted(rng.sample(range(1, n), rng.randint(0, 5)))
        bounds = [0, *cuts, n]
        yield [chunk.rows(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("limits", [(None, None), (50, 30)])
def test_any_split_into_chunks_and_tasks_gives_identical_results(monkeypatch, limits):
    """Row pieces merged in any order, files completed in tasks of any size: the same
    finalized result, also when the overall median and the plot sample pass their
    limits (then a sketch and a sample)."""
    exact, sample = limits
    if exact:
        monkeypatch.setattr(sketches, "EXACT_MEDIAN_VALUES", exact)
        monkeypatch.setattr(sketches, "PLOT_SAMPLE", sample)
    chunks = make_chunks()
    stat = statistic(points=True)
    whole = result_json(stat, stat.merge_all(stat.partial(c) for c in chunks))
    rng = random.Random(99)
    for _ in range(6):
        per_file = [
            stat.merge_all(stat.partial(p) for p in rng.sample(ps, len(ps)))
            for ps in pieces(chunks, rng)
        ]
        cuts = sorted(rng.sample(range(1, len(per_file)), rng.randint(0, len(per_file) - 1)))
        bounds = [0, *cuts, len(per_file)]
        tasks = [
            stat.complete(stat.merge_all(per_file[a:b])) for a, b in zip(bounds[:-1], bounds[1:])
        ]
        rng.shuffle(tasks)
        assert all(not t.rows for t in tasks)  # a task returns finished series only
        assert result_json(stat, stat.merge_all(tasks)) == whole
    final = stat.finalize(stat.merge_all(stat.partial(c) for c in chunks))
    for choice in (0, 1):
        got, expected = final.choices[choice], overall_reference(chunks, choice)
        assert got.overall.n == expected.n
        assert got.overall.mean == pytest.approx(expected.mean, rel=1e-12)
        assert got.median_exact == (exact is None)
        assert got.sample_complete == (exact is None)
        if exact is None:
            assert got.overall.median == expected.median
            assert got.sample_x.size == expected.n
        else:
            assert got.sample_x.size == sample
        # the points: every selected row, in file and row order
        assert got.points["intensity"].size == expected.n
        assert np.array_equal(
            np.lexsort((got.points["row"], got.points["file_index"])), np.arange(expected.n)
        )


@pytest.mark.parametrize("limits", [(None, None), (50, 30), (300, 120)])
def test_tasks_pruned_by_the_drivers_hints_give_identical_results(monkeypatch, limits):
    """Tasks that start after others were merged leave out what the merge so far makes
    useless (their medians as sketches once the run has too many values for an exact
    one, their plot points past a full sample's cutoff): the result is the same, and
    the pruned tasks hold less."""
    from dials_refl_stats.pipeline.execute import Hints, MergeStack

    exact, sample = limits
    if exact:
        monkeypatch.setattr(sketches, "EXACT_MEDIAN_VALUES", exact)
        monkeypatch.setattr(sketches, "PLOT_SAMPLE", sample)
    chunks = make_chunks(rows=300)
    stat = statistic()
    whole = result_json(stat, stat.merge_all(stat.partial(c) for c in chunks))
    rng = random.Random(7)
    for _ in range(4):
        tasks = [stat.complete(stat.partial(c)) for c in rng.sample(chunks, len(chunks))]
        stack, hints, kept, full, sketched_early = MergeStack(stat), Hints(stat), 0, 0, 0
        for task in tasks:
            hint = hints()
            pruned = task if hint is None else stat.pruned(task, hint)
            kept += sum(c.sample.order_key.size for c in pruned.finished.choices)
            full += sum(c.sample.order_key.size for c in task.finished.choices)
            pairs = zip(task.finished.choices, pruned.finished.choices)
            sketched_early += sum(a.median.exact and not b.median.exact for a, b in pairs)
            stack.add(pruned)
            hints.add(pruned)
        assert result_json(stat, stack.result()) == whole
        if exact:
            assert kept < full
        else:
            assert kept == full and hints() is None
        assert (sketched_early > 0) == (exact == 300)  # tasks exact, the run not


def test_sketched_median_is_within_one_percent_whatever_the_split(monkeypatch):
    monkeypatch.setattr(sketches, "EXACT_MEDIAN_VALUES", 1000)
    rng = np.random.default_rng(5)
    for values in (rng.lognormal(3, 2, 20001), rng.normal(5, 40, 5000), -rng.lognormal(1, 1, 3001)):
        whole = MedianState.of(values)
        assert not whole.exact
        parts = np.array_split(values, 7)
        split = MedianState.of(parts[0])
        for part in parts[1:]:
            split = MedianState.of(part) + split
        assert split.median() == whole.median()
        assert whole.median() == pytest.approx(np.median(values), rel=0.011, abs=1e-9)
    small = MedianState.of(np.array([3.0, 1.0])) + MedianState.of(np.array([2.0]))
    assert small.exact and small.median() == 2.0
    assert MedianState.of(np.array([np.nan, 1.0])).median() != 1.0  # NaN, as np.median
    assert MedianState.of(np.zeros(0)).median() is None


def test_plot_sample_is_the_same_set_for_any_split(monkeypatch):
    monkeypatch.setattr(sketches, "PLOT_SAMPLE", 100)
    keys = np.arange(5000, dtype=np.int64) * 7919 % 100_003
    values = keys.astype(np.float64)

    def sample(rows):
        return Sample(
            keys[rows], np.zeros(rows.size, np.int64), values[rows], values[rows], int(rows.size)
        ).bounded()

    whole = sample(np.arange(keys.size))
    order = np.random.default_rng(3).permutation(keys.size)
    merged = sample(order[:10])
    for part in np.array_split(order[10:], 13):
        merged = merged + sample(part)
    assert merged.n_seen == keys.size and not merged.complete
    assert sorted(merged.order_key.tolist()) == sorted(whole.order_key.tolist())
    assert whole.order_key.size == 100


def test_corrupt_frames_and_unknown_ids_stop_the_task_naming_the_file():
    chunks = make_chunks()
    stat = statistic()
    bad = chunks[2]
    bad.columns["xyzobs.px.value"][np.flatnonzero(bad.selected)[3], 2] = np.nan
    partial = stat.merge_all(stat.partial(c) for c in chunks)
    with pytest.raises(
        FrameError, match="file_2.refl: 1 selected rows have xyzobs.px.value z = nan"
    ):
        stat.complete(partial)
    chunks = make_chunks()
    info = chunks[1].file
    chunks[1].file = FileInfo(info.index, info.path, info.nrows, {}, {0: 2, 1: 3})
    with pytest.raises(FrameError, match="file_1.refl: rows with id 2 match none"):
        stat.complete(stat.merge_all(stat.partial(c) for c in chunks))
    assert not FrameError("x").skippable


@needs_dials
def test_program_past_the_limits_samples_the_plot_and_sketches_the_median(
    run_inprocess, tmp_path, monkeypatch
):
    """The program with tiny limits: same tables, a sketched overall median within 1%,
    and a plot drawn from the sample."""
    args = [data_path("sim_twoexp/integrated.expt"), data_path("sim_twoexp/integrated.refl")]
    exact_dir, sketch_dir = tmp_path / "exact", tmp_path / "sketch"
    exact_dir.mkdir(), sketch_dir.mkdir()
    exact = run_inprocess("intensity_per_frame", *args, cwd=exact_dir)
    monkeypatch.setattr(sketches, "EXACT_MEDIAN_VALUES", 100)
    monkeypatch.setattr(sketches, "PLOT_SAMPLE", 200)
    sketched = run_inprocess("intensity_per_frame", *args, cwd=sketch_dir)
    assert exact.exit_code == sketched.exit_code == 0
    before, after = (r.document["results"]["intensities"][0] for r in (exact, sketched))
    assert before["overall_median"] == "exact" and after["overall_median"] == "sketch"
    assert after["series"] == before["series"]
    assert after["overall"]["median"] == pytest.approx(before["overall"]["median"], rel=0.011)
    assert (sketch_dir / "intensity_per_frame.png").stat().st_size > 10_000
    assert (
        "overall median from a log-bucket sketch"
        in (sketch_dir / "dials.intensity_per_frame.log").read_text()
    )


def test_plot_points_are_placed_as_plot_positions_says():
    """Each series' points: at their frame, spread by z within it (scans) or evenly
    (stills), in row order; all of them below the sample's size."""
    chunks = make_chunks()
    stat = statistic(points=True)
    final = stat.finalize(stat.merge_all(stat.partial(c) for c in chunks))
    got = final.choices[0]
    assert got.sample_complete
    points = got.points
    for k in range(final.n_series):
        rows = points["series"] == k
        in_sample = got.sample_series == k
        continuous = final.numbering[k] != EXPERIMENT_INDEX
        expected = plot_positions(points["frame"][rows], points["z"][rows], continuous)
        np.testing.assert_array_equal(got.sample_x[in_sample], expected)
        np.testing.assert_array_equal(got.sample_intensity[in_sample], points["intensity"][rows])


def test_without_experiments_every_id_of_a_file_is_a_series_numbered_by_floor_z():
    info = FileInfo(0, "x.refl", 5, {0: "a", 1: "b"}, {})
    columns = {
        "flags": np.full(5, 256),
        "id": np.array([1, 0, 1, -1, 0]),
        "xyzobs.px.value": np.array([[0, 0, z] for z in (0.5, 3.2, -0.5, 7.9, 2.0)]),
        "intensity.sum.value": np.arange(5.0),
        "intensity.sum.variance": np.ones(5),
    }
    selected = np.array([True, True, True, True, False])
    stat = IntensityFramesStatistic([SUM], "xyzobs.px.value", 1, points=True)
    final = stat.finalize(stat.partial(Chunk(info, 0, columns, selected)))
    assert final.numbering.tolist() == [Z_FLOOR] * 3
    assert (final.group_key & 0xFFFFFFFF).tolist() == [0, 1, 2]  # ids -1, 0, 1
    points = final.choices[0].points
    assert points["frame"].tolist() == [0, 3, -1, 7]
    assert points["series"].tolist() == [2, 1, 2, 0]


@pytest.mark.parametrize("case", ["positive", "mixed", "infinite", "wide", "empty", "only_inf"])
def test_distinct_bucket_counts_equal_numpy_unique(case):
    """The sketch's bucket counts by bincount: exactly ``np.unique``'s (sorted, int64)."""
    from dials_refl_stats.analysis.sketches import distinct_counts, value_buckets

    rng = np.random.default_rng(len(case))
    values = {
        "positive": rng.lognormal(5, 2, 50_000),
        "mixed": rng.normal(0, 1e3, 200_000),
        "infinite": np.concatenate([rng.lognormal(3, 1, 5000), [np.inf, -np.inf, np.inf]]),
        "wide": np.array([1e-300, -1e300, 3.0, 0.0]),
        "empty": np.zeros(0),
        "only_inf": np.array([np.inf, -np.inf, -np.inf]),
    }[case]
    buckets = value_buckets(values)
    expected = np.unique(buckets, return_counts=True)
    distinct, counts = distinct_counts(buckets)
    np.testing.assert_array_equal(distinct, expected[0])
    np.testing.assert_array_equal(counts, expected[1])
    assert distinct.dtype == np.int64 and counts.dtype == np.int64


def plain_sketch_buckets(values: np.ndarray) -> np.ndarray:
    """The sketch's buckets as first written: masked copies, sign times (k + offset)."""
    from dials_refl_stats.analysis.per_image import SKETCH_GAMMA, SKETCH_OFFSET

    magnitude = np.abs(values)
    buckets = np.zeros(values.shape, dtype=np.int64)
    nonzero = magnitude > 0
    k = np.ceil(np.log(magnitude[nonzero]) / np.log(SKETCH_GAMMA)).astype(np.int64)
    buckets[nonzero] = np.sign(values[nonzero]).astype(np.int64) * (k + SKETCH_OFFSET)
    return buckets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sketch_buckets_computed_in_place_equal_the_plain_formula(seed):
    """Zeros of both signs, subnormals, powers of two, gamma^j and its neighbours, huge
    and tiny values, infinities: every bucket as the plain formula (and infinities in
    their own buckets)."""
    from dials_refl_stats.analysis.per_image import SKETCH_GAMMA, sketch_buckets
    from dials_refl_stats.analysis.sketches import INFINITE_BUCKET, value_buckets

    rng = np.random.default_rng(seed)
    n = 200_000
    values = rng.lognormal(8, 2, n) * rng.choice([-1.0, 1.0], n)
    values[::97], values[1::89] = 0.0, -0.0
    values[2::7] = rng.standard_normal(values[2::7].size) * 1e-300
    values[3::11] = rng.uniform(-1e307, 1e307, values[3::11].size) * 17
    powers = rng.integers(-1074, 1024, values[5::13].size)
    values[5::13] = np.ldexp(1.0, powers) * rng.choice([-1.0, 1.0], powers.size)
    edges = SKETCH_GAMMA ** rng.integers(-2000, 2000, 1000).astype(np.float64)
    values[6 : 6 + 17 * edges.size : 17] = edges
    values[8 : 8 + 19 * edges.size : 19] = np.nextafter(edges, np.inf)
    values[9 : 9 + 23 * edges.size : 23] = -np.nextafter(edges, 0)
    finite = values.copy()
    values[::1001], values[4::1003] = np.inf, -np.inf

    np.testing.assert_array_equal(sketch_buckets(finite), plain_sketch_buckets(finite))
    expected = np.where(values > 0, INFINITE_BUCKET, -INFINITE_BUCKET)
    ok = np.isfinite(values)
    expected[ok] = plain_sketch_buckets(values[ok])
    np.testing.assert_array_equal(value_buckets(values), expected)
    assert value_buckets(values).dtype == np.int64


@needs_dials
def test_program_on_many_stills_gives_the_same_json_with_and_without_pruning(
    run_inprocess, tmp_path, monkeypatch, forked_workers
):
    """Stills split one per file by DIALS, tiny limits: the tasks' pruned partials (the
    driver's hints, serially and on 2 processes) give the JSON that unpruned ones give."""
    from conftest import split_stills

    from dials_refl_stats.analysis.intensity_frames import IntensityFramesStatistic
    from dials_refl_stats.pipeline.execute import Hints

    folder = split_stills("ssx_CuNiR/strong_5.refl", tmp_path / "stills", copies=8)
    monkeypatch.setattr(sketches, "EXACT_MEDIAN_VALUES", 300)
    monkeypatch.setattr(sketches, "PLOT_SAMPLE", 150)
    pruned_tasks = []
    prune = IntensityFramesStatistic.pruned
    monkeypatch.setattr(
        IntensityFramesStatistic,
        "pruned",
        lambda self, partial, hint: pruned_tasks.append(hint) or prune(self, partial, hint),
    )
    args = [folder, "frame.source=xyzobs", "selection.flags=strong", "output.plot=None"]
    documents = {}
    for case, extra in [("pruned", []), ("pruned_nproc2", ["mp.nproc=2"]), ("whole", [])]:
        if case == "whole":
            monkeypatch.setattr(Hints, "__call__", lambda self: None)
        out = tmp_path / case
        out.mkdir()
        result = run_inprocess("intensity_per_frame", *args, *extra, cwd=out)
        assert result.exit_code == 0, result.stderr
        intensity = result.document["results"]["intensities"][0]
        assert intensity["overall_median"] == "sketch"
        documents[case] = (out / "intensity_per_frame.json").read_bytes()
        if case == "pruned":  # serially: tasks after the first ones were pruned
            assert len(pruned_tasks) >= 2
    strip = [json.loads(d) for d in documents.values()]
    for document in strip:
        document.pop("parameters")  # mp.nproc differs
    assert strip[0] == strip[1] == strip[2]


def test_the_drivers_plot_cutoff_is_the_largest_of_the_smallest_hashes_merged(monkeypatch):
    """Folding samples one by one keeps the PLOT_SAMPLE smallest hashes of all their
    points; the cutoff is their largest once there are that many (exactly what a merge
    of those samples keeps)."""
    monkeypatch.setattr(sketches, "PLOT_SAMPLE", 50)
    rng = np.random.default_rng(11)
    keys, fresh = np.split(rng.permutation(10_000)[:600].astype(np.int64), [400])
    samples = [
        Sample(part, part, part.astype(float), part.astype(float), part.size).bounded()
        for part in np.array_split(keys, [3, 40, 41, 300])
    ]
    kept = None
    for i, sample in enumerate(samples):
        kept = sample.smallest_hashes(kept)
        merged = samples[0]
        for other in samples[1 : i + 1]:
            merged = merged + other
        expected = np.sort(sketches.splitmix64(merged.order_key))
        assert np.array_equal(np.sort(kept), expected)
        cutoff = sketches.sample_cutoff(kept)
        assert cutoff == (int(expected[-1]) if expected.size >= 50 else None)
        if cutoff is not None:  # a pruned later sample merges to the same points
            later = Sample(fresh, fresh, fresh * 1.0, fresh * 1.0, fresh.size)
            pruned = later.pruned(cutoff)
            assert pruned.n_seen == 200 and pruned.order_key.size < 200
            assert set((merged + pruned).order_key) == set((merged + later).order_key)
