"""The fast ``resolution_shells`` and ``median_or_none`` give, to the bit, what the plain
row-by-row code they replaced gave (a copy of it is kept here as the reference)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dials_refl_stats.analysis import median as median_module
from dials_refl_stats.analysis import resolution_shells as shells_module
from dials_refl_stats.analysis.median import median_or_none
from dials_refl_stats.analysis.resolution_shells import ResolutionShells, resolution_shells

# --- the reference: the code before the fast paths, unchanged -----------------------

REFERENCE_BLOCK = 1 << 20


def _reference_blocks(n: int) -> list[slice]:
    return [slice(start, start + REFERENCE_BLOCK) for start in range(0, n, REFERENCE_BLOCK)]


def _reference_usable_inv_d2(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        all_inv_d2 = 1.0 / d**2
    usable = np.isfinite(d) & (d > 0) & np.isfinite(all_inv_d2)
    return all_inv_d2[usable], usable


def reference_shells(
    d: np.ndarray,
    strong: np.ndarray,
    n_shells: int = 10,
    d_min: float | None = None,
    d_max: float | None = None,
) -> ResolutionShells:
    d = np.asarray(d, dtype=np.float64)
    strong = np.asarray(strong, dtype=bool)
    low = 1.0 / d_max**2 if d_max is not None else None
    high = 1.0 / d_min**2 if d_min is not None else None
    n_without_d = 0
    if low is None or high is None:
        data_low, data_high = math.inf, -math.inf
        for rows in _reference_blocks(d.size):
            inv_d2, _usable = _reference_usable_inv_d2(d[rows])
            n_without_d += _usable.size - inv_d2.size
            if inv_d2.size:
                data_low = min(data_low, float(inv_d2.min()))
                data_high = max(data_high, float(inv_d2.max()))
        if data_low <= data_high:
            low = data_low if low is None else low
            high = data_high if high is None else high
    zeros = np.zeros(n_shells, dtype=np.int64)
    if low is None or high is None:
        return ResolutionShells(n_shells, None, zeros, zeros.copy(), n_without_d, 0, 0)
    if not high > low:
        high = low + max(abs(low) * 1e-6, 1e-12)
    edges = np.linspace(low, high, n_shells + 1)
    return ResolutionShells(n_shells, edges, *reference_counts(d, strong, edges))


def reference_counts(d: np.ndarray, strong: np.ndarray, edges: np.ndarray) -> tuple:
    n_shells = edges.size - 1
    n_all = np.zeros(n_shells, dtype=np.int64)
    n_strong = np.zeros(n_shells, dtype=np.int64)
    n_without_d = n_outside = n_strong_outside = 0
    for rows in _reference_blocks(d.size):
        inv_d2, usable = _reference_usable_inv_d2(d[rows])
        strong_usable = strong[rows][usable]
        inside = (inv_d2 >= edges[0]) & (inv_d2 <= edges[-1])
        shell = np.clip(np.searchsorted(edges, inv_d2[inside], side="right") - 1, 0, n_shells - 1)
        n_all += np.bincount(shell, minlength=n_shells)
        n_strong += np.bincount(shell[strong_usable[inside]], minlength=n_shells)
        n_without_d += int(usable.size - inv_d2.size)
        n_outside += int((~inside).sum())
        n_strong_outside += int((strong_usable & ~inside).sum())
    return n_all, n_strong, n_without_d, n_outside, n_strong_outside


def reference_median(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values, overwrite_input=True)) if values.size else None


# --- comparisons --------------------------------------------------------------------


def assert_same_shells(new: ResolutionShells, old: ResolutionShells) -> None:
    assert new.n_shells == old.n_shells
    if old.inv_d2_edges is None:
        assert new.inv_d2_edges is None
    else:  # the same bits: equal and the same type
        assert new.inv_d2_edges.dtype == old.inv_d2_edges.dtype == np.float64
        assert np.array_equal(new.inv_d2_edges.view(np.int64), old.inv_d2_edges.view(np.int64))
    for name in ("n_all", "n_strong"):
        new_counts, old_counts = getattr(new, name), getattr(old, name)
        assert new_counts.dtype == old_counts.dtype == np.int64, name
        assert np.array_equal(new_counts, old_counts), (name, new_counts, old_counts)
    for name in ("n_without_d", "n_outside", "n_strong_outside"):
        new_count, old_count = getattr(new, name), getattr(old, name)
        assert type(new_count) is int and new_count == old_count, (name, new_count, old_count)
    assert new.as_dict().keys() == old.as_dict().keys()


def check_shells(d, strong, n_shells=10, d_min=None, d_max=None) -> ResolutionShells:
    """The fast shells (no warning) equal the reference's; the inputs are left as they
    were."""
    d_before, strong_before = np.array(d, copy=True), np.array(strong, copy=True)
    old = reference_shells(d, strong, n_shells, d_min, d_max)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = resolution_shells(d, strong, n_shells, d_min=d_min, d_max=d_max)
    assert_same_shells(new, old)
    np.testing.assert_array_equal(np.asarray(d), d_before)
    np.testing.assert_array_equal(np.asarray(strong), strong_before)
    return new


def same_float(a: float | None, b: float | None) -> bool:
    """Both ``None`` or the same float to the bit (-0.0 is not 0.0)."""
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) is float and np.float64(a).view(np.int64) == np.float64(b).view(
        np.int64
    )


def check_median(values) -> float | None:
    """The fast median is the reference's float, with no other warning; ``values`` is
    left as it was."""
    values = np.asarray(values)
    before = values.copy()
    with warnings.catch_warnings(record=True) as old_warnings:
        warnings.simplefilter("always")
        old = reference_median(values)
    with warnings.catch_warnings(record=True) as new_warnings:
        warnings.simplefilter("always")
        new = median_or_none(values)
    assert same_float(new, old), (new, old)
    old_messages = {str(w.message) for w in old_warnings}
    assert {str(w.message) for w in new_warnings} <= old_messages
    np.testing.assert_array_equal(values, before)  # not reordered
    return new


def log_uniform(rng: np.random.Generator, size: int, low=0.5, high=50.0) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


SPECIAL = np.array(
    [
        np.nan,
        np.inf,
        -np.inf,
        0.0,
        -0.0,
        -3.0,
        -1e-200,
        1e-160,
        1e-155,
        5e-155,
        5e-324,
        1e-200,
        1e200,
        np.finfo(np.float64).max,
        np.finfo(np.float64).tiny,
    ]
)

BOUNDS = [(None, None), (2.0, None), (None, 20.0), (1.5, 30.0), (60.0, 100.0), (0.1, 0.2)]


@pytest.fixture(autouse=True)
def fast_paths_for_few_rows(monkeypatch):
    """The fast paths for the few thousand rows of these tests (the module's thresholds
    where a test says so)."""
    monkeypatch.setattr(shells_module, "SHELL_TABLE_MIN_ROWS", 0)


@pytest.fixture(params=["default", "small"])
def blocks(request, monkeypatch):
    """The module's block size as it is, and tiny (many blocks, a last short one)."""
    if request.param == "small":
        monkeypatch.setattr(shells_module, "SHELL_BLOCK", 7)
    return request.param


