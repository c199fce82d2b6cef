"""DIALS's per-image spot analysis on our spots: the numbers ``dials.spot_counts_per_image``
reports (spots away from ice rings, spots to 4 Å, the d_min estimates).

The d of each spot comes from the experiments' geometry (:class:`geometry.PanelFrames`, the
doubles of ``Panel.pixel_to_millimeter`` with the detector's px/mm strategy, lab
coordinates, and ``|s1 - s0|``: the norm of DIALS's ``rlp``); each image's spots then go
through DIALS's ``per_image_analysis.stats_for_reflection_table``, in numpy with DIALS's
arithmetic (:mod:`dials_refl_stats.analysis.per_image_analysis`; DIALS's own function for
the rare image outside the port's domain), so the numbers are DIALS's. Both run in the
tasks (:class:`DialsSpotAnalysis`, given to the per-image statistic), where an image's
spots are all at hand.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from dials_refl_stats import geometry
from dials_refl_stats.analysis.ice_rings import LOWEST_D, ice_rings
from dials_refl_stats.analysis.per_image import AnalysisFailure
from dials_refl_stats.analysis.per_image_analysis import images_analysis
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
    then :func:`analyse_images`. Worker processes need DIALS for it."""

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
    """DIALS's per-image statistics for spots grouped by ``image_of_spot`` (0..n-1):
    :func:`~dials_refl_stats.analysis.per_image_analysis.images_analysis` (DIALS's
    arithmetic in numpy, every image at once), and DIALS's own
    ``stats_for_reflection_table`` for the images it leaves (``single``)."""
    require_dials()
    out = {name: np.full(n_images, -1.0) for name in FIELDS}
    out["n_spots_no_ice"] = np.zeros(n_images, dtype=np.int64)
    out["n_spots_4A"] = np.zeros(n_images, dtype=np.int64)
    out["total_intensity_no_ice"] = np.zeros(n_images)
    out[RESOLUTION_FAILED] = np.zeros(n_images, dtype=bool)
    usable = (image_of_spot >= 0) & np.isfinite(d) & (d > 0)
    order = np.argsort(image_of_spot[usable], kind="stable")
    rows = np.flatnonzero(usable)[order]
    if not rows.size:
        return out
    images = image_of_spot[rows]
    bounds = np.searchsorted(images, np.arange(n_images + 1))
    with np.errstate(over="ignore"):  # a subnormal d: an infinite d*, as in flex
        d_star = 1.0 / d[rows]
    d_min = float(d[rows].min())
    if d_min < LOWEST_D:  # the rings for it would not fit in memory
        image = int(images[np.argmin(d[rows])])
        detail = f"a spot at d = {d_min:.3g} Å: ice rings are made down to {LOWEST_D} Å"
        raise AnalysisFailure(image, f"{detail}; is the geometry right?")
    rings = ice_rings(d_min)
    batch = images_analysis(
        images, d_star, intensity[rows], variance[rows], rings, resolution_analysis
    )
    analysed = batch.single.size
    for name, field in zip(FIELDS, BATCH_FIELDS):
        out[name][:analysed] = batch.fields[field]
    # images outside the port's domain, in order (the first failure is named)
    single = np.flatnonzero(batch.single).tolist()
    stats_for_reflection_table = dials_stats_function() if single else None
    for image in single:
        these = slice(bounds[image], bounds[image + 1])
        spots = (d_star[these], intensity[rows[these]], variance[rows[these]])
        try:
            try:
                stats = _dials_stats(stats_for_reflection_table, *spots, resolution_analysis)
            except RESOLUTION_ERRORS:
                if not resolution_analysis:
                    raise
                # DIALS's estimates are written for strong spots: a math error on other
                # rows (logarithms and square roots of intensities <= 0, as weak
                # integrated reflections have) leaves this image without them
                stats = _dials_stats(stats_for_reflection_table, *spots, False)
                out[RESOLUTION_FAILED][image] = True
        except (RuntimeError, IndexError, ValueError, ZeroDivisionError) as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise AnalysisFailure(int(image), detail) from None
        for name, field in zip(FIELDS, BATCH_FIELDS):
            out[name][image] = getattr(stats, field)
    return out


#: Where DIALS's function for images outside the port's domain lives.
DIALS_ANALYSIS = "dials.algorithms.spot_finding.per_image_analysis"


def _missing_dials(error: str) -> AnalysisError:
    return AnalysisError(
        f"DIALS's per-image analysis needs DIALS where the tasks run ({error}); "
        "install it on the workers, or resolution_analysis=False skips the analysis"
    )


def require_dials() -> None:
    """DIALS where the tasks run (found, not imported: importing its ``flex`` takes ~0.3 s,
    and only the rare image outside the port's domain needs it)."""
    try:
        found = importlib.util.find_spec(DIALS_ANALYSIS) is not None
    except (ImportError, ValueError) as error:
        raise _missing_dials(str(error)) from None
    if not found:
        raise _missing_dials(f"No module named {DIALS_ANALYSIS!r}")


def dials_stats_function():
    """DIALS's ``stats_for_reflection_table`` (imported on first need)."""
    try:
        from dials.algorithms.spot_finding.per_image_analysis import stats_for_reflection_table
        from dials.array_family import flex  # noqa: F401 - the fallback's tables
    except ImportError as error:
        raise _missing_dials(str(error)) from None
    return stats_for_reflection_table


#: The names of :data:`FIELDS` in DIALS's ``StatsSingleImage``.
BATCH_FIELDS = (
    "n_spots_no_ice",
    "n_spots_4A",
    "total_intensity",
    "estimated_d_min",
    "d_min_distl_method_1",
    "d_min_distl_method_2",
    "noisiness_method_1",
    "noisiness_method_2",
)


#: What DIALS's resolution estimates raise on spots they are not written for: math
#: errors, and the d*^3 binner's assertion (shells of no width).
RESOLUTION_ERRORS = (ValueError, ZeroDivisionError, AssertionError)


def _dials_stats(stats_for_reflection_table, d_star, intensity, variance, resolution_analysis):
    """DIALS's ``stats_for_reflection_table`` of one image's spots (rlp = (d*, 0, 0))."""
    from dials.array_family import flex

    table = flex.reflection_table()
    table["rlp"] = flex.vec3_double(
        flex.double(d_star), flex.double(len(d_star), 0), flex.double(len(d_star), 0)
    )
    table["intensity.sum.value"] = flex.double(intensity)
    table["intensity.sum.variance"] = flex.double(variance)
    return stats_for_reflection_table(table, resolution_analysis=resolution_analysis)
