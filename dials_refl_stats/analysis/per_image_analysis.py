"""DIALS's per-image spot analysis, in numpy, with DIALS's arithmetic.

A port of ``dials.algorithms.spot_finding.per_image_analysis.stats_for_reflection_table``
(unchanged from DIALS 3.12 to 3.2x): spots on ice rings, spots to 4 Å, the total
intensity away from ice, and the three resolution estimates (the I/sigma line fit with
Wilson outlier rejection, and methods 1 and 2 of Zhang et al. (2006) J. Appl. Cryst. 39,
112). DIALS runs it with Python loops over spots (~4 ms an image); here one image costs a
few dozen numpy calls.

Every number is computed as DIALS computes it: the same floating-point operations in the
same order (sums sequential, as ``flex.sum`` and scitbx's regression add; logarithms and
powers from the C library, as ``flex.log``, ``flex.pow`` and ``uctbx`` call it, not
numpy's vectorised ones, which differ in the last bit on some CPUs; stable sorts as
``flex.sort_permutation``). The tests compare every field with DIALS's function on real
and random images. :func:`image_analysis` answers ``None`` for an image outside the
domain where that equality is shown (a spot with I <= 0, a variance <= 0, or values that
are not finite): the caller gives such an image to DIALS's own function.

This module imports no DIALS: the ice rings' d*^2 values (from cctbx's index generator)
are passed in.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

#: ``stats_for_reflection_table``'s default ice ring width (in d*^2), halved.
ICE_HALF_WIDTH = 0.004 / 2.0
#: Images with at most this many spots away from ice get no resolution estimates.
MIN_SPOTS_NO_ICE = 10
#: Wilson outliers: normalised amplitudes at or above sqrt(-ln(p_cutoff)), p_cutoff 0.01.
E_CUTOFF = math.sqrt(-math.log(1e-2))


class ImageAnalysis(NamedTuple):
    """DIALS's ``StatsSingleImage`` fields for one image (-1 where not estimated)."""

    n_spots_total: int
    n_spots_no_ice: int
    n_spots_4A: int
    total_intensity: float
    estimated_d_min: float
    d_min_distl_method_1: float
    noisiness_method_1: float
    d_min_distl_method_2: float
    noisiness_method_2: float


def ice_ring_bound(d_min: float) -> float:
    """The largest ring d*^2 DIALS's ``PowderRingFilter`` generates for spots down to
    ``d_min``: ``uctbx.d_as_d_star_sq(d_min) + half width`` as a d, squared back the way
    cctbx's index generator does."""
    d_min_rings = d_star_sq_as_d(1.0 / math.pow(d_min, 2) + ICE_HALF_WIDTH)
    return 1.0 / (d_min_rings * d_min_rings)


def d_star_sq_as_d(value: float) -> float:
    """``uctbx.d_star_sq_as_d``."""
    return -1.0 if value == 0.0 else 1.0 / math.sqrt(value)


def image_analysis(
    d_star: np.ndarray,
    intensity: np.ndarray,
    variance: np.ndarray,
    rings: np.ndarray,
    resolution_analysis: bool = True,
) -> ImageAnalysis | None:
    """``stats_for_reflection_table`` of one image's spots (``rlp = (d_star, 0, 0)``),
    or ``None`` outside the domain where it equals DIALS's (see the module's notes).

    ``rings``: sorted ice-ring d*^2 values, all those DIALS's filter generates for the
    image's smallest d (more are fine: each image uses those up to its own bound).
    Raises what DIALS raises for images it cannot estimate (``AssertionError`` of the
    d*^3 binner, ``IndexError``).
    """
    d_star = np.asarray(d_star, dtype=np.float64)
    norms = np.sqrt(d_star * d_star)  # vec3.norms() of (d_star, 0, 0)
    keep = norms > 0
    if not keep.all():
        norms, intensity, variance = norms[keep], intensity[keep], variance[keep]
    d_star_sq = norms * norms
    if not np.isfinite(d_star_sq).all() or not (d_star_sq > 0).all():
        return None
    d_spacings = 1.0 / np.sqrt(d_star_sq)
    n_total = int(d_star_sq.size)
    ice = ice_selection(d_spacings, rings) if n_total else np.zeros(0, dtype=bool)
    no_ice = ~ice
    n_no_ice = int(no_ice.sum())
    n_4A = int((d_spacings > 4).sum())
    away = intensity[no_ice]
    total = float(np.cumsum(away)[-1]) if away.size else 0.0  # sequential, as flex.sum
    if not (resolution_analysis and n_no_ice > MIN_SPOTS_NO_ICE):
        return ImageAnalysis(n_total, n_no_ice, n_4A, total, -1.0, -1.0, -1.0, -1.0, -1.0)
    if not (
        np.isfinite(intensity).all()
        and (intensity > 0).all()
        and np.isfinite(variance).all()
        and (variance > 0).all()
    ):
        return None  # DIALS's own arithmetic decides (NaN sorts, mismatched selections)
    ratio = intensity / np.sqrt(variance)
    log_i_over_sigi = np.array(list(map(math.log, ratio.tolist())))
    if not np.isfinite(log_i_over_sigi).all():
        return None
    estimated = resolution_estimate(d_star_sq, d_spacings, intensity, log_i_over_sigi, ice)
    method_1 = distl_method_1(norms, d_spacings)
    method_2 = distl_method_2(d_spacings)
    return ImageAnalysis(n_total, n_no_ice, n_4A, total, estimated, *method_1, *method_2)


