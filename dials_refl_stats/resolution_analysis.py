"""DIALS's per-image spot analysis on our spots: the numbers ``dials.spot_counts_per_image``
reports (spots away from ice rings, spots to 4 Å, the d_min estimates).

The d of each spot comes from the experiments' geometry (:func:`geometry.map_positions`:
``Panel.pixel_to_millimeter`` with the detector's px/mm strategy, lab coordinates, and
``|s1 - s0|``: the norm of DIALS's ``rlp``); each image's spots then go through DIALS's own
``per_image_analysis.stats_for_reflection_table``, so the numbers are DIALS's.
"""

from __future__ import annotations

import numpy as np

from dials_refl_stats import geometry

#: What :func:`analyse_images` returns per image (DIALS's field names).
FIELDS = (
    "n_spots_no_ice",
    "n_spots_4A",
    "total_intensity_no_ice",
    "estimated_d_min",
    "d_min_distl_method_1",
    "d_min_distl_method_2",
    "noisiness_method_1",
    "noisiness_method_2",
)


class AnalysisError(ValueError):
    """DIALS's per-image analysis failed on one image (corrupt spots)."""

    def __init__(self, image: int, detail: str):
        super().__init__(detail)
        self.image = image


def spot_d(experiments, spots: dict[str, np.ndarray], experiment_of_spot: np.ndarray) -> np.ndarray:
    """d (Å) of each spot's observed position."""
    xy = np.stack([spots["x"], spots["y"]], axis=1)
    return geometry.map_positions(experiments, experiment_of_spot, spots["panel"], xy).d


def analyse_images(
    image_of_spot: np.ndarray,
    d: np.ndarray,
    intensity: np.ndarray,
    variance: np.ndarray,
    n_images: int,
    resolution_analysis: bool = True,
) -> dict[str, np.ndarray]:
    """DIALS's per-image statistics for spots grouped by ``image_of_spot`` (0..n-1)."""
    from dials.algorithms.spot_finding.per_image_analysis import stats_for_reflection_table
    from dials.array_family import flex

    out = {name: np.full(n_images, -1.0) for name in FIELDS}
    out["n_spots_no_ice"] = np.zeros(n_images, dtype=np.int64)
    out["n_spots_4A"] = np.zeros(n_images, dtype=np.int64)
    out["total_intensity_no_ice"] = np.zeros(n_images)
    usable = (image_of_spot >= 0) & np.isfinite(d) & (d > 0)
    order = np.argsort(image_of_spot[usable], kind="stable")
    rows = np.flatnonzero(usable)[order]
    images = image_of_spot[rows]
    bounds = np.searchsorted(images, np.arange(n_images + 1))
    for image in np.flatnonzero(np.diff(bounds)):
        these = rows[bounds[image] : bounds[image + 1]]
        table = flex.reflection_table()
        d_star = 1.0 / d[these]
        table["rlp"] = flex.vec3_double(
            flex.double(d_star), flex.double(len(these), 0), flex.double(len(these), 0)
        )
        table["intensity.sum.value"] = flex.double(intensity[these])
        table["intensity.sum.variance"] = flex.double(variance[these])
        try:
            stats = stats_for_reflection_table(table, resolution_analysis=resolution_analysis)
        except (RuntimeError, IndexError, ValueError, ZeroDivisionError) as error:
            raise AnalysisError(image, str(error).splitlines()[0] if str(error) else "") from None
        out["n_spots_no_ice"][image] = stats.n_spots_no_ice
        out["n_spots_4A"][image] = stats.n_spots_4A
        out["total_intensity_no_ice"][image] = stats.total_intensity
        for name in FIELDS[3:]:
            out[name][image] = getattr(stats, name)
    return out