def d_near_edges(edges: np.ndarray, ulps: int = 3) -> np.ndarray:
    """``1/sqrt(v)`` for each edge v and its neighbouring doubles, and the d up to
    ``ulps`` doubles either side of those."""
    targets = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, 0.0)])
    with np.errstate(divide="ignore"):
        centres = 1.0 / np.sqrt(targets[targets > 0])
    near, down, up = [centres], centres, centres
    for _ in range(ulps):
        down, up = np.nextafter(down, 0.0), np.nextafter(up, np.inf)
        near += [down, up]
    return np.concatenate(near)


def strong_masks(rng: np.random.Generator, size: int) -> list[np.ndarray]:
    return [rng.random(size) < 0.3, np.ones(size, bool), np.zeros(size, bool)]


# --- resolution shells --------------------------------------------------------------


@pytest.mark.parametrize("n_shells", [1, 2, 10, 37])
@pytest.mark.parametrize("bounds", BOUNDS)
def test_random_d(blocks, n_shells, bounds):
    rng = np.random.default_rng(1000 + n_shells)
    d = log_uniform(rng, 3001)
    for strong in strong_masks(rng, d.size):
        check_shells(d, strong, n_shells, *bounds)


@pytest.mark.parametrize("n_shells", [1, 2, 10, 37])
@pytest.mark.parametrize("bounds", BOUNDS)
def test_unusable_d(blocks, n_shells, bounds):
    """NaN, +-inf, +-0, negative, d whose 1/d^2 overflows (1e-160, 1e-155, 5e-155),
    huge d (1/d^2 == 0), mixed into the rows at random places."""
    rng = np.random.default_rng(2000 + n_shells)
    d = log_uniform(rng, 2503)
    where = rng.integers(0, d.size, 300)
    d[where] = rng.choice(SPECIAL, where.size)
    d[:3] = [1e-160, 1e-155, 5e-155]
    for strong in strong_masks(rng, d.size):
        shells = check_shells(d, strong, n_shells, *bounds)
    assert shells.n_without_d > 0


