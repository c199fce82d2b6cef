"""DIALS's per-image spot analysis on our spots: the numbers ``dials.spot_counts_per_image``
reports (spots away from ice rings, spots to 4 Å, the d_min estimates).

The d of each spot comes from the experiments' geometry (:class:`geometry.PanelFrames`, the
doubles of ``Panel.pixel_to_millimeter`` with the detector's px/mm strategy, lab
coordinates, and ``|s1 - s0|``: the norm of DIALS's ``rlp``); each image's spots then go
through DIALS's own ``per_image_analysis.stats_for_reflection_table``, so the numbers are
DIALS's. Both run in the tasks (:class:`DialsSpotAnalysis`, given to the per-image
statistic), where an image's spots are all at hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dials_refl_stats import geometry
from dials_refl_stats.analysis.per_image import AnalysisFailure
from dials_refl_stats.reflections import ReflectionLoadError

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

#: Per image: DIALS's resolution estimates failed on its spots (math errors on spots
#: that are not strong spots); the image has DIALS's counts and -1 for the estimates.
RESOLUTION_FAILED = "resolution_failed"


class AnalysisError(ReflectionLoadError):
    """DIALS's per-image analysis failed on one image (one line naming the file); the
    file was read, so ``input.on_error=skip`` stops too."""

    skippable = False


@dataclass(frozen=True)
class DialsSpotAnalysis:
    """DIALS's per-image analysis in the tasks (the statistic's ``SpotAnalysis``): d of
    each spot from the experiments' geometry (picklable :class:`~.geometry.PanelFrames`),
    then :func:`analyse_images`. Worker processes import DIALS for it."""

    frames: geometry.PanelFrames
    still: tuple[bool, ...]  # per experiment
    resolution_analysis: bool = True

    def spot_d(self, experiment, panel, xy, path_of_row) -> np.ndarray:
        self.frames.check_panels(experiment, panel, path_of_row)
        return self.frames.lab_and_d(experiment, panel, xy)[1]

    def analyse(self, image_of_spot, d, intensity, variance, n_images) -> dict[str, np.ndarray]:
        return analyse_images(
            image_of_spot, d, intensity, variance, n_images, self.resolution_analysis
        )

    def failed(self, error, path, image_id, frame, experiment) -> AnalysisError:
        still = 0 <= experiment < len(self.still) and self.still[experiment]
        image = f"the still of id {image_id}" if still else f"image {frame + 1}"
        return AnalysisError(
            f"{path}: DIALS's per-image analysis failed on {image} ({error}); "
            "resolution_analysis=False skips it"
        )


def analyse_images(
    image_of_spot: np.ndarray,
    d: np.ndarray,
    intensity: np.ndarray,
    variance: np.ndarray,
    n_images: int,
    resolution_analysis: bool = True,
) -> dict[str, np.ndarray]:
    """DIALS's per-image statistics for spots grouped by ``image_of_spot`` (0..n-1)."""
    try:
        from dials.algorithms.spot_finding.per_image_analysis import stats_for_reflection_table
        from dials.array_family import flex
    except ImportError as error:  # a Dask worker without DIALS
        raise AnalysisError(
            f"DIALS's per-image analysis needs DIALS where the tasks run ({error}); "
            "install it on the workers, or resolution_analysis=False skips the analysis"
        ) from None

    out = {name: np.full(n_images, -1.0) for name in FIELDS}
    out["n_spots_no_ice"] = np.zeros(n_images, dtype=np.int64)
    out["n_spots_4A"] = np.zeros(n_images, dtype=np.int64)
    out["total_intensity_no_ice"] = np.zeros(n_images)
    out[RESOLUTION_FAILED] = np.zeros(n_images, dtype=bool)
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
            try:
                stats = stats_for_reflection_table(table, resolution_analysis=resolution_analysis)
            except (ValueError, ZeroDivisionError):
                if not resolution_analysis:
                    raise
                # DIALS's estimates are written for strong spots: a math error on other
                # rows (logarithms and square roots of intensities <= 0, as weak
                # integrated reflections have) leaves this image without them
                stats = stats_for_reflection_table(table, resolution_analysis=False)
                out[RESOLUTION_FAILED][image] = True
        except (RuntimeError, IndexError, ValueError, ZeroDivisionError) as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise AnalysisFailure(int(image), detail) from None
        out["n_spots_no_ice"][image] = stats.n_spots_no_ice
        out["n_spots_4A"][image] = stats.n_spots_4A
        out["total_intensity_no_ice"][image] = stats.total_intensity
        for name in FIELDS[3:]:
            out[name][image] = getattr(stats, name)
    return out
