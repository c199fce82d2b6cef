"""DIALS's per-image spot analysis, in numpy, with DIALS's arithmetic.

A port of ``dials.algorithms.spot_finding.per_image_analysis.stats_for_reflection_table``
(unchanged from DIALS 3.12 to 3.2x): spots on ice rings, spots to 4 Å, the total
intensity away from ice, and the three resolution estimates (the I/sigma line fit with
Wilson outlier rejection, and methods 1 and 2 of Zhang et al. (2006) J. Appl. Cryst. 39,
112). DIALS runs it with Python loops over spots (~3.5 ms an image); here every image of a
task is done at once (~0.1 ms an image).

Every number is computed as DIALS computes it: the same floating-point operations in the
same order (sums sequential, as ``flex.sum`` and scitbx's regression add; logarithms and
powers from the C library, as ``flex.log``, ``flex.pow`` and ``uctbx`` call it, not
numpy's vectorised ones, which differ in the last bit on some CPUs; stable sorts as
``flex.sort_permutation``). The tests compare every field with DIALS's function on real
and random images. :func:`images_analysis` leaves to DIALS's own function (``single``)
any image outside the domain where that equality is shown (a spot with I <= 0, a
variance <= 0, or values that are not finite).

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


#: DIALS's ``StatsSingleImage`` fields, in :class:`ImagesAnalysis` (-1: not estimated).
FIELDS = (
    "n_spots_total",
    "n_spots_no_ice",
    "n_spots_4A",
    "total_intensity",
    "estimated_d_min",
    "d_min_distl_method_1",
    "noisiness_method_1",
    "d_min_distl_method_2",
    "noisiness_method_2",
)
#: The fields of the resolution estimates.
ESTIMATES = FIELDS[4:]


def ice_ring_bound(d_min: float) -> float:
    """The largest ring d*^2 DIALS's ``PowderRingFilter`` generates for spots down to
    ``d_min``: ``uctbx.d_as_d_star_sq(d_min) + half width`` as a d, squared back the way
    cctbx's index generator does."""
    d_min_rings = d_star_sq_as_d(1.0 / math.pow(d_min, 2) + ICE_HALF_WIDTH)
    return 1.0 / (d_min_rings * d_min_rings)


def d_star_sq_as_d(value: float) -> float:
    """``uctbx.d_star_sq_as_d``."""
    return -1.0 if value == 0.0 else 1.0 / math.sqrt(value)