@pytest.mark.parametrize("n_shells", [1, 10, 37])
def test_only_special_values(blocks, n_shells):
    rng = np.random.default_rng(3000 + n_shells)
    for values in (SPECIAL, SPECIAL[:7], SPECIAL[[0, 7, 8, 9, 10]], np.array([1e200, np.nan])):
        for _ in range(5):
            d = rng.permutation(values)
            for strong in strong_masks(rng, d.size):
                for bounds in BOUNDS:
                    check_shells(d, strong, n_shells, *bounds)


def test_no_usable_d_at_all(blocks):
    for d in (np.zeros(0), np.array([np.nan] * 9), np.array([1e-160, -1.0, 0.0, np.inf])):
        for bounds in BOUNDS:
            shells = check_shells(d, np.ones(d.size, bool), 4, *bounds)
            if bounds[0] is None or bounds[1] is None:
                assert shells.inv_d2_edges is None
            assert shells.n_without_d == d.size


def test_edge_cases_of_size_and_equal_d(blocks):
    rng = np.random.default_rng(4)
    for n_shells in (1, 2, 10, 37):
        for bounds in BOUNDS:
            check_shells(np.array([3.0]), np.array([True]), n_shells, *bounds)
            check_shells(np.array([3.0]), np.array([False]), n_shells, *bounds)
            check_shells(np.zeros(0), np.zeros(0, bool), n_shells, *bounds)
            for value in (2.5, 1e-150, 1e150, 1e200, np.finfo(np.float64).max, 7.5e-155):
                d = np.full(1001, value)  # one value: the degenerate range
                d[::17] = np.nan
                check_shells(d, rng.random(d.size) < 0.5, n_shells, *bounds)


def test_d_whose_inv_d2_lands_on_and_next_to_the_edges(blocks):
    """d built from the edges: 1/sqrt(edge) and its neighbours a few ulps away, and the
    same from the neighbouring doubles of each edge, so that many 1/d^2 are an edge."""
    rng = np.random.default_rng(5)
    hits = 0
    for n_shells in (1, 2, 10, 37):
        for bounds in BOUNDS:
            base = log_uniform(rng, 501)
            edges = reference_shells(base, np.zeros(base.size, bool), n_shells, *bounds)
            edges = edges.inv_d2_edges
            extra = d_near_edges(edges)
            with np.errstate(over="ignore", divide="ignore"):
                hits += int(np.isin(1.0 / extra**2, edges).sum())
            if None in bounds:  # keep the data's range: no d beyond the data's
                inner = (extra > base.min()) & (extra < base.max())
                extra = extra[inner]
            d = rng.permutation(np.concatenate([base, extra, extra]))
            for strong in strong_masks(rng, d.size):
                shells = check_shells(d, strong, n_shells, *bounds)
            assert np.array_equal(shells.inv_d2_edges, edges)
    assert hits > 100  # the construction does put 1/d^2 on the edges


