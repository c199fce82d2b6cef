"""The numpy port of DIALS's per-image spot analysis against DIALS's own function.

``dials_refl_stats.analysis.per_image_analysis.images_analysis`` must give exactly what
``dials.algorithms.spot_finding.per_image_analysis.stats_for_reflection_table`` gives
(every field, to the bit), or leave the image to DIALS's function (``single``): on every
image of the shipped DIALS files and on random images made to hit its
edges (spots on ice rings, tied d and intensities, few spots, repeated values, negative
intensities, zero variances). ``benchmarks/fuzz_per_image_analysis.py`` runs the random
part at scale.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from conftest import data_path, needs_dials

from dials_refl_stats.analysis.per_image_analysis import (
    FIELDS,
    ICE_HALF_WIDTH,
    ice_ring_bound,
    images_analysis,
    near_rings,
    segment_regression,
)

pytestmark = needs_dials


def powder_rings(d_min: float):
    """DIALS's ice ring filter, as ``ice_rings_selection`` makes it."""
    from cctbx import sgtbx, uctbx
    from dials.algorithms.integration.filtering import PowderRingFilter

    unit_cell = uctbx.unit_cell((4.498, 4.498, 7.338, 90, 90, 120))
    space_group = sgtbx.space_group_info(number=194).group()
    return PowderRingFilter(unit_cell, space_group, d_min, 2 * ICE_HALF_WIDTH)


@functools.cache
def all_rings() -> np.ndarray:
    """Every ring DIALS generates down to 0.4 Å (a superset for the images here)."""
    return np.array(powder_rings(0.4).d_star_sq)


def dials_stats(d_star, intensity, variance, resolution_analysis=True):
    """DIALS's fields of one image (rlp = (d*, 0, 0)), or its exception's class name."""
    from dials.algorithms.spot_finding.per_image_analysis import stats_for_reflection_table
    from dials.array_family import flex

    table = flex.reflection_table()
    zeros = flex.double(len(d_star), 0)
    table["rlp"] = flex.vec3_double(flex.double(d_star), zeros, zeros)
    table["intensity.sum.value"] = flex.double(intensity)
    table["intensity.sum.variance"] = flex.double(variance)
    try:
        stats = stats_for_reflection_table(table, resolution_analysis=resolution_analysis)
    except Exception as error:  # noqa: BLE001 - the class is what is compared
        return type(error).__name__
    return tuple(float(getattr(stats, name)) for name in FIELDS)


def ours_stats(d_star, intensity, variance, resolution_analysis=True):
    """The port's fields of one image, or ``None`` (left to DIALS's function)."""
    d_star = np.asarray(d_star, dtype=np.float64)
    image = np.zeros(d_star.size, dtype=np.int64)
    batch = images_analysis(
        image,
        d_star,
        np.asarray(intensity),
        np.asarray(variance),
        all_rings(),
        resolution_analysis,
    )
    if batch.single[0]:
        return None
    return tuple(float(batch.fields[name][0]) for name in FIELDS)


def ice_selection(d_spacings: np.ndarray) -> np.ndarray:
    """The port's ice rings of one image's spots."""
    bound = np.full(d_spacings.size, ice_ring_bound(float(d_spacings.min())))
    return near_rings(d_spacings, all_rings(), bound)