def ice_selection(d_spacings: np.ndarray, rings: np.ndarray) -> np.ndarray:
    """``PowderRingFilter(ice, 194, min(d), 0.004)(d)``: spots within the half width of
    a ring (in d*^2, from ``uctbx.d_as_d_star_sq``), with the rings DIALS generates for
    this image's smallest d."""
    rings = rings[: np.searchsorted(rings, ice_ring_bound(float(d_spacings.min())), "right")]
    if not rings.size:
        return np.zeros(d_spacings.size, dtype=bool)
    spots = 1.0 / np.array(list(map(_square, d_spacings.tolist())))
    # |spot - ring| grows away from the spot in floating point too: the nearest ring on
    # each side decides
    right = np.searchsorted(rings, spots, "left")
    left = np.maximum(right - 1, 0)
    right = np.minimum(right, rings.size - 1)
    return (np.abs(spots - rings[left]) < ICE_HALF_WIDTH) | (
        np.abs(spots - rings[right]) < ICE_HALF_WIDTH
    )


def _square(value: float) -> float:
    return math.pow(value, 2)  # std::pow(d, 2), as uctbx: not always d * d


def resolution_estimate(
    d_star_sq: np.ndarray,
    d_spacings: np.ndarray,
    intensity: np.ndarray,
    log_i_over_sigi: np.ndarray,
    ice: np.ndarray,
) -> float:
    """``estimate_resolution_limit``: lines through the 10th and 90th percentiles of
    ln(I/sigma) in shells of equal population (Wilson outliers and ice left out); the
    d of the highest-resolution spot below the upper line. All shells at once."""
    edges = equal_population_edges(d_star_sq)
    n_slots = edges.size - 1
    # slot i holds edges[i + 1] <= d < edges[i]; the largest d is in none
    slot = n_slots - np.searchsorted(edges[::-1], d_spacings, "right")
    in_slot = slot >= 0
    used = np.zeros(n_slots + 1, dtype=bool)  # slots with a spot away from ice
    used[slot[in_slot & ~ice]] = True
    rows = np.flatnonzero(in_slot & used[slot])
    outliers_all = np.zeros(d_star_sq.size, dtype=bool)
    outliers_all[rows] = wilson_outliers(intensity[rows], ice[rows], slot[rows], n_slots)
    kept = rows[~outliers_all[rows] & ~ice[rows]]
    kept_slot = slot[kept]
    order = np.lexsort((log_i_over_sigi[kept], kept_slot))  # stable: flex's permutation
    counts = np.bincount(kept_slot, minlength=n_slots)
    present = np.flatnonzero(counts)
    starts = (np.cumsum(counts) - counts)[present]
    lower = kept[order[starts + np.floor(0.1 * counts[present]).astype(np.int64)]]
    upper = kept[order[starts + np.floor((1 - 0.1) * counts[present]).astype(np.int64)]]
    # DIALS's pairing, as written: the upper line through (d*^2 of the lower point, ...)
    m_upper, c_upper = linear_regression(d_star_sq[lower].tolist(), log_i_over_sigi[upper].tolist())
    m_lower, _c = linear_regression(d_star_sq[upper].tolist(), log_i_over_sigi[lower].tolist())
    if m_upper == m_lower:
        return -1.0
    inside = points_below_line(d_star_sq, log_i_over_sigi, m_upper, c_upper)
    inside &= ~outliers_all & ~ice
    if not inside.any():
        return -1.0
    return d_star_sq_as_d(float(d_star_sq[inside].max()))