def test_binning_on_given_edges(blocks):
    """The table binning itself against the reference for any sorted edges: equal ones,
    a zero edge, edges in all binades, and every d near each edge."""
    rng = np.random.default_rng(6)
    edge_sets = [
        np.linspace(0.0, 4.0, 11),
        np.array([0.0, 0.0, 1.0, 1.0, 1.0, 2.0]),
        np.array([0.5, 0.5]),
        np.array([1e-300, 1e-100, 1.0, 1e100, 1e300]),
        np.array([0.01, 0.25, np.nextafter(0.25, 1.0), 0.26, 4.0]),
        np.sort(rng.uniform(0.0, 4.0, 38)),
    ]
    for edges in edge_sets:
        d = np.concatenate([d_near_edges(edges), log_uniform(rng, 500, 1e-3, 1e3), SPECIAL])
        d = rng.permutation(d)
        for strong in strong_masks(rng, d.size):
            expected = reference_counts(d, strong, edges)
            for all_inside in (False,):
                counts = shells_module._shell_counts(d, strong, edges, all_inside)
                assert counts is not None
                for got, want in zip(counts, expected):
                    assert np.array_equal(got, want), (edges, got, want)
            counts = shells_module._shell_counts_by_rows(d, strong, edges)
            for got, want in zip(counts, expected):
                assert np.array_equal(got, want)


def test_edges_the_table_leaves_to_the_rows():
    """Unsorted, non-finite or negative edges: the row-by-row counts."""
    d = np.array([1.0, 2.0, np.nan])
    strong = np.ones(3, bool)
    for edges in (np.array([1.0, 0.5]), np.array([0.0, np.inf]), np.array([-1.0, 1.0])):
        assert shells_module._shell_counts(d, strong, edges, False) is None


@pytest.mark.parametrize("table_bits", [0, 1, 3, 8])
def test_coarse_tables_look_at_many_rows(monkeypatch, blocks, table_bits):
    """Few table cells: most rows are in a cell holding an edge and are binned one by one
    (in batches of at most a block)."""
    monkeypatch.setattr(shells_module, "SHELL_TABLE_BITS", table_bits)
    rng = np.random.default_rng(7 + table_bits)
    d = log_uniform(rng, 2001, 0.3, 80.0)
    d[rng.integers(0, d.size, 100)] = rng.choice(SPECIAL, 100)
    for n_shells in (1, 10, 37):
        for bounds in BOUNDS:
            check_shells(d, rng.random(d.size) < 0.3, n_shells, *bounds)


def test_bounds_from_the_user_that_overflow_or_underflow():
    """A tiny d_min (1/d_min^2 infinite): the same edges and counts (or the same error)
    as before."""
    rng = np.random.default_rng(8)
    d = log_uniform(rng, 1000)
    strong = rng.random(d.size) < 0.3
    with np.errstate(invalid="ignore"):
        check_shells(d, strong, 5, d_min=1e-160)
        check_shells(d, strong, 5, d_min=1e-160, d_max=2.0)
    for bounds in ((1e-170, None), (None, 1e200)):
        with pytest.raises((ZeroDivisionError, OverflowError)) as old:
            reference_shells(d, strong, 5, *bounds)
        with pytest.raises(old.type):
            resolution_shells(d, strong, 5, *bounds)


