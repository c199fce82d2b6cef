"""The d*^2 of the ice rings DIALS's per-image analysis avoids, without importing DIALS.

``stats_for_reflection_table`` marks spots near the rings of hexagonal ice with
``PowderRingFilter`` (unit cell 4.498, 4.498, 7.338, 90, 90, 120; space group 194; width
0.004 in d*^2). Importing that filter imports DIALS's ``flex`` (and with it pandas):
~0.3 s, half of a small per-image run. The rings are cctbx's numbers, so they are made
here with cctbx as the filter makes them (:func:`powder_ring_d_star_sq`), and the rings
of every d_min down to :data:`TABLE_D_MIN` ship with the package
(``data/ice_rings_d_star_sq.npy``, written by :func:`write_table`; the tests compare it
with DIALS's filter), so a run imports neither DIALS nor cctbx for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .per_image_analysis import ICE_HALF_WIDTH

#: Hexagonal ice, as ``dials.algorithms.integration.filtering``'s phil gives it.
ICE_UNIT_CELL = (4.498, 4.498, 7.338, 90, 90, 120)
ICE_SPACE_GROUP = 194
#: The shipped rings serve every d_min at or above this (in Å: beyond X-ray data).
TABLE_D_MIN = 0.2
TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "ice_rings_d_star_sq.npy"

#: Rings are made for spots down to this d (Å) and no further: their number grows as
#: 1/d^3 (24,000 at 0.1 Å, 190,000 at 0.05 Å, 24 million at 0.01 Å), and no diffraction
#: reaches it (X-rays stop at half the wavelength; electrons at small angles).
LOWEST_D = 0.05

#: The rings at hand: (the d_min they serve down to, sorted d*^2), per process.
_RINGS: list = [np.inf, None]


def powder_ring_d_star_sq(d_min: float) -> np.ndarray:
    """``PowderRingFilter(ice cell, 194, d_min, 2 * ICE_HALF_WIDTH).d_star_sq`` (sorted),
    with cctbx, by the filter's own steps."""
    from cctbx import sgtbx, uctbx
    from cctbx.miller import index_generator

    space_group = sgtbx.space_group_info(number=ICE_SPACE_GROUP).group()
    unit_cell = space_group.average_unit_cell(uctbx.unit_cell(ICE_UNIT_CELL))
    half_width = (2 * ICE_HALF_WIDTH) / 2.0
    d_min = uctbx.d_star_sq_as_d(uctbx.d_as_d_star_sq(d_min) + half_width)
    indices = index_generator(unit_cell, space_group.type(), False, d_min).to_array()
    return np.sort(np.array(unit_cell.d_star_sq(indices)))


def ice_rings(d_min: float) -> np.ndarray:
    """Sorted ring d*^2 including every ring the filter makes for spots down to ``d_min``
    (a superset: the analysis bounds them per image): the shipped table, or below
    :data:`TABLE_D_MIN` rings made once per process for a little further than asked
    (``d_min`` >= :data:`LOWEST_D`)."""
    if not d_min >= LOWEST_D:
        raise ValueError(f"ice rings are made down to {LOWEST_D} Å, not {d_min:.3g} Å")
    if d_min < _RINGS[0]:
        if d_min >= TABLE_D_MIN:
            _RINGS[:] = [TABLE_D_MIN, np.load(TABLE_PATH)]
        else:
            generated = max(d_min * 0.8, LOWEST_D)
            _RINGS[:] = [generated, powder_ring_d_star_sq(generated)]
    return _RINGS[1]


def write_table(path: Path = TABLE_PATH) -> None:
    """Write the shipped table (rings down to :data:`TABLE_D_MIN`)."""
    np.save(path, powder_ring_d_star_sq(TABLE_D_MIN), allow_pickle=False)
