"""The shared pieces, called directly: flags, histograms, mask counts, JSON output."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
from conftest import data_path, needs_dials

from dials_refl_stats.analysis.distribution import Binning, histogram, summarise
from dials_refl_stats.analysis.spot_size import (
    MASK_CODES,
    count_mask_pixels,
    mask_code,
    split_by_group,
)
from dials_refl_stats.output import atomic_path, to_plain, write_json
from dials_refl_stats.selection import FLAG_BITS, FlagSelection, UnknownFlagError


@needs_dials
def test_flag_table_matches_dials():
    from dials.array_family import flex

    dials_flags = {name: int(value) for name, value in flex.reflection_table.flags.names.items()}
    newer = "not_suitable_for_refinement" in dials_flags  # DIALS 3.25+ (ada4cf988)
    for name, bits in FLAG_BITS.items():
        if name == "not_suitable_for_refinement" and not newer:
            assert bits == 1 << 27  # DIALS 3.25's value; a bit this DIALS never sets
            continue
        if name == "bad_for_refinement" and newer:
            assert dials_flags[name] == bits | FLAG_BITS["not_suitable_for_refinement"]
            continue
        assert dials_flags[name] == bits, name


@needs_dials
def test_mask_codes_match_dials():
    from dials.algorithms.shoebox import MaskCode

    assert MASK_CODES == {name: int(v) for name, v in MaskCode.names.items()}


@needs_dials
@pytest.mark.parametrize("names", [("indexed",), ("integrated",), ("strong", "indexed")])
@pytest.mark.parametrize("rule", ["all", "any"])
def test_flag_selection_equals_get_flags(names, rule):
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(data_path("sim_twoexp/integrated.refl")))
    mask = 0
    for name in names:
        mask |= getattr(table.flags, name)
    expected = np.array(table.get_flags(mask, all=rule == "all"))
    selection = FlagSelection(names=names, rule=rule)
    got = selection.apply(table["flags"].as_numpy_array())
    assert np.array_equal(got, expected)


def test_flag_selection_all_and_errors():
    flags = np.array([0, 4, 768, 256], dtype=np.uint64)
    assert FlagSelection(("all",)).apply(flags).all()
    assert FlagSelection(()).selects_everything
    assert FlagSelection(("integrated",)).apply(flags).tolist() == [False, False, True, False]
    assert FlagSelection(("integrated",), "any").apply(flags).tolist() == [False, False, True, True]
    with pytest.raises(UnknownFlagError, match="unknown reflection flag 'nope'"):
        FlagSelection(("nope",))
    with pytest.raises(ValueError):
        FlagSelection(("indexed",), rule="some")


@needs_dials
@pytest.mark.parametrize("data_min,data_max,n_slots", [(0, 1000, 100), (-3.5, 7.25, 13), (0, 1, 1)])
def test_histogram_equals_flex_histogram(data_min, data_max, n_slots):
    from scitbx.array_family import flex

    rng = np.random.default_rng(7)
    width = (data_max - data_min) / n_slots
    edges = data_min + width * np.arange(n_slots + 1)
    values = np.concatenate(
        [
            rng.uniform(data_min - 2 * width, data_max + 2 * width, 5000),
            edges,  # exactly on slot edges
            edges + width * 5e-5,  # inside the flex tolerance
            edges - width * 5e-5,
            edges + width * 2e-4,  # outside it
            edges - width * 2e-4,
            rng.integers(0, 50, 1000).astype(float),
        ]
    )
    ours = histogram(values, Binning(data_min, data_max, n_slots))
    theirs = flex.histogram(flex.double(values), data_min, data_max, n_slots)
    assert ours.counts.tolist() == list(theirs.slots())
    assert ours.below_range + ours.above_range == theirs.n_out_of_slot_range()
    assert ours.centres == pytest.approx(list(theirs.slot_centers()))


def test_histogram_automatic_range_and_empty():
    values = np.array([2.0, 3.0, 3.0, 9.0, np.nan])
    hist = histogram(values, Binning(None, None, 7))
    assert hist.edges[0] == 2.0 and hist.edges[-1] == 9.0
    assert hist.counts.sum() == 4 and hist.not_finite == 1
    empty = histogram(np.array([]), Binning(None, None, 3))
    assert empty.counts.tolist() == [0, 0, 0]
    assert summarise(np.array([])).n == 0
    with pytest.raises(ValueError, match="n_slots"):
        Binning(0, 1, 0)
    with pytest.raises(ValueError, match="greater than"):
        Binning(2, 1, 10)


def test_summary_statistics():
    values = np.arange(1, 101, dtype=float)
    summary = summarise(values)
    assert (summary.n, summary.min, summary.max, summary.median) == (100, 1, 100, 50.5)
    assert summary.percentiles["p25"] == pytest.approx(np.percentile(values, 25))


@needs_dials
@pytest.mark.parametrize("names", [["Foreground"], ["Valid", "Foreground"], ["Background"]])
def test_count_mask_pixels_equals_flex(names):
    from dials.array_family import flex

    table = flex.reflection_table.from_file(str(data_path("sim_small/indexed.refl")))
    shoeboxes = table["shoebox"]
    masks = [sb.mask.as_numpy_array().ravel() for sb in shoeboxes]
    offsets = np.concatenate(([0], np.cumsum([m.size for m in masks])))
    code = mask_code(names)
    ours = count_mask_pixels(np.concatenate(masks), offsets, code)
    assert ours.tolist() == list(shoeboxes.count_mask_values(code))
    assert mask_code(["valid", "background_used"]) == 17


def test_split_by_group_keeps_order():
    values = np.array([10, 11, 12, 13, 14])
    groups = np.array([1, 0, 1, 2, 0])
    parts = split_by_group(values, groups, 4)
    assert [p.tolist() for p in parts] == [[11, 14], [10, 12], [13], []]


def test_to_plain_is_strict_json():
    document = to_plain(
        {
            "a": np.float32(1.23456789),
            "b": np.nan,
            "c": np.arange(3),
            "d": math.inf,
            "e": np.bool_(True),
            "f": (np.int64(4),),
        }
    )
    text = json.dumps(document, allow_nan=False)
    assert json.loads(text) == {
        "a": 1.23457,
        "b": None,
        "c": [0, 1, 2],
        "d": None,
        "e": True,
        "f": [4],
    }


@pytest.mark.parametrize("digits", [1, 4, 6, 15])
def test_float_columns_round_as_each_float_does(digits):
    """The vectorised rounding of float columns gives what formatting each float to
    ``digits`` significant digits and parsing it back gives, bit for bit."""
    from dials_refl_stats.output import _round, rounded_floats

    rng = np.random.default_rng(digits)
    values = np.concatenate(
        [
            rng.normal(size=20000) * 10.0 ** rng.integers(-30, 30, 20000),
            rng.random(20000) * 300,
            rng.integers(-(10**7), 10**7, 20000) / 2.0,  # ties at several digit counts
            [0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, 1.7976931348623157e308],
            [123456.5, 1234565.0, 999999.5, 0.9999995, 1 / 3, 1e22, 1e23, 1e-22, 1e-23],
        ]
    )
    expected = [_round(float(v), digits) for v in values]
    got = rounded_floats(values, digits)
    assert [repr(v) for v in got] == [repr(v) for v in expected]
    # a list of floats and None (a per-group column) goes the same way
    assert to_plain([1 / 3, None, math.nan, 2.0]) == [0.333333, None, None, 2.0]
    assert to_plain(np.array([[0.5, 1 / 3]])) == [[0.5, 0.333333]]  # 2-D stays nested


def test_atomic_writes_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            with open(temporary, "w") as handle:
                handle.write("{partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


# --- the statistic contract and the shared pipeline, called directly ---------------------------


def file_info(relative: str, index: int = 0):
    from dials_refl_stats.analysis.statistic import FileInfo
    from dials_refl_stats.reflections import open_reflection_file

    path = str(data_path(relative))
    source = open_reflection_file(path)
    return FileInfo(index, path, source.nrows, dict(source.identifiers))


def spot_size_statistic(data_max=None):
    from dials_refl_stats.analysis.spot_size import SpotSizeStatistic

    return SpotSizeStatistic(mask_code(["Foreground"]), "auto", Binning(0, data_max, 20))


def final_as_plain(final) -> dict:
    """A finalized spot-size result as plain data, for comparisons."""
    return to_plain(
        {
            "groups": final.groups,
            "overall": final.result.overall.as_dict(),
            "per_group": [d.as_dict() for d in final.result.groups],
            "n_without_pixels": final.n_without_pixels,
            "sources": sorted(final.sources),
        }
    )


@needs_dials
def test_spot_size_partials_merge_to_the_same_result_in_any_split_and_order():
    """partial/merge/finalize: any row split, merged in any order, gives one result, and
    the sizes are DIALS's count_mask_values over the indexed rows."""
    from dials.algorithms.shoebox import MaskCode
    from dials.array_family import flex

    from dials_refl_stats.pipeline.execute import SelectionPlan, read_chunk

    statistic = spot_size_statistic()
    plan = SelectionPlan(FlagSelection(("indexed",)))
    chunk, record = read_chunk(file_info("sim_twoexp/indexed.refl"), statistic, plan, "fast")
    whole = statistic.finalize(statistic.partial(chunk))

    n = chunk.n_rows
    parts = [statistic.partial(chunk.rows(a, b)) for a, b in [(0, 7), (7, n // 2), (n // 2, n)]]
    first, second, third = parts
    orders = [
        statistic.merge(first, statistic.merge(second, third)),
        statistic.merge(statistic.merge(third, first), second),
        statistic.merge_all([second, None, third, first]),
        statistic.merge(statistic.empty(), statistic.merge_all(parts)),
    ]
    expected = final_as_plain(whole)
    for merged in orders:
        assert final_as_plain(statistic.finalize(merged)) == expected

    table = flex.reflection_table.from_file(chunk.file.path)
    table = table.select(table.get_flags(table.flags.indexed))
    sizes = np.array(table["shoebox"].count_mask_values(MaskCode.Foreground))
    ids = np.array(table["id"])
    assert record.n_selected == table.size()
    assert whole.result.overall.summary.n == sizes.size
    assert whole.result.overall.summary.median == pytest.approx(np.median(sizes))
    assert whole.result.overall.histogram.edges[-1] == sizes.max()  # data_max=None: Auto
    from dials_refl_stats.analysis.statistic import split_group_key

    assert [split_group_key(k) for k in whole.groups] == [(0, 0), (0, 1)]
    for key, distribution in zip(whole.groups, whole.result.groups):
        assert distribution.summary.n == (ids == split_group_key(key)[1]).sum()


@needs_dials
def test_selected_rows_come_back_in_row_order_from_any_split():
    from dials.array_family import flex

    from dials_refl_stats.analysis.rows import SelectedRows
    from dials_refl_stats.pipeline.execute import SelectionPlan, read_chunk

    statistic = SelectedRows(("intensity.sum.value",))
    plan = SelectionPlan(FlagSelection(("integrated_sum",)))
    chunk, _ = read_chunk(file_info("sim_twoexp/integrated.refl"), statistic, plan, "fast")
    n = chunk.n_rows
    parts = [statistic.partial(chunk.rows(a, b)) for a, b in [(n // 3, n), (0, n // 3)]]
    (rows,) = statistic.finalize(statistic.merge_all(parts)).values()

    table = flex.reflection_table.from_file(chunk.file.path)
    selected = table.get_flags(table.flags.integrated_sum)
    assert rows.rows.tolist() == list(selected.iselection())
    np.testing.assert_array_equal(
        rows.columns["intensity.sum.value"],
        table["intensity.sum.value"].select(selected).as_numpy_array(),
    )
    assert rows.n_with(FLAG_BITS["integrated_sum"]) == selected.count(True)
    assert rows.n_with(FLAG_BITS["integrated_prf"]) == (
        table.get_flags(table.flags.integrated_prf).count(True)
    )


def test_selection_plan_fallback_rule():
    from dials_refl_stats.pipeline.execute import SelectionPlan

    indexed, strong = FLAG_BITS["indexed"], FLAG_BITS["strong"]
    plan = SelectionPlan(FlagSelection(("indexed",)), fallback=True)
    used, reason = plan.for_file(np.array([indexed | strong, strong, 0]))
    assert used.names == ("indexed",) and reason is None
    used, reason = plan.for_file(np.array([strong, 0, strong | 2]))
    assert used.names == ("strong",) and "using 'strong'" in reason
    used, reason = plan.for_file(np.array([0, 2, 1]))
    assert used.selects_everything and "using every row" in reason
    used, reason = plan.for_file(np.zeros(0, dtype=np.int64))
    assert used.names == ("indexed",) and reason is None  # empty file: nothing to fall back for
    off = SelectionPlan(FlagSelection(("indexed",)), fallback=False)
    assert off.for_file(np.array([strong]))[0].names == ("indexed",)


def test_reduce_files_serial_and_processes_agree(tmp_path):
    """Several files in batches on two processes: the same partial as in this process."""
    from dials_refl_stats.pipeline.engines import process_engine
    from dials_refl_stats.pipeline.execute import SelectionPlan, reduce_files

    names = ["sim_small/indexed.refl", "sim_twoexp/indexed.refl", "ssx_CuNiR/indexed.refl"]
    files = [file_info(name, index) for index, name in enumerate(names)]
    sizes = [1] * len(files)  # one file per batch
    statistic = spot_size_statistic(data_max=1000)
    plan = SelectionPlan(FlagSelection(("indexed",)), fallback=True)
    serial = reduce_files(statistic, plan, files, sizes)
    parallel = reduce_files(
        statistic,
        plan,
        files,
        sizes,
        engine=lambda *args: process_engine(*args, n_workers=2),
        n_workers=2,
    )
    assert [r.index for r in parallel.records] == [0, 1, 2]
    assert parallel.records == serial.records
    assert final_as_plain(statistic.finalize(parallel.partial)) == final_as_plain(
        statistic.finalize(serial.partial)
    )
    from dials_refl_stats.analysis.statistic import split_group_key

    groups = statistic.finalize(serial.partial).groups
    assert sorted({split_group_key(k)[0] for k in groups}) == [0, 1, 2]


def _process_reduce(statistic, plan, files, sizes, n_workers: int = 2):
    from dials_refl_stats.pipeline.engines import process_engine
    from dials_refl_stats.pipeline.execute import reduce_files

    return reduce_files(
        statistic,
        plan,
        files,
        sizes,
        engine=lambda *args: process_engine(*args, n_workers=n_workers),
        n_workers=n_workers,
    )


@pytest.mark.parametrize("flush_files,n_workers", [(1, 2), (2, 3), (10**9, 2), (10**9, 4)])
def test_local_workers_send_what_they_hold(monkeypatch, forked_workers, flush_files, n_workers):
    """Each worker merges its tasks' partials and sends them every ``FLUSH_FILES``
    files and once at the end (one last task per worker, more workers than batches
    too): the same result as in this process, and at most one partial per flush."""
    from dials_refl_stats.pipeline import engines
    from dials_refl_stats.pipeline.execute import SelectionPlan, reduce_files

    monkeypatch.setattr(engines, "FLUSH_FILES", flush_files)  # the forked workers see it
    names = ["sim_small/indexed.refl", "sim_twoexp/indexed.refl", "ssx_CuNiR/indexed.refl"]
    files = [file_info(name, index) for index, name in enumerate(names * 2)]
    sizes = [1] * len(files)  # one file per batch
    statistic = spot_size_statistic(data_max=1000)
    plan = SelectionPlan(FlagSelection(("indexed",)), fallback=True)
    serial = reduce_files(statistic, plan, files, sizes)
    yielded = []
    engine = engines.process_engine
    monkeypatch.setattr(
        engines,
        "process_engine",
        lambda *args, **kw: (yielded.append(r) or r for r in engine(*args, **kw)),
    )
    parallel = _process_reduce(statistic, plan, files, sizes, n_workers)
    assert parallel.records == serial.records
    assert final_as_plain(statistic.finalize(parallel.partial)) == final_as_plain(
        statistic.finalize(serial.partial)
    )
    with_partial = [r for r in yielded if r.partial is not None]
    assert len(yielded) == len(files) + n_workers  # the batches, then one per worker
    if flush_files == 1:  # every batch sends its own; the last tasks nothing more
        assert len(with_partial) == len(files)
    else:
        assert 1 <= len(with_partial) <= n_workers + len(files) // flush_files


class KillingStatistic:
    """Spot sizes, except that reading file 1 kills the worker process."""

    def __init__(self):
        self.inner = spot_size_statistic()

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, state):
        self.__dict__.update(state)

    def partial(self, chunk):
        if any(f.index == 1 for f in (chunk.files or (chunk.file,))):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.partial(chunk)


def test_a_killed_local_worker_ends_the_run_with_one_line():
    from dials_refl_stats.pipeline.engines import WorkerError
    from dials_refl_stats.pipeline.execute import SelectionPlan

    files = [file_info("sim_small/indexed.refl", index) for index in range(4)]
    plan = SelectionPlan(FlagSelection(("indexed",)))
    with pytest.raises(WorkerError, match="worker process ended during the run"):
        _process_reduce(KillingStatistic(), plan, files, [1] * len(files))


def test_reduce_files_skips_unreadable_files_when_asked(tmp_path):
    from dials_refl_stats.analysis.statistic import FileInfo
    from dials_refl_stats.pipeline.execute import SelectionPlan, reduce_files
    from dials_refl_stats.reflections import ReflectionLoadError

    good = file_info("sim_small/indexed.refl")
    data = data_path("sim_small/indexed.refl").read_bytes()
    truncated = tmp_path / "truncated.refl"
    truncated.write_bytes(data[: len(data) // 2])
    bad = FileInfo(1, str(truncated), good.nrows)
    statistic = spot_size_statistic()
    plan = SelectionPlan(FlagSelection(("indexed",)))
    with pytest.raises(ReflectionLoadError, match="truncated.refl"):
        reduce_files(statistic, plan, [good, bad], [1, 1])
    reduced = reduce_files(statistic, plan, [good, bad], [1, 1], skip_errors=True)
    assert [r.skipped is None for r in reduced.records] == [True, False]
    assert "truncated.refl" in reduced.records[1].skipped
    alone = reduce_files(statistic, plan, [good], [1])
    assert final_as_plain(statistic.finalize(reduced.partial)) == final_as_plain(
        statistic.finalize(alone.partial)
    )


def test_output_files_are_committed_together_or_not_at_all(tmp_path):
    from dials_refl_stats.pipeline.errors import Sorry
    from dials_refl_stats.pipeline.outputs import OutputFiles

    targets = {"json": str(tmp_path / "a.json"), "plot": str(tmp_path / "a.png"), "log": None}
    outputs = OutputFiles(targets)
    for name in ("json", "plot"):
        with open(outputs.temporary(name), "w") as handle:
            handle.write(name)
    assert not (tmp_path / "a.json").exists()  # nothing in place before the commit
    assert len(list(tmp_path.glob(".a.*"))) == 2
    outputs.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.png"]
    assert (tmp_path / "a.json").read_text() == "json"

    failed = OutputFiles(targets)
    with open(failed.temporary("json"), "w") as handle:
        handle.write("new")
    failed.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.png"]
    assert (tmp_path / "a.json").read_text() == "json"

    (tmp_path / "input.refl").write_text("x")
    for bad, message in [
        ({"json": str(tmp_path / "missing" / "a.json")}, "does not exist"),
        ({"json": str(tmp_path)}, "is a directory"),
        ({"json": str(tmp_path / "input.refl")}, "would overwrite an input file"),
        ({"json": str(tmp_path / "x"), "plot": str(tmp_path / "x")}, "the same file as"),
        ({"plot": str(tmp_path / "a.gif")}, "unsupported plot format"),
    ]:
        with pytest.raises(Sorry, match=message):
            OutputFiles(bad, [str(tmp_path / "input.refl")])