def test_other_shapes_and_dtypes_behave_as_before():
    rng = np.random.default_rng(9)
    d = log_uniform(rng, 600)
    strong = rng.random(d.size) < 0.3
    check_shells(d.astype(np.float32), strong, 7)
    check_shells(d[::3], strong[::3], 7)  # strided views
    check_shells(d.astype(">f8"), strong, 7)
    check_shells(list(d[:50]), list(strong[:50]), 7)
    check_shells(d.reshape(20, 30), strong.reshape(20, 30), 7)
    check_shells(d.reshape(20, 30), strong.reshape(20, 30), 7, 2.0, 30.0)
    check_shells(np.full((4, 5), 2.0), np.ones((4, 5), bool), 7)
    check_shells(np.full((4, 5), np.nan), np.ones((4, 5), bool), 7)
    for bad in (strong[:10], strong[:1]):  # a mask of another length: the same error
        with pytest.raises(IndexError):
            reference_shells(d, bad, 7)
        with pytest.raises(IndexError):
            resolution_shells(d, bad, 7)


def test_last_d_bits_from_any_guess():
    """The largest d with the condition, whatever the start: the condition holds at it
    and not at the next double."""
    rng = np.random.default_rng(12)
    inf_bits = shells_module._INF_BITS
    values = np.r_[0.0, 5e-324, 1e-310, 1e-200, rng.uniform(0, 10, 20), 1e200, 1.7e308]
    guesses = [1.0, 0.0, -1.0, np.nan, np.inf, 1e-300, 1e300, 5e-324]
    for value in values:
        conditions = (lambda v: v >= value, lambda v: v > value, lambda v: ~np.isfinite(v))
        for condition in conditions:
            with np.errstate(divide="ignore"):
                near = float(1.0 / np.sqrt(value))
            found = {shells_module._last_d_bits(condition, g) for g in guesses + [near]}
            assert len(found) == 1
            (bits,) = found
            assert condition(shells_module._inv_d2_of_bits(bits))[0]
            if bits < inf_bits:
                assert not condition(shells_module._inv_d2_of_bits(bits + 1))[0]


def test_smallest_usable_d_and_the_data_range():
    t = shells_module._smallest_usable_d()
    with np.errstate(over="ignore", divide="ignore"):
        assert np.isfinite(1.0 / np.array([t]) ** 2).all()
        assert not np.isfinite(1.0 / np.array([np.nextafter(t, 0.0)]) ** 2).any()
    rng = np.random.default_rng(10)
    for d in (log_uniform(rng, 1000), np.r_[SPECIAL, t, np.nextafter(t, 0.0), 3.0]):
        inv_d2, _ = _reference_usable_inv_d2(d)
        low, high = shells_module._usable_inv_d2_range(d)
        assert same_float(low, float(inv_d2.min())) and same_float(high, float(inv_d2.max()))


@pytest.mark.parametrize("size", [100, 16383, 16384, 16385, 70_000])
def test_sizes_around_the_thresholds(monkeypatch, size):
    """The module's own thresholds (row by row for few rows)."""
    monkeypatch.setattr(shells_module, "SHELL_TABLE_MIN_ROWS", 1 << 14)
    rng = np.random.default_rng(size)
    d = log_uniform(rng, size)
    d[rng.integers(0, size, 10)] = np.nan
    strong = rng.random(size) < 0.3
    for bounds in BOUNDS:
        check_shells(d, strong, 10, *bounds)
    check_median(d)
    check_median(d[strong])


def test_two_million_rows(monkeypatch):
    monkeypatch.setattr(shells_module, "SHELL_TABLE_MIN_ROWS", 1 << 14)
    rng = np.random.default_rng(11)
    d = log_uniform(rng, 2_000_000)
    d[rng.integers(0, d.size, 1000)] = rng.choice(SPECIAL, 1000)
    strong = rng.random(d.size) < 0.3
    for n_shells, bounds in ((10, (None, None)), (20, (None, None)), (20, (1.5, 30.0))):
        check_shells(d, strong, n_shells, *bounds)
    check_median(d)
    check_median(d[strong])
    check_median(d[np.isfinite(d)])


# --- medians ------------------------------------------------------------------------