def random_image(rng: np.random.Generator):
    """(d*, I, variance, resolution_analysis) of a random image meant to reach the edges."""
    n = int(rng.choice([1, 5, 11, 12, 15, 25, 40, 41, 80, 81, 100, 150, 300, 1000]))
    kind = int(rng.integers(0, 6))
    if kind == 0:
        d = rng.uniform(1.2, 30, n)
    elif kind == 1:  # on and around the ice rings
        ring_d = 1 / np.sqrt(all_rings()[all_rings() < 0.6])
        d = rng.choice(ring_d, n) * (1 + rng.normal(0, 0.003, n))
    elif kind == 2:  # tied d
        d = rng.choice(rng.uniform(1.5, 20, max(2, n // 5)), n)
    elif kind == 3:
        d = 1 / np.sqrt(rng.uniform(0.001, 0.5, n))
    elif kind == 4:
        d = rng.lognormal(1.2, 0.6, n) + 0.8
    else:  # d on a coarse grid
        d = np.round(rng.uniform(1.5, 10, n), 1)
    intensity = rng.lognormal(5, 2, n) * np.exp(-rng.uniform(0, 10) / d**2)
    if rng.random() < 0.2:
        intensity = np.round(intensity) + 1  # tied intensities
    variance = intensity * rng.uniform(0.5, 2, n) + rng.uniform(0, 10, n)
    if rng.random() < 0.1:
        intensity[rng.integers(0, n)] = -rng.uniform(0, 100)
    if rng.random() < 0.05:
        variance[rng.integers(0, n)] = 0
    if rng.random() < 0.1:
        intensity = rng.choice(intensity, n)
    return 1.0 / d, intensity, variance, bool(rng.random() < 0.9)


def compare(images) -> dict[str, int]:
    """Counts of images the port matched, left to DIALS, and differed on (asserted 0)."""
    counts = {"equal": 0, "dials": 0}
    for d_star, intensity, variance, analysis in images:
        ours = ours_stats(d_star, intensity, variance, analysis)
        if ours is None:
            counts["dials"] += 1
            continue
        assert ours == dials_stats(d_star, intensity, variance, analysis), (
            len(d_star),
            analysis,
        )
        counts["equal"] += 1
    return counts


def test_random_images_equal_dials():
    rng = np.random.default_rng(20261203)
    counts = compare(random_image(rng) for _ in range(400))
    assert counts["equal"] >= 300  # the port, not the fallback, answered


def real_images(expt: str, refl: str, flag: str):
    """Each image's (d*, I, variance) of a shipped table, mapped by DIALS itself."""
    from dials.array_family import flex
    from dxtbx.model.experiment_list import ExperimentListFactory

    table = flex.reflection_table.from_file(str(data_path(refl)))
    table = table.select(table.get_flags(getattr(table.flags, flag)))
    experiments = ExperimentListFactory.from_json_file(str(data_path(expt)), check_format=False)
    table.centroid_px_to_mm(experiments)
    table.map_centroids_to_reciprocal_space(experiments)
    frame = np.floor(table["xyzobs.px.value"].parts()[2].as_numpy_array()).astype(int)
    key = table["id"].as_numpy_array() * 100000 + frame
    d_star = table["rlp"].norms().as_numpy_array()
    intensity = table["intensity.sum.value"].as_numpy_array()
    variance = table["intensity.sum.variance"].as_numpy_array()
    for value in np.unique(key):
        rows = np.flatnonzero(key == value)
        for analysis in (True, False):
            yield d_star[rows], intensity[rows], variance[rows], analysis


@pytest.mark.parametrize(
    "expt, refl, flag",
    [
        ("sim_small/indexed.expt", "sim_small/indexed.refl", "strong"),
        ("sim_small/integrated.expt", "sim_small/integrated.refl", "integrated_sum"),
        ("ssx_CuNiR/indexed.expt", "ssx_CuNiR/indexed.refl", "strong"),
    ],
)
def test_every_image_of_dials_files_equals_dials(expt, refl, flag):
    counts = compare(real_images(expt, refl, flag))
    assert counts["equal"] > 0
    if flag == "strong":
        assert counts["dials"] == 0  # strong spots are all in the port's domain


def test_rings_below_each_images_bound_are_dials_rings():
    """A superset of rings, cut at the image's bound, is the ring list DIALS makes for
    that image's smallest d."""
    for d_min in np.concatenate([np.linspace(0.45, 12, 200), 1 / np.sqrt(all_rings()[:40])]):
        dials = np.array(powder_rings(float(d_min)).d_star_sq)
        rings = all_rings()
        ours = rings[: np.searchsorted(rings, ice_ring_bound(float(d_min)), "right")]
        assert np.array_equal(ours, dials), d_min


def test_ice_selection_equals_dials_filter():
    from dials.array_family import flex

    rng = np.random.default_rng(5)
    ring_d = 1 / np.sqrt(all_rings()[all_rings() < 1.5])
    for _ in range(50):
        d = rng.choice(ring_d, 300) * (1 + rng.normal(0, 0.002, 300))
        d = np.concatenate([d, rng.uniform(0.9, 20, 100)])
        expected = powder_rings(float(d.min()))(flex.double(d)).as_numpy_array()
        assert expected.any() and not expected.all()
        assert np.array_equal(ice_selection(d), expected)


def test_linear_regression_equals_scitbx():
    from dials.array_family import flex

    rng = np.random.default_rng(3)
    cases = [([], []), ([1.0], [2.0]), ([1.0, 1.0], [2.0, 3.0]), ([1.0, 2.0], [5.0, 5.0])]
    cases += [([1.0, 2.0, 3.0], [1.0, 1.0 + 1e-300, 1.0])]
    for _ in range(300):
        n = int(rng.integers(2, 21))
        x = rng.uniform(0, 0.5, n)
        y = rng.normal(2, 1, n) if rng.random() < 0.8 else np.round(rng.normal(2, 1, n))
        cases.append((x.tolist(), y.tolist()))
    owner = np.concatenate([np.full(len(x), i) for i, (x, _y) in enumerate(cases)])
    x_all, y_all = (np.concatenate([np.asarray(c[k], float) for c in cases]) for k in (0, 1))
    slope, intercept = segment_regression(x_all, y_all, owner.astype(np.int64), len(cases))
    for i, (x, y) in enumerate(cases):
        fit = flex.linear_regression(flex.double(x), flex.double(y))
        assert (slope[i], intercept[i]) == (fit.slope(), fit.y_intercept()), (x, y)


def test_outside_the_domain_is_left_to_dials():
    d_star = 1 / np.linspace(1.5, 10, 30)
    intensity = np.full(30, 100.0)
    variance = np.full(30, 50.0)
    assert ours_stats(d_star, intensity, variance) is not None
    for bad in (("intensity", -1.0), ("intensity", math.nan), ("variance", 0.0)):
        values = {"intensity": intensity.copy(), "variance": variance.copy()}
        values[bad[0]][7] = bad[1]
        assert ours_stats(d_star, values["intensity"], values["variance"]) is None
        # the counts alone stay the port's
        assert ours_stats(d_star, values["intensity"], values["variance"], False) is not None


def test_an_image_dials_cannot_bin_fails_as_in_dials():
    """Eleven or more spots at one d: DIALS's d*^3 binner indexes past its one shell."""
    d_star = np.full(12, 1 / 3.0)
    intensity = np.linspace(10, 100, 12)
    assert dials_stats(d_star, intensity, intensity) == "IndexError"
    assert ours_stats(d_star, intensity, intensity) is None  # DIALS's function raises
    assert ours_stats(d_star, intensity, intensity, False) == dials_stats(
        d_star, intensity, intensity, False
    )


def test_spots_at_a_rings_half_width_equal_dials_filter():
    """d*^2 a half width from a ring, to the last bit, where 1 / pow(d, 2) and 1 / (d * d)
    can disagree on which side of the width a spot is."""
    from dials.array_family import flex

    rings = all_rings()
    d = []
    for ring in rings[(rings > 0.05) & (rings < 1.0)][:60].tolist():
        for edge in (ring - ICE_HALF_WIDTH, ring + ICE_HALF_WIDTH):
            value = 1 / math.sqrt(edge)
            for _ in range(40):
                value = np.nextafter(value, 0)
            for _ in range(80):
                d.append(value)
                value = np.nextafter(value, np.inf)
    d = np.array(d)
    filtered = powder_rings(float(d.min()))(flex.double(d)).as_numpy_array()
    assert filtered.any() and not filtered.all()
    assert np.array_equal(ice_selection(d), filtered)


@pytest.mark.parametrize("resolution_analysis", [True, False])
def test_images_at_once_equal_dials_image_by_image(resolution_analysis):
    """:func:`images_analysis` of 300 random images in one call equals DIALS on each
    image it does not leave to DIALS's function, and leaves few."""
    rng = np.random.default_rng(11 + resolution_analysis)
    images = [random_image(rng)[:3] for _ in range(300)]
    image = np.concatenate([np.full(len(spots[0]), i) for i, spots in enumerate(images)])
    d_star, intensity, variance = (np.concatenate([s[k] for s in images]) for k in range(3))
    batch = images_analysis(image, d_star, intensity, variance, all_rings(), resolution_analysis)
    assert batch.single.size == len(images)
    for i, spots in enumerate(images):
        if batch.single[i]:
            continue
        ours = tuple(float(batch.fields[name][i]) for name in FIELDS)
        assert ours == dials_stats(*spots, resolution_analysis), i
    assert batch.single.sum() <= (40 if resolution_analysis else 0)


def test_overflowing_values_are_left_to_dials_without_warnings():
    """I / sqrt(variance) past the largest double, and d* whose square overflows or
    underflows: such images are left to DIALS's function, quietly (flex's C loops give IEEE
    results without warnings, and workflows keep an empty stderr)."""
    import warnings

    rng = np.random.default_rng(3)
    images = [random_image(rng)[:3] for _ in range(4)]
    d_star, intensity, variance = (np.abs(a).copy() + 1 for a in images[1])
    intensity[0], variance[0] = 1e300, 1e-300
    images[1] = (d_star, intensity, variance)
    images[2] = (np.full(20, 1e-200), np.full(20, 5.0), np.full(20, 2.0))
    images[3] = (np.full(20, 1e200), np.full(20, 5.0), np.full(20, 2.0))
    image = np.concatenate([np.full(len(s[0]), i) for i, s in enumerate(images)])
    joined = [np.concatenate([s[k] for s in images]) for k in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = images_analysis(image, *joined, all_rings(), True)
        assert ours_stats(*images[1]) is None and ours_stats(*images[3]) is None
    assert batch.single.tolist() == [False, True, False, True]
    for i in (0, 2):
        assert tuple(float(batch.fields[name][i]) for name in FIELDS) == dials_stats(*images[i])
