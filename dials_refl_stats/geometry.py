"""Detector geometry from DIALS experiments, vectorised, as numpy arrays.

The DIALS side of the statistics that need experiments: which experiment each
reflection belongs to, pixel -> millimetre (``Panel.pixel_to_millimeter``, so the
detector's own px/mm strategy, e.g. Pilatus parallax correction, is applied), lab-frame
coordinates (``Panel.get_lab_coord``), d-spacings of the observed positions, panel
outlines and the beam centre. dxtbx and DIALS are imported lazily, inside the functions.

The d-spacing of a position is geometric: the diffracted beam ``s1`` points from the
sample to the position's lab coordinate with ``|s1| = |s0| = 1/lambda``, and
``d = 1/|s1 - s0|`` (Bragg's law). It needs only the beam and the detector, so spots
that are not indexed get one too; it is the resolution of the observed position, not
the ``d`` of a Miller index (the integrated tables' ``d`` column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from dials_refl_stats.analysis.grouping import group_by_pairs


class GeometryError(ValueError):
    """Reflections that cannot be matched to the experiments; one line naming the file."""


def experiment_indices(
    experiments, identifiers: Mapping[int, str], ids: np.ndarray, path: str
) -> np.ndarray:
    """Index into ``experiments`` of every row (``-1`` for ``id`` -1).

    A table with experiment identifiers is matched through them (``id`` -> identifier ->
    the experiment with that identifier); a table without identifiers (older DIALS) by
    position, ``id`` being the index into the experiment list.
    """
    ids = np.asarray(ids, dtype=np.int64)
    values = np.unique(ids)
    assigned = values[values >= 0]
    lookup = {}
    if identifiers:
        known = {identifier: i for i, identifier in enumerate(experiments.identifiers())}
        for value in assigned:
            identifier = identifiers.get(int(value))
            if identifier is None:
                raise GeometryError(
                    f"{path}: rows with id {value} have no experiment identifier in the table"
                )
            if identifier not in known:
                raise GeometryError(
                    f"{path}: experiment identifier {identifier} (id {value}) is not in "
                    f"the experiment list given; pass the .expt written with this table"
                )
            lookup[int(value)] = known[identifier]
    else:
        for value in assigned:
            if value >= len(experiments):
                raise GeometryError(
                    f"{path}: rows with id {value} but only {len(experiments)} "
                    "experiment(s) given (the table has no identifiers, so id is "
                    "the index into the experiment list)"
                )
            lookup[int(value)] = int(value)
    table = np.full(int(values.max()) + 2 if values.size else 1, -1, dtype=np.int64)
    for value, index in lookup.items():
        table[value] = index
    result = np.full(ids.shape, -1, dtype=np.int64)
    mapped = ids >= 0
    result[mapped] = table[ids[mapped]]
    return result


def row_experiments(
    experiments,
    identifiers: Mapping[int, str],
    ids: np.ndarray,
    panel: np.ndarray,
    path: str,
    shared_index: int | None = None,
) -> np.ndarray:
    """:func:`experiment_indices`, rows with ``id`` -1 given ``shared_index`` (when not
    ``None``, see :func:`shared_models`), and every row's panel checked
    (:func:`check_panels`)."""
    experiment = experiment_indices(experiments, identifiers, ids, path)
    if shared_index is not None:
        experiment[np.asarray(ids) < 0] = shared_index
    check_panels(experiments, experiment, panel, path)
    return experiment


def shared_models(experiments) -> tuple[int | None, str]:
    """The experiment whose detector and beam serve rows with ``id`` -1, and why.

    Only when every experiment shares one detector and one beam model (a single
    sweep, or sweeps of one imageset); otherwise those rows get no geometry.
    """
    if len(experiments) == 0:
        return None, "no experiments"
    if len(experiments.detectors()) == 1 and len(experiments.beams()) == 1:
        return 0, "all experiments share one detector and one beam"
    return None, "experiments have different detector or beam models"


def check_panels(
    experiments, experiment_of_row: np.ndarray, panel: np.ndarray, path: str = ""
) -> None:
    """``GeometryError`` when a row's panel is not on its experiment's detector."""
    experiment_of_row = np.asarray(experiment_of_row, dtype=np.int64)
    panel = np.asarray(panel, dtype=np.int64)
    has = experiment_of_row >= 0
    if not has.any():
        return
    sizes = np.array(
        [len(e.detector) if e.detector is not None else 0 for e in experiments],
        dtype=np.int64,
    )
    bad = has.copy()
    bad[has] = (panel[has] < 0) | (panel[has] >= sizes[experiment_of_row[has]])
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        index = int(experiment_of_row[first])
        raise GeometryError(
            f"{path}: reflections on panel {panel[first]}, but the detector of "
            f"experiment {index} has {sizes[index]} panel(s)"
        )


@dataclass(frozen=True)
class Positions:
    """Per row: millimetres on the panel, lab-frame coordinates (mm), d (Angstrom).

    NaN where the row has no experiment (or its panel is not on the detector).
    """

    mm: np.ndarray
    lab: np.ndarray
    d: np.ndarray
    n_without_geometry: int


def map_positions(
    experiments,
    experiment_of_row: np.ndarray,
    panel: np.ndarray,
    xy_px: np.ndarray,
    *,
    path: str = "",
) -> Positions:
    """Millimetres, lab coordinates and d of pixel positions ``xy_px`` (``(n, 2)``).

    Each row uses its own experiment's detector panel and beam. Rows are grouped by
    (experiment, panel) with one sort; the rows of each pair are converted in one flex call.
    """
    from dxtbx import flumpy

    experiment_of_row = np.asarray(experiment_of_row, dtype=np.int64)
    panel = np.asarray(panel, dtype=np.int64)
    xy_px = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
    n = xy_px.shape[0]
    mm = np.full((n, 2), np.nan)
    lab = np.full((n, 3), np.nan)
    d = np.full(n, np.nan)
    rows = np.flatnonzero((experiment_of_row >= 0) & (experiment_of_row < len(experiments)))
    pairs, grouping = group_by_pairs(experiment_of_row[rows], panel[rows])
    for (index, number), members in zip(pairs, grouping):
        experiment = experiments[int(index)]
        detector, beam = experiment.detector, experiment.beam
        if detector is None or beam is None:
            continue
        if not 0 <= number < len(detector):
            raise GeometryError(
                f"{path}: reflections on panel {number}, but the detector of "
                f"experiment {index} has {len(detector)} panel(s)"
            )
        these = rows[members]
        p = detector[int(number)]
        points = flumpy.vec_from_numpy(np.ascontiguousarray(xy_px[these]))
        mm_points = p.pixel_to_millimeter(points)
        mm[these] = flumpy.to_numpy(mm_points).reshape(-1, 2)
        lab[these] = flumpy.to_numpy(p.get_lab_coord(mm_points)).reshape(-1, 3)
        d[these] = d_spacing(lab[these], np.asarray(beam.get_s0(), dtype=np.float64))
    return Positions(mm=mm, lab=lab, d=d, n_without_geometry=int(np.isnan(d).sum()))


def d_spacing(lab: np.ndarray, s0: Sequence[float]) -> np.ndarray:
    """d (Angstrom) of lab positions (mm, sample at the origin) for incident beam ``s0``."""
    lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    s0 = np.asarray(s0, dtype=np.float64)
    norm = np.linalg.norm(lab, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        s1 = lab / norm * np.linalg.norm(s0)
        return 1.0 / np.linalg.norm(s1 - s0, axis=1)


def panel_image_sizes(experiments) -> dict[int, tuple[int, int]]:
    """Panel number -> ``(width, height)`` in pixels, the largest over all detectors."""
    sizes: dict[int, tuple[int, int]] = {}
    for detector in experiments.detectors():
        for number, p in enumerate(detector):
            width, height = p.get_image_size()
            old = sizes.get(number, (0, 0))
            sizes[number] = (max(old[0], int(width)), max(old[1], int(height)))
    return sizes


def n_panels(experiments) -> int:
    """The largest panel count of the experiments' detectors (0 without experiments)."""
    return max((len(d) for d in experiments.detectors()), default=0)


