"""The shared pieces, called directly: flags, histograms, mask counts, JSON output."""

from __future__ import annotations

import json
import math

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
    for name, bits in FLAG_BITS.items():
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