@pytest.fixture(params=["default", "window_always"])
def median_paths(request, monkeypatch):
    """The module's thresholds, and the window taken for every size (with a small
    sample, and blocks of a few values)."""
    if request.param == "window_always":
        monkeypatch.setattr(median_module, "MEDIAN_WINDOW_MIN", 1)
        monkeypatch.setattr(median_module, "MEDIAN_SAMPLE", 200)
        monkeypatch.setattr(median_module, "MEDIAN_BLOCK", 64)
    return request.param


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 63, 64, 65, 1000, 1001, 4096, 4097])
def test_median_sizes_odd_and_even(median_paths, size):
    rng = np.random.default_rng(20 + size)
    values = log_uniform(rng, size)
    check_median(values)
    check_median(-values)
    if size:
        values[rng.integers(0, size, max(size // 10, 1))] = np.nan
        check_median(values)


def test_median_with_non_finite_values(median_paths):
    rng = np.random.default_rng(21)
    for size in (999, 1000, 5000):
        values = rng.normal(3.0, 2.0, size)
        where = rng.integers(0, size, size // 5)
        values[where] = rng.choice([np.nan, np.inf, -np.inf], where.size)
        check_median(values)
    check_median(np.array([np.nan] * 100))
    check_median(np.array([np.inf, -np.inf, np.nan] * 50))
    check_median(np.r_[np.full(500, -np.inf), np.arange(10.0), np.full(50, np.inf)])


def test_median_zeros_keep_their_sign(median_paths):
    """The middle values are zeros of both signs: the very float np.median returns."""
    rng = np.random.default_rng(22)
    for size in (1000, 1001, 4000):
        for fraction in (0.0, 0.3, 0.5, 1.0):
            values = np.where(rng.random(size) < fraction, -0.0, 0.0)
            values[: size // 3] = rng.uniform(-5, -1, size // 3)
            values[-(size // 3) :] = rng.uniform(1, 5, size // 3)
            check_median(rng.permutation(values))
    check_median(np.array([-0.0] * 100))
    check_median(np.array([-1.0, 0.0] * 100))  # the mean of -1.0 and 0.0
    check_median(np.array([-0.0, 1.0] * 100))


def test_median_duplicates_extremes_and_overflowing_means(median_paths):
    rng = np.random.default_rng(23)
    big = np.finfo(np.float64).max
    check_median(np.full(3000, 2.5))
    check_median(rng.integers(0, 4, 3001).astype(np.float64))
    check_median(np.array([big, big] * 600))  # big + big is inf: so is the median
    check_median(np.array([-big, -big, big] * 600))
    check_median(np.r_[np.full(600, 5e-324), np.full(600, 1e-323)])
    check_median(rng.choice([1e-300, 1e300, -1e300], 2000))


def test_median_with_a_misleading_sample(monkeypatch):
    """Every sampled value is far from the median: the window misses it, np.median
    decides."""
    monkeypatch.setattr(median_module, "MEDIAN_WINDOW_MIN", 1)
    monkeypatch.setattr(median_module, "MEDIAN_SAMPLE", 100)
    rng = np.random.default_rng(24)
    values = rng.uniform(0, 1, 10_000)
    values[::100] = 1e6  # the strided sample sees only these
    values[50::100] = np.nan
    check_median(values)
    assert median_module._median_in_window(values) is None
    values = np.sort(rng.uniform(0, 1, 10_000))  # sorted: the window works
    assert same_float(median_module._median_in_window(values), reference_median(values))


def test_median_of_large_arrays_other_shapes_and_dtypes():
    rng = np.random.default_rng(25)
    values = log_uniform(rng, 300_001)
    check_median(values)
    check_median(values[:300_000])
    check_median(values.astype(np.float32))
    check_median(values[::2])
    check_median(values[:300_000].reshape(600, 500))
    check_median(np.sort(values))
    check_median(np.sort(values)[::-1])
    values[rng.integers(0, values.size, 1000)] = np.nan
    check_median(values)
    check_median(list(values[:70_000]))
