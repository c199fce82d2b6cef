"""Detector geometry from DIALS experiments, vectorised, as numpy arrays.

The DIALS side of the statistics that need experiments: which experiment each
reflection belongs to, pixel -> millimetre and lab-frame coordinates with the detector's
own px/mm strategy (``SimplePxMmStrategy`` panels: dxtbx's own arithmetic on the panel's
pixel size and d matrix, in numpy, the same doubles; any other strategy, e.g. Pilatus
parallax correction: ``Panel.pixel_to_millimeter`` and ``get_lab_coord`` themselves),
d-spacings of the observed positions, panel outlines and the beam centre. dxtbx and
DIALS are imported lazily, inside the functions.

The d-spacing of a position is geometric: the diffracted beam ``s1`` points from the
sample to the position's lab coordinate with ``|s1| = |s0| = 1/lambda``, and
``d = 1/|s1 - s0|`` (Bragg's law). It needs only the beam and the detector, so spots
that are not indexed get one too; it is the resolution of the observed position, not
the ``d`` of a Miller index (the integrated tables' ``d`` column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping, Sequence

import numpy as np

from dials_refl_stats.experiment_groups import distinct_ids, identifier_index, once_per_list
from dials_refl_stats.pipeline.errors import one_line
from dials_refl_stats.pipeline.experiment_models import model_runs
from dials_refl_stats.reflections import ReflectionLoadError


class GeometryError(ValueError):
    """Reflections that cannot be matched to the experiments; one line naming the file."""

    def __init__(self, message: str):
        super().__init__(one_line(str(message)))  # identifiers quoted from the file


class PanelError(ReflectionLoadError):
    """Rows on a panel their experiment's detector does not have, found in a task (one
    line, the file); the inputs disagree, so ``input.on_error=skip`` stops too, as when
    the driver finds it."""

    skippable = False


def experiment_indices(
    experiments, identifiers: Mapping[int, str], ids: np.ndarray, path: str
) -> np.ndarray:
    """Index into ``experiments`` of every row (``-1`` for ``id`` -1).

    A table with experiment identifiers is matched through them (``id`` -> identifier ->
    the experiment with that identifier); a table without identifiers (older DIALS) by
    position, ``id`` being the index into the experiment list.
    """
    ids = np.asarray(ids, dtype=np.int64)
    values, _ = distinct_ids(ids)
    assigned = values[values >= 0]
    lookup = {}
    if identifiers:
        known = identifier_index(experiments)
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
    mapped = ids >= 0
    if mapped.all():  # every row assigned: no masks
        return table[ids]
    result = np.full(ids.shape, -1, dtype=np.int64)
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


@dataclass(frozen=True)
class ModelIndex:
    """The distinct detector and beam models of an experiment list (by object, in order
    of first use, as dxtbx's ``detectors()`` and ``beams()``) and each experiment's
    position among them (-1: none): one pass over 10^5 stills, then numpy."""

    detectors: list
    beams: list
    detector_of: np.ndarray
    beam_of: np.ndarray


def model_index(experiments) -> ModelIndex:
    """:class:`ModelIndex` of ``experiments``, made once per list."""
    return once_per_list(experiments, "model_index", _model_index)


def _model_index(experiments) -> ModelIndex:
    """:class:`ModelIndex` of ``experiments``: of a light list, one look per run of
    experiments with the same models (10^5 stills of one file: one); of any other list,
    one per experiment. The first of a run stands for it: its detector then its beam,
    made (or refused) in the order of the experiments."""
    runs = model_runs(experiments) or [(e, 1) for e in experiments]
    detectors, beams, positions = _positions(first for first, _n in runs)
    positions = np.repeat(positions, [n for _first, n in runs], axis=1)
    return ModelIndex(detectors, beams, positions[0], positions[1])


def _positions(experiments) -> tuple[list, list, np.ndarray]:
    """The distinct detectors and beams of ``experiments`` (by object, in order of first
    use) and each experiment's position among them (-1: none), as ``(2, n)``; every
    experiment's detector, then its beam, asked for in order."""
    found: tuple[dict, dict] = ({}, {})  # id of a model -> (position, model)
    rows: tuple[list, list] = ([], [])
    for experiment in experiments:
        for kind, model in enumerate((experiment.detector, experiment.beam)):
            position = -1
            if model is not None:
                known = found[kind]
                position = known.setdefault(id(model), (len(known), model))[0]
            rows[kind].append(position)
    detectors, beams = ([model for _n, model in known.values()] for known in found)
    return detectors, beams, np.array(rows, dtype=np.int64).reshape(2, -1)


def shared_models(experiments) -> tuple[int | None, str]:
    """The experiment whose detector and beam serve rows with ``id`` -1, and why.

    Only when every experiment shares one detector and one beam model (a single
    sweep, or sweeps of one imageset); otherwise those rows get no geometry.
    """
    if len(experiments) == 0:
        return None, "no experiments"
    models = model_index(experiments)
    if (
        len(models.detectors) == 1
        and len(models.beams) == 1
        and (models.detector_of == 0).all()
        and (models.beam_of == 0).all()
    ):
        return 0, "all experiments share one detector and one beam"
    return None, "experiments have different detector or beam models"


def check_panels(
    experiments, experiment_of_row: np.ndarray, panel: np.ndarray, path: str = ""
) -> None:
    """``GeometryError`` when a row's panel is not on its experiment's detector."""
    sizes = once_per_list(
        experiments,
        "panel_counts",
        lambda known: np.array(
            [len(e.detector) if e.detector is not None else 0 for e in known], dtype=np.int64
        ),
    )
    refuse_bad_panels(sizes, experiment_of_row, panel, path)


def refuse_bad_panels(
    sizes: np.ndarray,
    experiment_of_row: np.ndarray,
    panel: np.ndarray,
    path: str | Callable[[int], str],
) -> None:
    """``GeometryError`` naming the first row (experiment -1: not checked) whose panel
    is not below ``sizes`` of its experiment (the panel count of its detector), and its
    file: ``path``, or ``path(row)`` for rows of several files."""
    experiment_of_row = np.asarray(experiment_of_row, dtype=np.int64)
    panel = np.asarray(panel, dtype=np.int64)
    has = experiment_of_row >= 0
    if not has.any():
        return
    if has.all():  # every row has an experiment: no masks
        bad = (panel < 0) | (panel >= sizes[experiment_of_row])
    else:
        bad = has.copy()
        bad[has] = (panel[has] < 0) | (panel[has] >= sizes[experiment_of_row[has]])
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        index = int(experiment_of_row[first])
        where = path(first) if callable(path) else path
        raise GeometryError(
            f"{where}: reflections on panel {panel[first]}, but the detector of "
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

    Each row uses its own experiment's detector panel and beam. Panels with dxtbx's
    ``SimplePxMmStrategy`` are converted by numpy with dxtbx's own arithmetic
    (:func:`simple_panel_positions`); any other px/mm strategy (parallax correction,
    offsets) by the panel itself (``Panel.pixel_to_millimeter``), one flex call for the
    rows of each (experiment, panel) pair.
    """
    experiment_of_row = np.asarray(experiment_of_row, dtype=np.int64)
    panel = np.asarray(panel, dtype=np.int64)
    xy_px = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
    n = xy_px.shape[0]
    models = [(e.detector, e.beam) for e in experiments]
    usable = np.array([det is not None and beam is not None for det, beam in models], bool)
    sizes = np.array([len(det) if ok else 0 for (det, _), ok in zip(models, usable)], np.int64)
    rows = np.flatnonzero((experiment_of_row >= 0) & (experiment_of_row < len(experiments)))
    rows = rows[usable[experiment_of_row[rows]]]
    if not rows.size:
        return _positions_of(n, rows, np.empty((0, 2)), np.empty((0, 3)), np.empty(0))
    index, number = experiment_of_row[rows], panel[rows]
    _refuse_missing_panels(index, number, sizes, path)
    # the (experiment, panel) pair of each row, as a position in all experiments' panels
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    key = offsets[index] + number
    present = np.flatnonzero(np.bincount(key, minlength=int(offsets[-1])))
    pairs = Pairs(
        present,
        np.searchsorted(offsets, present, side="right") - 1,
        np.zeros((int(offsets[-1]), 11)),  # pixel size (2), d matrix (9)
        {},
        np.zeros((len(models), 3)),
        np.zeros(len(models)),
        np.full(int(offsets[-1]), -1, dtype=np.int64),
        [],
    )
    distinct: dict[int, int] = {}  # id of a panel model -> its position in other_panels
    for k, e in zip(present.tolist(), pairs.experiment.tolist()):
        p = models[e][0][k - int(offsets[e])]
        if p.get_px_mm_strategy().name() == "SimplePxMmStrategy":
            pairs.frames[k, :2] = p.get_pixel_size()
            pairs.frames[k, 2:] = p.get_d_matrix()
        else:
            pairs.others[k] = p
            if id(p) not in distinct:  # stills share one detector: one panel, many pairs
                distinct[id(p)] = len(pairs.other_panels)
                pairs.other_panels.append(p)
            pairs.other_group[k] = distinct[id(p)]
    for e in np.unique(pairs.experiment).tolist():
        pairs.s0[e] = np.asarray(models[e][1].get_s0(), dtype=np.float64)
        pairs.s0_length[e] = np.linalg.norm(pairs.s0[e])
    xy = xy_px if rows.size == n else xy_px[rows]
    mm, lab, d = np.empty((rows.size, 2)), np.empty((rows.size, 3)), np.empty(rows.size)
    for start in range(0, rows.size, BLOCK_ROWS):  # temporaries stay in the CPU's caches
        block = slice(start, start + BLOCK_ROWS)
        _block_positions(
            xy[block], key[block], index[block], pairs, mm[block], lab[block], d[block]
        )
    return _positions_of(n, rows, mm, lab, d)


#: Rows converted at a time (small temporaries: memory-bound arithmetic runs in cache).
BLOCK_ROWS = 1 << 15
#: Up to this many (experiment, panel) pairs (1: one sweep on one panel), rows are
#: converted with the pair's panel and beam values broadcast; past it, with per-row
#: gathers of them (as fast as pair-by-pair masks from two pairs on).
PAIRS_BROADCAST = 1


@dataclass(frozen=True)
class Pairs:
    """The (experiment, panel) pairs of the rows: keys, experiments, frames, beams."""

    keys: np.ndarray  # position of each pair in all experiments' panels
    experiment: np.ndarray  # each pair's experiment
    frames: np.ndarray  # per key: pixel size and d matrix (simple panels)
    others: dict  # key -> panel, for px/mm strategies other than the simple one
    s0: np.ndarray  # per experiment
    s0_length: np.ndarray  # per experiment: |s0|
    #: per key: which of ``other_panels`` converts its rows (-1: a simple panel)
    other_group: np.ndarray
    other_panels: list  # the distinct panel models of ``others``


def _positions_of(n: int, rows: np.ndarray, mm, lab, d) -> Positions:
    """:class:`Positions` of all ``n`` rows from those of ``rows`` (NaN elsewhere)."""
    if rows.size < n:
        mm_all, lab_all, d_all = (
            np.full((n, 2), np.nan),
            np.full((n, 3), np.nan),
            np.full(n, np.nan),
        )
        mm_all[rows], lab_all[rows], d_all[rows] = mm, lab, d
        mm, lab, d = mm_all, lab_all, d_all
    return Positions(mm=mm, lab=lab, d=d, n_without_geometry=int(np.isnan(d).sum()))


def _block_positions(xy, key, index, pairs: Pairs, mm, lab, d) -> None:
    """Fill ``mm``, ``lab`` and ``d`` of a block of rows."""
    if pairs.keys.size <= PAIRS_BROADCAST:
        k, e = int(pairs.keys[0]), int(pairs.experiment[0])
        _pair_positions(xy, k, pairs, mm, lab)
        d[:] = _d_of_lab(lab, pairs.s0[e], pairs.s0_length[e])
        return
    simple = _other_panel_positions(
        xy, pairs.other_group[key], pairs.other_panels.__getitem__, lab, mm
    )
    some = np.flatnonzero(simple)
    if some.size == key.size:
        simple_panel_positions(xy, [c[key] for c in pairs.frames.T], mm, lab)
    elif some.size:
        mm[some], lab[some] = simple_panel_positions(
            xy[some], [c[key[some]] for c in pairs.frames.T]
        )
    d[:] = _d_of_lab(lab, pairs.s0[index], pairs.s0_length[index][:, np.newaxis])


def _pair_positions(xy, k: int, pairs: Pairs, mm, lab) -> None:
    """mm and lab of rows on one (experiment, panel) pair, into ``mm`` and ``lab``."""
    if k in pairs.others:
        mm[:], lab[:] = _flex_panel_positions(pairs.others[k], xy)
    else:
        simple_panel_positions(xy, pairs.frames[k], mm, lab)


def _other_panel_positions(xy, group, panel_of_group, lab, mm=None) -> np.ndarray:
    """Fill ``lab`` (and ``mm``) of the rows whose panel converts positions itself
    (``group >= 0``: which distinct panel model), one flex call per model present, the
    rows grouped by one sort; the mask of the other rows (simple panels)."""
    simple = group < 0
    rows = np.flatnonzero(~simple)
    if not rows.size:
        return simple
    rows = rows[np.argsort(group[rows], kind="stable")]
    models, starts = np.unique(group[rows], return_index=True)
    for g, these in zip(models.tolist(), np.split(rows, starts[1:])):
        panel_mm, lab[these] = _flex_panel_positions(panel_of_group(g), xy[these])
        if mm is not None:
            mm[these] = panel_mm
    return simple


def _refuse_missing_panels(index: np.ndarray, number: np.ndarray, sizes, path: str) -> None:
    """``GeometryError`` for the first (experiment, panel) pair whose panel is not on the
    experiment's detector."""
    bad = (number < 0) | (number >= sizes[index])
    if not bad.any():
        return
    first = int(index[bad].min())
    number = int(number[bad & (index == first)].min())
    raise GeometryError(
        f"{path}: reflections on panel {number}, but the detector of "
        f"experiment {first} has {sizes[first]} panel(s)"
    )


def simple_panel_positions(
    xy_px: np.ndarray, frame, mm: np.ndarray | None = None, lab: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Millimetres and lab coordinates of pixel positions on ``SimplePxMmStrategy``
    panels, with the arithmetic of dxtbx's C++, operation for operation (so the same
    doubles; dxtbx's model extension has no fused multiply-adds):
    ``SimplePxMmStrategy::to_millimeter`` is ``(x * pixel_size[0], y * pixel_size[1])``
    and ``VirtualPanelFrame::get_lab_coord`` is ``d * (x_mm, y_mm, 1)``, scitbx's
    ``mat3 * vec3``: ``d[3i] * x_mm + d[3i + 1] * y_mm + d[3i + 2] * 1``.

    ``frame``: the panel's ``get_pixel_size()`` then its ``get_d_matrix()`` (11 values),
    each a number or one value per row. ``mm``/``lab``: arrays to fill (else new ones).
    """
    mm = np.empty((xy_px.shape[0], 2)) if mm is None else mm
    lab = np.empty((xy_px.shape[0], 3)) if lab is None else lab
    mm[:, 0] = xy_px[:, 0] * frame[0]
    mm[:, 1] = xy_px[:, 1] * frame[1]
    for i in range(3):
        fast, slow, origin = frame[2 + 3 * i], frame[3 + 3 * i], frame[4 + 3 * i]
        lab[:, i] = fast * mm[:, 0] + slow * mm[:, 1] + origin * 1.0
    return mm, lab


#: Pixel coordinates at least this large (or not finite) have no position: dxtbx's
#: parallax correction asserts on them (their ray overflows), where numpy gives NaN.
MAX_PIXEL_COORDINATE = 1e9


def _flex_panel_positions(panel, xy_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Millimetres and lab coordinates by the panel itself (one flex call), for px/mm
    strategies other than the simple one (parallax correction, offsets); NaN for
    positions that are not finite or beyond :data:`MAX_PIXEL_COORDINATE` (corrupt), and
    for every position of a panel dxtbx cannot convert any position on."""
    xy_px = np.asarray(xy_px, dtype=np.float64)
    usable = (np.abs(xy_px) < MAX_PIXEL_COORDINATE).all(axis=1)  # False for NaN too
    if not usable.all():
        mm, lab = np.full((xy_px.shape[0], 2), np.nan), np.full((xy_px.shape[0], 3), np.nan)
        if usable.any():
            mm[usable], lab[usable] = _flex_panel_positions(panel, xy_px[usable])
        return mm, lab
    from dxtbx import flumpy

    points = flumpy.vec_from_numpy(np.ascontiguousarray(xy_px))
    try:
        mm_points = panel.pixel_to_millimeter(points)
    except RuntimeError:
        # dxtbx's parallax correction asserts mu > 0 and a ray not parallel to the panel:
        # for finite positions the ray's cosine is the panel's distance from the sample
        # over lengths, so it fails for every point of the panel or for none (a panel
        # through the sample, a NaN origin or axis, mu <= 0: a hand-edited .expt)
        return np.full((xy_px.shape[0], 2), np.nan), np.full((xy_px.shape[0], 3), np.nan)
    mm = flumpy.to_numpy(mm_points).reshape(-1, 2)
    return mm, flumpy.to_numpy(panel.get_lab_coord(mm_points)).reshape(-1, 3)


def _d_of_lab(lab: np.ndarray, s0: np.ndarray, s0_length) -> np.ndarray:
    """:func:`d_spacing`, ``|s0|`` given (a number, or a column of one per row)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        unit_s1 = lab / np.linalg.norm(lab, axis=1, keepdims=True)
    return _d_of_s1(unit_s1, s0, s0_length)


def _d_of_s1(unit_s1: np.ndarray, s0: np.ndarray, s0_length) -> np.ndarray:
    """:func:`d_spacing` from the unit vectors to the positions and the beam."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s1 = unit_s1 * s0_length
        return 1.0 / np.linalg.norm(s1 - s0, axis=1)


def d_spacing(lab: np.ndarray, s0: Sequence[float]) -> np.ndarray:
    """d (Angstrom) of lab positions (mm, sample at the origin) for incident beam ``s0``."""
    lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    s0 = np.asarray(s0, dtype=np.float64)
    norm = np.linalg.norm(lab, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit_s1 = lab / norm
    return _d_of_s1(unit_s1, s0, np.linalg.norm(s0))


def panel_image_sizes(experiments) -> dict[int, tuple[int, int]]:
    """Panel number -> ``(width, height)`` in pixels, the largest over all detectors."""
    sizes: dict[int, tuple[int, int]] = {}
    for detector in model_index(experiments).detectors:
        for number, p in enumerate(detector):
            width, height = p.get_image_size()
            old = sizes.get(number, (0, 0))
            sizes[number] = (max(old[0], int(width)), max(old[1], int(height)))
    return sizes


def detector_layouts(experiments) -> int:
    """How many different detectors the experiments have, by their panels' image and
    pixel sizes (10^4 stills' copies of one detector are one)."""
    return len(
        {
            tuple((p.get_image_size(), p.get_pixel_size()) for p in detector)
            for detector in model_index(experiments).detectors
        }
    )


def n_panels(experiments) -> int:
    """The largest panel count of the experiments' detectors (0 without experiments)."""
    return max((len(d) for d in model_index(experiments).detectors), default=0)


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
    ``None`` when the beam misses that plane too, or when the models give no finite point
    (a hand-edited ``.expt`` with an infinite or NaN origin, axis or beam).
    """
    s0 = beam.get_s0()
    try:
        number, xy_mm = detector.get_ray_intersection(s0)
    except RuntimeError:
        number = None
    if number is not None and number >= 0:
        p = detector[int(number)]
        try:  # the parallax correction asserts on panels it cannot correct for
            px = p.millimeter_to_pixel(xy_mm)
        except RuntimeError:
            px = (math.nan, math.nan)
        lab = p.get_lab_coord(xy_mm)
        if np.isfinite([*px, *xy_mm, *lab]).all():
            return BeamCentre(int(number), tuple(px), tuple(xy_mm), tuple(lab))
    try:
        p = detector[0]
        lab = tuple(p.get_lab_coord(p.get_bidirectional_ray_intersection(s0)))
    except RuntimeError:
        return None
    return BeamCentre(None, None, None, lab) if np.isfinite(lab).all() else None


def beam_centres(experiments) -> list[dict]:
    """Where each experiment's direct beam meets its detector (JSON-ready dicts).

    Experiments without a detector or beam, or whose beam misses the detector plane,
    are left out.
    """
    identifiers = list(experiments.identifiers())
    models = model_index(experiments)
    # one intersection per distinct (detector, beam) pair: 10^5 stills usually share one
    pairs = models.detector_of * max(len(models.beams), 1) + models.beam_of
    of_pair: dict[int, dict | None] = {}
    centres = []
    for index in np.flatnonzero((models.detector_of >= 0) & (models.beam_of >= 0)).tolist():
        pair = int(pairs[index])
        if pair not in of_pair:
            detector = models.detectors[models.detector_of[index]]
            centre = beam_centre(detector, models.beams[models.beam_of[index]])
            of_pair[pair] = None if centre is None else centre.as_dict()
        centre = of_pair[pair]
        if centre is not None:
            identifier = identifiers[index] or None
            centres.append({"experiment": index, "identifier": identifier, **centre})
    return centres


def lab_outlines(experiments) -> list[np.ndarray]:
    """Every panel outline (``(5, 3)`` lab mm) of every detector of ``experiments``."""
    return [
        o.lab for detector in model_index(experiments).detectors for o in panel_outlines(detector)
    ]


class PicklableDetector:
    """A dxtbx detector that pickles as its ``to_dict()`` (as in a ``.expt`` file) and is
    rebuilt by ``Detector.from_dict``: a plain pickle of the model can only be read where
    scitbx's converters are already registered (a forked worker, not a Dask worker that
    has imported nothing of DIALS). ``to_dict()`` leaves out the dx/dy correction maps of
    offset px/mm strategies (dxtbx keeps them with the imageset; 3.22+ applies them
    without the images): they travel beside it as numpy arrays and are set again."""

    def __init__(self, model) -> None:
        self.model = model

    def __reduce__(self):
        return (_detector_from_dict, (self.model.to_dict(), _offset_maps(self.model)))


#: px/mm strategies with dx/dy maps (dxtbx names), and whether they correct parallax
_OFFSET_STRATEGIES = {"OffsetPxMmStrategy": False, "OffsetParallaxCorrectedPxMmStrategy": True}


def _offset_maps(detector) -> dict[int, tuple[str, np.ndarray, np.ndarray]]:
    """Panel number -> (strategy name, dx, dy) of panels with offset strategies."""
    maps = {}
    for number, panel in enumerate(detector):
        strategy = panel.get_px_mm_strategy()
        if strategy.name() in _OFFSET_STRATEGIES:
            dx, dy = (m.as_numpy_array() for m in (strategy.dx(), strategy.dy()))
            maps[number] = (strategy.name(), dx, dy)
    return maps


def _detector_from_dict(description: dict, offset_maps: dict | None = None) -> PicklableDetector:
    # dxtbx's C++ models, as pipeline/experiment_models.py makes them: a worker does not
    # import dxtbx.model (~0.45 s each) to rebuild a detector
    from dials_refl_stats.pipeline.experiment_models import NotLight, model_classes

    try:
        models = model_classes()
    except NotLight:  # pragma: no cover - a dxtbx build without the extension there
        import dxtbx.model as models
    detector = models.Detector.from_dict(description)
    if offset_maps:
        from scitbx.array_family import flex

        for number, (name, dx, dy) in offset_maps.items():
            panel = detector[number]
            # flex.double of a 2-d array keeps its grid (the maps' shape)
            dx_map, dy_map = (flex.double(np.ascontiguousarray(m, np.float64)) for m in (dx, dy))
            strategy = getattr(models, name)
            if _OFFSET_STRATEGIES[name]:
                made = strategy(panel.get_mu(), panel.get_thickness(), dx_map, dy_map)
            else:
                made = strategy(dx_map, dy_map)
            panel.set_px_mm_strategy(made)
    return PicklableDetector(detector)


@dataclass(frozen=True)
class PanelFrames:
    """Every detector panel's pixel size and d matrix and every experiment's beam, as
    numpy arrays: the geometry of :func:`map_positions`, picklable, for tasks on worker
    processes (the same doubles as :func:`map_positions`). Panels with another px/mm
    strategy than the simple one (e.g. parallax correction) are kept as dxtbx panels
    (``others``) and convert their rows themselves, as there.

    Distinct detectors are stored once; the panels of detector ``k`` have keys
    ``offsets[k] .. offsets[k + 1] - 1``, experiment ``e`` uses detector ``detector[e]``.
    """

    offsets: np.ndarray  # (n_detectors + 1,) int64
    detector: np.ndarray  # (n_experiments,) int64
    frames: np.ndarray  # (n_keys, 11): pixel size (2), d matrix (9)
    #: key -> (index into ``detectors``, panel number), for other px/mm strategies
    others: dict
    #: :class:`PicklableDetector` of those panels (a dxtbx panel alone cannot be pickled)
    detectors: list
    s0: np.ndarray  # (n_experiments, 3)
    s0_length: np.ndarray  # (n_experiments,)

    @cached_property
    def other_group(self) -> np.ndarray:
        """Per key: its position in ``others`` (-1: a simple panel)."""
        group = np.full(self.frames.shape[0], -1, dtype=np.int64)
        group[list(self.others)] = np.arange(len(self.others))
        return group

    @cached_property
    def _other_panels(self) -> list:
        """The dxtbx panels of ``others``, in its order."""
        return [self.detectors[d].model[n] for d, n in self.others.values()]

    def _panel(self, group: int):
        return self._other_panels[group]

    def __getstate__(self) -> dict:
        """Without the cached panels (a dxtbx panel alone cannot be pickled) and the
        last positions mapped."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_other_panels", "_last")}

    @property
    def panel_counts(self) -> np.ndarray:
        """Panels of each experiment's detector."""
        return np.diff(self.offsets)[self.detector]

    def check_panels(
        self, experiment_of_row: np.ndarray, panel: np.ndarray, path: str | Callable[[int], str]
    ) -> None:
        """:func:`check_panels`, from the panel counts; :class:`PanelError`."""
        try:
            refuse_bad_panels(self.panel_counts, experiment_of_row, panel, path)
        except GeometryError as error:
            raise PanelError(str(error)) from None

    def lab_and_d(
        self, experiment_of_row: np.ndarray, panel: np.ndarray, xy_px: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lab coordinates (mm) and d (Angstrom) of pixel positions; NaN for rows with
        experiment -1. Panels must have been checked (:meth:`check_panels`).

        The last call's rows and results are kept: the statistics of ``dials.refl_stats``
        map the same rows of a chunk one after the other (parallax-corrected panels cost
        ~0.3 us a row through dxtbx)."""
        rows = (experiment_of_row, panel, xy_px)
        last = self.__dict__.get("_last")
        if last is None or not all(map(_same_array, last[0], rows)):
            last = (tuple(np.array(a) for a in rows), self._lab_and_d(*rows))
            self.__dict__["_last"] = last
        return last[1][0].copy(), last[1][1].copy()

    def _lab_and_d(
        self, experiment_of_row: np.ndarray, panel: np.ndarray, xy_px: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n = xy_px.shape[0]
        lab, d = np.full((n, 3), np.nan), np.full(n, np.nan)
        rows = np.flatnonzero(experiment_of_row >= 0)
        for start in range(0, rows.size, BLOCK_ROWS):
            block = rows[start : start + BLOCK_ROWS]
            every = block.size == n
            index = experiment_of_row if every else experiment_of_row[block]
            key = self.offsets[self.detector[index]] + (panel if every else panel[block])
            xy = xy_px if every else xy_px[block]
            block_lab = np.empty((block.size, 3))
            simple = _other_panel_positions(xy, self.other_group[key], self._panel, block_lab)
            some = np.flatnonzero(simple)
            if some.size == block.size:
                simple_panel_positions(xy, [c[key] for c in self.frames.T], lab=block_lab)
            elif some.size:
                frame = [c[key[some]] for c in self.frames.T]
                block_lab[some] = simple_panel_positions(xy[some], frame)[1]
            block_d = _d_of_lab(block_lab, self.s0[index], self.s0_length[index][:, np.newaxis])
            if every:
                return block_lab, block_d
            lab[block], d[block] = block_lab, block_d
        return lab, d


def _same_array(kept: np.ndarray, given: np.ndarray) -> bool:
    given = np.asarray(given)
    return kept.shape == given.shape and kept.dtype == given.dtype and np.array_equal(kept, given)


#: The experiments of the last :func:`panel_frames` call and their frames: the programs
#: of ``dials.refl_stats`` share one object (and its last mapped rows).
_LAST_FRAMES: list = [None, None]


def panel_frames(experiments) -> PanelFrames | None:
    """:class:`PanelFrames` of ``experiments``; ``None`` when an experiment has no
    detector or beam. The same object for the same experiments object, one after the
    other."""
    if _LAST_FRAMES[0] is experiments:
        return _LAST_FRAMES[1]
    frames = _panel_frames(experiments)
    _LAST_FRAMES[:] = [experiments, frames]
    return frames


def _panel_frames(experiments) -> PanelFrames | None:
    models = model_index(experiments)
    if (models.detector_of < 0).any() or (models.beam_of < 0).any():
        return None
    offsets, frames, others = [0], [], {}
    kept: list = []  # detectors with panels of other px/mm strategies
    for detector in models.detectors:
        for number, p in enumerate(detector):
            if p.get_px_mm_strategy().name() != "SimplePxMmStrategy":
                if not kept or kept[-1] is not detector:
                    kept.append(detector)
                others[len(frames)] = (len(kept) - 1, number)
                frames.append((np.nan,) * 11)
            else:
                frames.append((*p.get_pixel_size(), *p.get_d_matrix()))
        offsets.append(offsets[-1] + len(detector))
    beam_s0 = np.asarray([b.get_s0() for b in models.beams], dtype=np.float64).reshape(-1, 3)
    beam_length = np.array([np.linalg.norm(v) for v in beam_s0])
    return PanelFrames(
        offsets=np.asarray(offsets, dtype=np.int64),
        detector=models.detector_of.copy(),
        frames=np.asarray(frames, dtype=np.float64).reshape(-1, 11),
        others=others,
        detectors=[PicklableDetector(d) for d in kept],
        s0=beam_s0[models.beam_of],
        s0_length=beam_length[models.beam_of],
    )