@dataclass(frozen=True)
class PanelOutline:
    """A panel's corners, closed (first corner repeated), in lab mm and in its pixels."""

    panel: int
    name: str
    lab: np.ndarray  # (5, 3)
    image_size: tuple[int, int]


def panel_outlines(detector) -> list[PanelOutline]:
    """The outline of every panel of ``detector`` in the lab frame."""
    outlines = []
    for number, p in enumerate(detector):
        width_mm, height_mm = p.get_image_size_mm()
        corners = [(0.0, 0.0), (width_mm, 0.0), (width_mm, height_mm), (0.0, height_mm), (0.0, 0.0)]
        lab = np.array([p.get_lab_coord(c) for c in corners], dtype=np.float64)
        width, height = p.get_image_size()
        outlines.append(PanelOutline(number, p.get_name(), lab, (int(width), int(height))))
    return outlines


@dataclass(frozen=True)
class BeamCentre:
    """Where the direct beam meets the detector (``panel`` ``None``: in no panel)."""

    panel: int | None
    px: tuple[float, float] | None
    mm: tuple[float, float] | None
    lab: tuple[float, float, float]

    def as_dict(self) -> dict:
        return {"panel": self.panel, "px": self.px, "mm": self.mm, "lab": self.lab}


def beam_centre(detector, beam) -> BeamCentre | None:
    """The direct beam's intersection with ``detector``.

    ``Detector.get_ray_intersection(s0)`` when the beam hits a panel; otherwise (a gap,
    or off the detector) the intersection with the plane of panel 0, with no panel.
    ``None`` when the beam misses that plane too.
    """
    s0 = beam.get_s0()
    try:
        number, xy_mm = detector.get_ray_intersection(s0)
    except RuntimeError:
        number = None
    if number is not None and number >= 0:
        p = detector[int(number)]
        px = p.millimeter_to_pixel(xy_mm)
        lab = p.get_lab_coord(xy_mm)
        return BeamCentre(int(number), tuple(px), tuple(xy_mm), tuple(lab))
    try:
        p = detector[0]
        xy_mm = p.get_bidirectional_ray_intersection(s0)
        return BeamCentre(None, None, None, tuple(p.get_lab_coord(xy_mm)))
    except RuntimeError:
        return None


def beam_centres(experiments) -> list[dict]:
    """Where each experiment's direct beam meets its detector (JSON-ready dicts).

    Experiments without a detector or beam, or whose beam misses the detector plane,
    are left out.
    """
    identifiers = list(experiments.identifiers())
    centres = []
    for index, experiment in enumerate(experiments):
        if experiment.detector is None or experiment.beam is None:
            continue
        centre = beam_centre(experiment.detector, experiment.beam)
        if centre is not None:
            centres.append(
                {"experiment": index, "identifier": identifiers[index] or None, **centre.as_dict()}
            )
    return centres


def lab_outlines(experiments) -> list[np.ndarray]:
    """Every panel outline (``(5, 3)`` lab mm) of every detector of ``experiments``."""
    return [o.lab for detector in experiments.detectors() for o in panel_outlines(detector)]