def equal_population_edges(d_star_sq: np.ndarray) -> np.ndarray:
    """``binner_equal_population(d_star_sq, 20, max_slots=20, min_slots=5)``'s slots as
    edges in d, from the largest d down: slot i is [edges[i + 1], edges[i])."""
    n_slots = max(min(d_star_sq.size // 20, 20), 5)
    n_per_bin = d_star_sq.size / n_slots
    d_sorted = 1.0 / np.sqrt(np.sort(d_star_sq))
    picks = [_nearest_integer((i + 1) * n_per_bin) - 1 for i in range(n_slots)]
    return np.concatenate([d_sorted[:1], d_sorted[picks]])


def _nearest_integer(x: float) -> int:
    """``libtbx.math_utils.nearest_integer`` (for x >= 0)."""
    return int(math.floor(x + 0.5) + 0.5)


def wilson_outliers(
    intensity: np.ndarray, ice: np.ndarray, slot: np.ndarray, n_slots: int
) -> np.ndarray:
    """``wilson_outliers`` of every slot at once: normalised amplitudes sqrt(I / <I>)
    (the slot's mean away from ice; ``bincount`` adds in order, as ``flex.mean``) at or
    above :data:`E_CUTOFF`, again among the rest until none is."""
    outliers = np.zeros(intensity.size, dtype=bool)
    amplitude = np.sqrt(intensity)
    active = np.arange(intensity.size)
    while active.size:
        away = active[~ice[active]]
        sums = np.bincount(slot[away], weights=intensity[away], minlength=n_slots)
        counts = np.bincount(slot[away], minlength=n_slots)
        of_active = slot[active]
        if not counts[of_active].all():
            raise RuntimeError("mean() argument is an empty array")  # as flex.mean
        sigma = np.sqrt(sums[of_active] / counts[of_active])
        found = amplitude[active] / sigma >= E_CUTOFF
        if not found.any():
            break
        outliers[active[found]] = True
        active = active[~found]
    return outliers


def linear_regression(x: list[float], y: list[float]) -> tuple[float, float]:
    """``scitbx.math.linear_regression(x, y)``: (slope, y intercept), 0 where it is not
    well defined; sums in order, as scitbx adds them."""
    if not x:
        return 0.0, 0.0
    min_x = max_x = x[0]
    min_y = max_y = y[0]
    sum_x, sum_x2, sum_y, sum_xy = x[0], x[0] * x[0], y[0], x[0] * y[0]
    for xi, yi in zip(x[1:], y[1:]):
        min_x, max_x = min(min_x, xi), max(max_x, xi)
        min_y, max_y = min(min_y, yi), max(max_y, yi)
        sum_x += xi
        sum_x2 += xi * xi
        sum_y += yi
        sum_xy += xi * yi
    n = float(len(x))
    if min_x == max_x:
        return 0.0, 0.0
    if min_y == max_y:
        return 0.0, min_y
    dx = max(abs(min_x - sum_x / n), abs(max_x - sum_x / n))
    dy = max(abs(min_y - sum_y / n), abs(max_y - sum_y / n))
    if dx == 0:
        return 0.0, 0.0
    if dy == 0:
        return 0.0, sum_y / n
    if dx < dy * 1.0e-15:
        return 0.0, 0.0
    d = n * sum_x2 - sum_x * sum_x
    if d == 0:
        return 0.0, 0.0
    return (n * sum_xy - sum_x * sum_y) / d, (sum_x2 * sum_y - sum_x * sum_xy) / d


def points_below_line(x: np.ndarray, y: np.ndarray, m: float, c: float) -> np.ndarray:
    """``points_below_line``: the sign of (p - p1) . perp(p2 - p1), p1 = (0, c), p2 =
    (1, m + c), negative (or -0.0) below."""
    rise = (m * 1 + c) - c
    # matrix.col.dot adds to an integer 0 first: a -0.0 product becomes +0.0
    return np.signbit((0.0 + x * -rise) + (y - c))


def distl_method_1(norms: np.ndarray, d_spacings: np.ndarray) -> tuple[float, float]:
    """``estimate_resolution_limit_distl_method1``: (d_min, noisiness) from at most 40
    spots, every ``step``-th by decreasing d, on the d*^3 curve."""
    n = norms.size
    step = max(2, -(-n // 40))  # the smallest step >= 2 with n / step <= 40
    order = np.argsort(-d_spacings, kind="stable")  # flex.sort_permutation(reverse=True)
    picked = order[: (n // step) * step : step]
    ds3 = np.array([math.pow(v, 3) for v in norms[picked].tolist()])
    d_subset = d_spacings[picked]
    slopes = (ds3[1:] - ds3[0]) / np.arange(1, ds3.size, dtype=np.float64)
    skip_first = 3
    p_m = int(np.argmax(slopes[skip_first:])) + 1 + skip_first
    rise = float(ds3[p_m] - ds3[0])
    length = math.sqrt(0 + rise * rise + (-p_m) * (-p_m))
    v0, v1 = rise / length, -p_m / length
    i = np.arange(1, p_m, dtype=np.float64)
    gaps = np.concatenate([[0.0], np.abs(v0 * -i + v1 * (ds3[0] - ds3[1:p_m]))])
    mean = float(np.cumsum(gaps)[-1]) / gaps.size
    deviation = gaps - mean
    spread = math.sqrt(float(np.cumsum(deviation * deviation)[-1]) / (gaps.size - 1))
    p_k = int(np.argmax(gaps))
    later = np.flatnonzero(gaps[p_k + 1 :] > gaps[p_k] - 0.5 * spread)
    p_g = p_k + 1 + int(later[-1]) if later.size else p_k
    m = ds3.size
    pairs = np.triu(slopes[:, None] >= slopes[None, :], k=1)
    noisiness = int(pairs.sum()) / ((m - 1) * (m - 2) / 2)
    return float(d_subset[p_g]), noisiness


def distl_method_2(d_spacings: np.ndarray) -> tuple[float, float]:
    """``estimate_resolution_limit_distl_method2``: (d_min, noisiness) from spot counts
    in shells of equal d*^3 volume (:func:`d_star_cubed_slots`)."""
    bounds = d_star_cubed_bounds(d_spacings)
    d_sorted = np.sort(d_spacings)
    below = np.searchsorted(d_sorted, bounds, "left")  # spots with d < each bound
    counts = below[:-1] - below[1:]  # slot i: bounds[i + 1] <= d < bounds[i]
    m = counts.size
    t0 = (int(counts[0]) + int(counts[1])) / 2
    low = counts < 0.15 * t0
    both = np.flatnonzero(low[:-1] & low[1:])
    i = int(both[0]) if both.size else m - 2
    pairs = np.triu(counts[:, None] <= counts[None, :], k=1)
    noisiness = int(pairs.sum()) / (0.5 * m * (m - 1))
    return float(bounds[i + 1]), noisiness


def d_star_cubed_bounds(d_spacings: np.ndarray) -> np.ndarray:
    """``binner_d_star_cubed(d, 25, max_slots=40, min_slots=20)``'s slot edges in d, from
    the largest d down: slot i is [edges[i + 1], edges[i])."""
    unique = np.unique(d_spacings)[::-1]  # set(), then sorted by decreasing d
    n = unique.size
    low_res_count = int(math.ceil(min(max(25, 0.05 * n), 0.25 * n)))
    first = math.pow(1 / float(unique[0]), 3)
    bin_step = math.pow(1 / float(unique[low_res_count]), 3) - first
    assert bin_step > 0
    last = math.pow(1 / float(unique[-1]), 3)
    n_slots = max(min(int(math.ceil((last - first) / bin_step)), 40), 20)
    bin_step = (last - first) / n_slots
    edges = [1 / first ** (1 / 3)]
    edges += [1 / (first + (i + 1) * bin_step) ** (1 / 3) for i in range(n_slots)]
    return np.array(edges)