def near_rings(d_spacings: np.ndarray, rings: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """Spots whose d*^2 is within the half width of one of the ``rings`` up to each
    spot's ``bound``. The d*^2 of a spot is ``1 / pow(d, 2)`` as uctbx computes it, which
    is not always ``1 / (d * d)``: the product decides, and the C library's pow where the
    two could disagree (a distance within 1e-12 of the half width)."""
    spots = 1.0 / (d_spacings * d_spacings)
    near, unsure = _ring_distances(spots, rings, bound)
    if unsure.any():
        exact = 1.0 / np.array([math.pow(d, 2) for d in d_spacings[unsure].tolist()])
        near[unsure] = _ring_distances(exact, rings, bound[unsure])[0]
    return near


def _ring_distances(spots, rings, bound) -> tuple[np.ndarray, np.ndarray]:
    """(within the half width of a ring, too close to the half width to tell from an
    approximate d*^2). The nearest ring on each side decides: |spot - ring| grows away
    from the spot in floating point too."""
    if not rings.size:
        return np.zeros(spots.size, dtype=bool), np.zeros(spots.size, dtype=bool)
    right = np.searchsorted(rings, spots, "left")
    left_ring = rings[np.maximum(right - 1, 0)]
    right_ring = rings[np.minimum(right, rings.size - 1)]
    left_gap = np.where(right > 0, np.abs(spots - left_ring), np.inf)
    with_right = (right < rings.size) & (right_ring <= bound)
    right_gap = np.where(with_right, np.abs(spots - right_ring), np.inf)
    near = (left_gap < ICE_HALF_WIDTH) | (right_gap < ICE_HALF_WIDTH)
    tolerance = 1e-12 * (1.0 + spots)
    unsure = (np.abs(left_gap - ICE_HALF_WIDTH) <= tolerance) | (
        np.abs(right_gap - ICE_HALF_WIDTH) <= tolerance
    )
    return near, unsure


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
        # a slot without new outliers is done (its next pass would find the same)
        changed = np.zeros(n_slots, dtype=bool)
        changed[of_active[found]] = True
        active = active[~found & changed[of_active]]
    return outliers


class ImagesAnalysis(NamedTuple):
    """:data:`FIELDS` of many images (arrays, one entry per image), and the images left to
    DIALS's own function (``single``: outside the domain where the two are shown equal,
    or images DIALS's estimates raise on, which it then raises for)."""

    fields: dict[str, np.ndarray]
    single: np.ndarray


def images_analysis(
    image: np.ndarray,
    d_star: np.ndarray,
    intensity: np.ndarray,
    variance: np.ndarray,
    rings: np.ndarray,
    resolution_analysis: bool = True,
) -> ImagesAnalysis:
    """``stats_for_reflection_table`` of every image (``rlp = (d_star, 0, 0)``) at once:
    the spots of image ``i`` (0..n-1) are those with ``image == i``, which must be
    non-decreasing (each image's spots together, in their order). ``rings``: sorted ice
    ring d*^2 values, all those DIALS's filter generates for the smallest d (more are
    fine: each image uses those up to its own bound). DIALS's operations per segment:
    sums by ``bincount`` (which adds in order), sorts stable, lookups within an image
    through complex keys (image, value), which numpy orders lexicographically."""
    with np.errstate(all="ignore"):  # IEEE results, as flex's C loops give, unannounced
        return _images_analysis(image, d_star, intensity, variance, rings, resolution_analysis)


def _images_analysis(image, d_star, intensity, variance, rings, resolution_analysis):
    n_images = int(image[-1]) + 1 if image.size else 0
    norms = np.sqrt(d_star * d_star)
    keep = norms > 0
    image, norms = image[keep], norms[keep]
    intensity, variance = intensity[keep], variance[keep]
    d_star_sq = norms * norms
    bad = ~(np.isfinite(d_star_sq) & (d_star_sq > 0))
    single = np.bincount(image[bad], minlength=n_images) > 0
    d_star_sq = np.where(bad, 1.0, d_star_sq)  # those images are done one by one
    d_spacings = 1.0 / np.sqrt(d_star_sq)
    n_spots = np.bincount(image, minlength=n_images)
    ice = _images_ice(image, d_spacings, n_spots, rings)
    away = ~ice
    fields = {
        "n_spots_total": n_spots,
        "n_spots_no_ice": np.bincount(image[away], minlength=n_images),
        "n_spots_4A": np.bincount(image[d_spacings > 4], minlength=n_images),
        "total_intensity": np.bincount(image[away], intensity[away], minlength=n_images),
    }
    for name in ESTIMATES:
        fields[name] = np.full(n_images, -1.0)
    wanted = (fields["n_spots_no_ice"] > MIN_SPOTS_NO_ICE) & ~single
    if not resolution_analysis or not wanted.any():
        return ImagesAnalysis(fields, single)
    plain = np.isfinite(intensity) & (intensity > 0) & np.isfinite(variance) & (variance > 0)
    odd = np.bincount(image[~plain], minlength=n_images) > 0
    single |= wanted & odd
    wanted &= ~odd
    rows = wanted[image]
    spots = _Spots(
        image[rows],
        d_star_sq[rows],
        d_spacings[rows],
        norms[rows],
        intensity[rows],
        ice[rows],
        n_images,
    )
    ratio = spots.intensity / np.sqrt(variance[rows])
    spots.log = np.array(list(map(math.log, ratio.tolist())))
    bad_log = np.bincount(spots.image[~np.isfinite(spots.log)], minlength=n_images) > 0
    if bad_log.any():  # not with I > 0 and variance > 0 finite, but left to DIALS if so
        single |= bad_log
        wanted &= ~bad_log
        spots = spots.subset(~bad_log[spots.image])
    estimated = _images_estimate(spots)
    method_1 = _images_method_1(spots)
    method_2, cannot = _images_method_2(spots)
    single |= cannot
    done = wanted & ~cannot
    for name, values in zip(ESTIMATES, (estimated, *method_1, *method_2)):
        fields[name][done] = values[done]
    return ImagesAnalysis(fields, single)


class _Spots:
    """The spots of the images that get estimates, each image's together."""

    def __init__(self, image, d_star_sq, d_spacings, norms, intensity, ice, n_images):
        self.image, self.d_star_sq, self.d_spacings = image, d_star_sq, d_spacings
        self.norms, self.intensity, self.ice = norms, intensity, ice
        self.n_images = n_images
        self.log = np.zeros(0)
        self.count = np.bincount(image, minlength=n_images)
        self.start = np.cumsum(self.count) - self.count
        self._by_d: np.ndarray | None = None

    @property
    def by_d(self) -> np.ndarray:
        """Each image's spots by decreasing d, ties in order
        (``flex.sort_permutation(d, reverse=True)``)."""
        if self._by_d is None:
            self._by_d = self.order(-self.d_spacings)
        return self._by_d

    def subset(self, rows: np.ndarray) -> _Spots:
        subset = _Spots(
            self.image[rows],
            self.d_star_sq[rows],
            self.d_spacings[rows],
            self.norms[rows],
            self.intensity[rows],
            self.ice[rows],
            self.n_images,
        )
        subset.log = self.log[rows]
        return subset

    def order(self, values: np.ndarray) -> np.ndarray:
        """Stable order by (image, value) (image blocks stay where they are)."""
        return np.argsort(_keys(self.image, values), kind="stable")


def _keys(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Complex keys (image, value): numpy sorts and searches them lexicographically."""
    keys = np.empty(values.size, dtype=np.complex128)
    keys.real = image
    keys.imag = values
    return keys


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, index within owner) of ``counts[i]`` items for each owner ``i``."""
    owner = np.repeat(np.arange(counts.size), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - first[owner]


def _images_ice(image, d_spacings, n_spots, rings) -> np.ndarray:
    """``PowderRingFilter(ice, 194, min(d), 0.004)(d)`` of each image: spots within the
    half width of a ring DIALS generates for the image's smallest d."""
    if not image.size:
        return np.zeros(0, dtype=bool)
    has = n_spots > 0
    starts = (np.cumsum(n_spots) - n_spots)[has]
    bound = np.full(n_spots.size, -np.inf)
    smallest = np.minimum.reduceat(d_spacings, starts).tolist()
    bound[has] = [ice_ring_bound(d) for d in smallest]
    return near_rings(d_spacings, rings, bound[image])


def _first_max(values: np.ndarray, owner: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """Per owner, the ``index`` of the first largest of its ``values`` (owners sorted)."""
    counts = np.bincount(owner, minlength=n)
    has = counts > 0
    starts = (np.cumsum(counts) - counts)[has]
    largest = np.full(n, -np.inf)
    largest[has] = np.maximum.reduceat(values, starts)
    candidates = np.where(values == largest[owner], index, np.iinfo(np.int64).max)
    first = np.full(n, -1, dtype=np.int64)
    first[has] = np.minimum.reduceat(candidates, starts)
    return first


def segment_regression(x, y, owner, n) -> tuple[np.ndarray, np.ndarray]:
    """``scitbx.math.linear_regression`` (slope, y intercept; 0 where not well defined)
    of each owner's points, sums in order as scitbx adds them (owners sorted)."""
    count = np.bincount(owner, minlength=n).astype(np.float64)
    has = count > 0
    starts = (np.cumsum(count) - count).astype(np.int64)[has]
    sum_x = np.bincount(owner, x, minlength=n)
    sum_x2 = np.bincount(owner, x * x, minlength=n)
    sum_y = np.bincount(owner, y, minlength=n)
    sum_xy = np.bincount(owner, x * y, minlength=n)
    bounds = {}
    for name, values, reduce in (
        ("min_x", x, np.minimum),
        ("max_x", x, np.maximum),
        ("min_y", y, np.minimum),
        ("max_y", y, np.maximum),
    ):
        bounds[name] = np.zeros(n)
        if starts.size:
            bounds[name][has] = reduce.reduceat(values, starts)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x, mean_y = sum_x / count, sum_y / count
        dx = np.maximum(np.abs(bounds["min_x"] - mean_x), np.abs(bounds["max_x"] - mean_x))
        dy = np.maximum(np.abs(bounds["min_y"] - mean_y), np.abs(bounds["max_y"] - mean_y))
        d = count * sum_x2 - sum_x * sum_x
        slope = (count * sum_xy - sum_x * sum_y) / d
        intercept = (sum_x2 * sum_y - sum_x * sum_xy) / d
    flat_x = ~has | (bounds["min_x"] == bounds["max_x"])
    flat_y = ~flat_x & (bounds["min_y"] == bounds["max_y"])
    rest = ~flat_x & ~flat_y
    still_x = rest & (dx == 0)
    still_y = rest & ~still_x & (dy == 0)
    rest &= ~still_x & ~still_y
    steep = rest & (dx < dy * 1.0e-15)
    fitted = rest & ~steep & (d != 0)
    return (
        np.where(fitted, slope, 0.0),
        np.select([flat_y, still_y, fitted], [bounds["min_y"], mean_y, intercept], 0.0),
    )


def _images_estimate(spots: _Spots) -> np.ndarray:
    """``estimate_resolution_limit`` of each image: lines through the 10th and 90th
    percentiles of ln(I/sigma) in shells of equal population (Wilson outliers and ice
    left out); the d of the highest-resolution spot below the upper line (DIALS's
    pairing, as written: the upper line through the lower point's d*^2); the sign of
    a ``matrix.col`` dot product, which adds to an integer 0 first (-0.0 becomes +0.0)."""
    n_images, image = spots.n_images, spots.image
    count = spots.count
    n_slots = np.clip(count // 20, 5, 20) * (count > 0)
    per_bin = count / np.maximum(n_slots, 1)
    # each image's edges: its largest d, then the d at each slot's end
    slot_image, k = _ragged(n_slots)
    picks = np.floor((k + 1) * per_bin[slot_image] + 0.5).astype(np.int64) - 1
    edge_rows = np.concatenate([spots.start[count > 0], spots.start[slot_image] + picks])
    edge_image = np.concatenate([np.flatnonzero(count > 0), slot_image])
    # d of increasing d*^2 (binner_equal_population): the values of decreasing d
    edge_keys = np.sort(_keys(edge_image, spots.d_spacings[spots.by_d[edge_rows]]))
    n_edges = np.bincount(edge_image, minlength=n_images)
    at_or_below = np.searchsorted(edge_keys, _keys(image, spots.d_spacings), "right")
    slot = n_slots[image] - (at_or_below - (np.cumsum(n_edges) - n_edges)[image])
    first_slot = np.cumsum(n_slots) - n_slots
    in_slot = slot >= 0
    global_slot = np.where(in_slot, first_slot[image] + slot, 0)
    total_slots = int(n_slots.sum())
    used = np.zeros(total_slots, dtype=bool)
    used[global_slot[in_slot & ~spots.ice]] = True
    rows = np.flatnonzero(in_slot & used[global_slot])
    outliers = np.zeros(image.size, dtype=bool)
    outliers[rows] = wilson_outliers(
        spots.intensity[rows], spots.ice[rows], global_slot[rows], total_slots
    )
    kept = rows[~outliers[rows] & ~spots.ice[rows]]
    kept_slot = global_slot[kept]
    order = np.argsort(_keys(kept_slot, spots.log[kept]), kind="stable")
    counts = np.bincount(kept_slot, minlength=total_slots)
    present = np.flatnonzero(counts)
    starts = (np.cumsum(counts) - counts)[present]
    lower = kept[order[starts + np.floor(0.1 * counts[present]).astype(np.int64)]]
    upper = kept[order[starts + np.floor((1 - 0.1) * counts[present]).astype(np.int64)]]
    owner = image[lower]
    m_upper, c_upper = segment_regression(spots.d_star_sq[lower], spots.log[upper], owner, n_images)
    m_lower, _c = segment_regression(spots.d_star_sq[upper], spots.log[lower], owner, n_images)
    rise = (m_upper * 1 + c_upper) - c_upper
    below = np.signbit((0.0 + spots.d_star_sq * -rise[image]) + (spots.log - c_upper[image]))
    below &= ~outliers & ~spots.ice
    has = count > 0
    highest = np.full(n_images, -np.inf)
    highest[has] = np.maximum.reduceat(np.where(below, spots.d_star_sq, -np.inf), spots.start[has])
    with np.errstate(divide="ignore"):
        estimate = np.where(highest > 0, 1.0 / np.sqrt(np.maximum(highest, 0)), -1.0)
    return np.where(m_upper == m_lower, -1.0, estimate)


def _images_method_1(spots: _Spots) -> tuple[np.ndarray, np.ndarray]:
    """``estimate_resolution_limit_distl_method1`` of each image: (d_min, noisiness)
    from at most 40 spots, every ``step``-th by decreasing d, on the d*^3 curve."""
    n_images, count = spots.n_images, spots.count
    by_d = spots.by_d
    step = np.maximum(2, -(-count // 40))
    n_picked = count // step
    owner, i = _ragged(n_picked)
    picked = by_d[spots.start[owner] + i * step[owner]]
    ds3 = np.array(list(map(math.pow, spots.norms[picked].tolist(), [3.0] * picked.size)))
    first_pick = np.cumsum(n_picked) - n_picked
    ds3_first = ds3[first_pick[owner]]
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = (ds3 - ds3_first) / i  # i = 0: no slope
    p_m = _first_max(np.where(i >= 4, slopes, -np.inf), owner, i, n_images)
    has = n_picked > 0
    rise = np.zeros(n_images)
    rise[has] = ds3[first_pick[has] + p_m[has]] - ds3_first[first_pick[has]]
    length = np.sqrt((0 + rise * rise) + (p_m * p_m).astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        v0, v1 = rise / length, -p_m / length
    in_gaps = i < p_m[owner]
    gap_owner, gap_i = owner[in_gaps], i[in_gaps]
    gaps = np.abs(
        (0 + v0[gap_owner] * -gap_i) + v1[gap_owner] * (ds3_first[in_gaps] - ds3[in_gaps])
    )
    n_gaps = p_m.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(gap_owner, gaps, minlength=n_images) / n_gaps
        deviation = gaps - mean[gap_owner]
        spread = np.sqrt(
            np.bincount(gap_owner, deviation * deviation, minlength=n_images) / (n_gaps - 1)
        )
    p_k = _first_max(gaps, gap_owner, gap_i, n_images)
    g_k = np.zeros(n_images)
    gap_first = np.cumsum(p_m * has) - p_m * has
    g_k[has] = gaps[gap_first[has] + p_k[has]]
    later = (gap_i > p_k[gap_owner]) & (gaps > (g_k - 0.5 * spread)[gap_owner])
    last_later = np.full(n_images, -1, dtype=np.int64)
    np.maximum.at(last_later, gap_owner[later], gap_i[later])
    p_g = np.where(last_later >= 0, last_later, p_k)
    d_min = np.full(n_images, -1.0)
    d_min[has] = spots.d_spacings[picked[first_pick[has] + p_g[has]]]
    noisy = _ordered_pairs(slopes[i >= 1], owner[i >= 1], n_images, np.greater_equal)
    with np.errstate(divide="ignore", invalid="ignore"):
        noisiness = noisy / (((n_picked - 1) * (n_picked - 2)) / 2)
    return d_min, noisiness


def _ordered_pairs(values, owner, n_images, compare) -> np.ndarray:
    """Per owner, the pairs j < k of its values with ``compare(values[j], values[k])``."""
    counts = np.bincount(owner, minlength=n_images)
    found = np.zeros(n_images, dtype=np.int64)
    for offset in range(1, int(counts.max(initial=0))):
        same = owner[:-offset] == owner[offset:]
        hits = same & compare(values[:-offset], values[offset:])
        found += np.bincount(owner[:-offset][hits], minlength=n_images)
    return found


def _images_method_2(spots: _Spots) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """``estimate_resolution_limit_distl_method2`` of each image (spot counts in shells
    of equal d*^3 volume), and the images whose d*^3 binner fails (as
    DIALS's does: too few distinct d, or shells of no width): done one by one."""
    n_images, image, count = spots.n_images, spots.image, spots.count
    has = count > 0
    d_sorted = spots.d_spacings[spots.by_d]
    new_run = np.ones(d_sorted.size, dtype=bool)
    new_run[1:] = (d_sorted[1:] != d_sorted[:-1]) | (image[1:] != image[:-1])
    unique, unique_image = d_sorted[new_run], image[new_run]
    n_unique = np.bincount(unique_image, minlength=n_images)
    first_unique = np.cumsum(n_unique) - n_unique
    low_res_count = np.ceil(np.minimum(np.maximum(25, 0.05 * n_unique), 0.25 * n_unique))
    low_res_count = low_res_count.astype(np.int64)
    cannot = has & (low_res_count >= n_unique)
    fine = has & ~cannot
    cube = _cube_of_inverse
    first, at_low, last = (np.ones(n_images) for _ in range(3))
    first[fine] = cube(unique[first_unique[fine]])
    at_low[fine] = cube(unique[first_unique[fine] + low_res_count[fine]])
    last[fine] = cube(unique[first_unique[fine] + n_unique[fine] - 1])
    bin_step = at_low - first
    cannot |= fine & ~(bin_step > 0)
    fine &= ~cannot
    n_slots = np.zeros(n_images, dtype=np.int64)
    n_slots[fine] = np.clip(np.ceil((last - first)[fine] / bin_step[fine]), 20, 40)
    step = np.where(fine, (last - first) / np.maximum(n_slots, 1), 0.0)
    # edges: 1 / ds3 ** (1/3) at ds3 = first, first + step, ..., first + n_slots * step
    edge_image, k = _ragged(np.where(fine, n_slots + 1, 0))
    base = np.where(k == 0, first[edge_image], first[edge_image] + k * step[edge_image])
    edges = 1 / np.array(list(map(math.pow, base.tolist(), [1 / 3] * base.size)))
    # each image's d increasing: its decreasing d, backwards
    backwards = (
        (spots.start + spots.count)[image] - 1 - (np.arange(image.size) - spots.start[image])
    )
    spot_keys = _keys(image, d_sorted[backwards])
    below = np.searchsorted(spot_keys, _keys(edge_image, edges), "left") - spots.start[edge_image]
    slot_image = edge_image[k > 0]
    counts = below[:-1][k[1:] > 0] - below[1:][k[1:] > 0]
    slot_k = k[k > 0] - 1
    first_slot = np.cumsum(n_slots) - n_slots
    t0 = np.zeros(n_images)
    t0[fine] = (counts[first_slot[fine]] + counts[first_slot[fine] + 1]) / 2
    low = counts < (0.15 * t0)[slot_image]
    both = low[:-1] & low[1:] & (slot_image[:-1] == slot_image[1:])
    stop = np.where(fine, n_slots - 2, 0)
    hit = np.flatnonzero(both)
    np.minimum.at(stop, slot_image[:-1][hit], slot_k[:-1][hit])
    d_min = np.full(n_images, -1.0)
    edge_first = np.cumsum(np.where(fine, n_slots + 1, 0)) - np.where(fine, n_slots + 1, 0)
    d_min[fine] = edges[edge_first[fine] + stop[fine] + 1]
    pairs = _ordered_pairs(counts, slot_image, n_images, np.less_equal)
    with np.errstate(divide="ignore", invalid="ignore"):
        noisiness = np.where(fine, pairs / (0.5 * n_slots * (n_slots - 1)), -1.0)
    return (d_min, noisiness), cannot


def _cube_of_inverse(d: np.ndarray) -> np.ndarray:
    """``flex.pow(1 / d, 3)`` (the C library's pow, as flex calls it)."""
    return np.array(list(map(math.pow, (1 / d).tolist(), [3.0] * d.size)))
