"""``merge_counts``: dense counting and sorting give the same exact result."""

from __future__ import annotations

import numpy as np
import pytest

from dials_refl_stats.analysis import statistic


def sorted_only(keys, counts, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(statistic, "_dense_counts", lambda *args: None)
        patch.setattr(statistic, "_ranked_dense_counts", lambda *args: None)
        return statistic.merge_counts(keys, counts)


@pytest.mark.parametrize("seed", range(12))
def test_dense_and_sorted_counts_agree(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 7, 500, 20000]))
    n_keys = int(rng.integers(1, 4))
    keys = tuple(
        rng.integers(-5, int(rng.choice([2, 40, 10**4])), n) + int(rng.choice([0, 3 << 32]))
        for _ in range(n_keys)
    )
    counts = rng.integers(-2, 6, n)
    dense = statistic._dense_counts(keys, counts)
    expected = sorted_only(keys, counts, monkeypatch)
    got = statistic.merge_counts(keys, counts)
    for result in (got, dense) if dense is not None else (got,):
        assert all(np.array_equal(a, b) for a, b in zip(result[0], expected[0]))
        assert np.array_equal(result[1], expected[1])
        assert all(a.dtype == np.int64 for a in result[0]) and result[1].dtype == np.int64


@pytest.mark.parametrize("seed", range(12))
def test_a_never_decreasing_wide_first_key_is_counted_densely_alike(seed, monkeypatch):
    """Run-wide group keys of rows in file order (wide range, few values, sorted) with
    values: numbered in order and counted densely, the same as sorting."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.choice([2, 9, 3000, 30000]))
    groups = np.sort(rng.choice(rng.integers(0, 1 << 45, 50), n)) + int(rng.choice([0, -7]))
    keys = (groups, rng.integers(-3, int(rng.choice([3, 10])), n))  # a box of <= 650 cells
    counts = rng.integers(-2, 6, n)
    ranked = statistic._ranked_dense_counts(keys, counts)
    assert ranked is not None
    expected = sorted_only(keys, counts, monkeypatch)
    for result in (ranked, statistic.merge_counts(keys, counts)):
        assert all(np.array_equal(a, b) for a, b in zip(result[0], expected[0]))
        assert np.array_equal(result[1], expected[1])
        assert all(a.dtype == np.int64 for a in result[0]) and result[1].dtype == np.int64
    shuffled = (rng.permutation(groups), *keys[1:])
    if not np.array_equal(shuffled[0], np.sort(shuffled[0])):
        assert statistic._ranked_dense_counts(shuffled, counts) is None


def test_wide_key_ranges_are_sorted_not_counted_densely():
    keys = (np.array([0, 1 << 40, 5]), np.array([1, 2, 3]))
    assert statistic._dense_counts(keys, np.ones(3, dtype=np.int64)) is None
    (first, second), counts = statistic.merge_counts(keys, np.ones(3))
    assert first.tolist() == [0, 5, 1 << 40] and counts.tolist() == [1, 1, 1]


@pytest.mark.parametrize("seed", range(16))
def test_merging_two_sorted_tables_equals_counting_them_together(seed):
    """Disjoint key ranges (consecutive files) are joined without a sort, in either
    order; overlapping ones are merged; empty tables are the identity."""
    rng = np.random.default_rng(100 + seed)
    n_keys = int(rng.integers(1, 4))

    def table(n, low, high):
        keys = tuple(rng.integers(low, high, n) for _ in range(n_keys))
        return statistic.merge_counts(keys, rng.integers(-2, 6, n))

    span = int(rng.choice([3, 50, 10**6]))
    offset = int(rng.choice([0, span // 2, span, 2 * span]))  # overlapping or disjoint
    first = table(int(rng.choice([0, 1, 40, 3000])), 0, span)
    second = table(int(rng.choice([0, 1, 40, 3000])), offset, offset + span)
    for a, b in ((first, second), (second, first)):
        keys = tuple(np.concatenate([x, y]) for x, y in zip(a[0], b[0]))
        expected = statistic.merge_counts(keys, np.concatenate([a[1], b[1]]))
        got = statistic.merge_count_tables(a, b)
        assert all(np.array_equal(x, y) for x, y in zip(got[0], expected[0]))
        assert np.array_equal(got[1], expected[1])
        assert all(k.dtype == np.int64 for k in got[0]) and got[1].dtype == np.int64


@pytest.mark.parametrize("seed", range(16))
def test_merging_many_sorted_tables_at_once_equals_counting_them_together(seed):
    """Any number of tables in one step, in any order: disjoint ones (tasks' files)
    joined in key order, overlapping ones merged, empty ones the identity."""
    rng = np.random.default_rng(300 + seed)
    n_keys = int(rng.integers(1, 4))
    span = int(rng.choice([3, 50, 10**6]))
    overlapping = seed % 3 == 0
    tables = []
    for i in range(int(rng.integers(1, 12))):
        low = 0 if overlapping else i * span
        n = int(rng.choice([0, 1, 40, 3000]))
        keys = [rng.integers(low, low + span, n) for _ in range(n_keys)]
        tables.append(statistic.merge_counts(tuple(keys), rng.integers(-2, 6, n)))
    rng.shuffle(tables)
    keys = tuple(np.concatenate(k) for k in zip(*(t[0] for t in tables)))
    expected = statistic.merge_counts(keys, np.concatenate([t[1] for t in tables]))
    got = statistic.merge_count_tables(*tables)
    assert len(got[0]) == n_keys
    assert all(np.array_equal(x, y) for x, y in zip(got[0], expected[0]))
    assert np.array_equal(got[1], expected[1])
    assert all(k.dtype == np.int64 for k in got[0]) and got[1].dtype == np.int64


@pytest.mark.parametrize("seed", range(8))
def test_sort_free_grouping_helpers_agree_with_numpy(seed):
    """Sorted value counts (as merges leave them) skip the sort; anything else sorts."""
    from dials_refl_stats.analysis.grouping import lexsort_unless_sorted, unique_inverse

    rng = np.random.default_rng(200 + seed)
    n = int(rng.choice([0, 1, 2, 50, 5000]))
    groups = rng.integers(0, 30, n)
    values = rng.integers(0, 8, n).astype(np.float64)
    if n > 3 and seed % 3 == 0:
        values[rng.integers(0, n)] = np.nan
    (sorted_groups, sorted_values), _ = statistic.merge_counts((groups, values), np.ones(n))
    for g, v in ((groups, values), (sorted_groups, sorted_values.astype(np.float64))):
        order = lexsort_unless_sorted(v, g)
        expected = np.lexsort((v, g))
        if order is None:
            assert np.array_equal(expected, np.arange(g.size))
        else:
            assert np.array_equal(order, expected)
        keys, inverse = unique_inverse(g)
        want_keys, want_inverse = np.unique(g, return_inverse=True)
        assert np.array_equal(keys, want_keys) and np.array_equal(inverse, want_inverse.ravel())
    if n > 1:
        assert lexsort_unless_sorted(sorted_values.astype(float), sorted_groups) is None
