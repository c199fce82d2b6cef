"""Spot size: how many shoebox pixels carry given mask bits, and its distribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dials_refl_stats.analysis.distribution import Binning, Distribution, distribution
from dials_refl_stats.analysis.grouping import group_by_index

#: ``dials.algorithms.shoebox.MaskCode`` bits.
MASK_CODES: dict[str, int] = {
    "Valid": 1,
    "Background": 2,
    "Foreground": 4,
    "Strong": 8,
    "BackgroundUsed": 16,
    "Overlapped": 32,
}


#: Lower-case spellings (as phil choices) of the ``MaskCode`` names.
MASK_NAMES: dict[str, str] = {
    "valid": "Valid",
    "background": "Background",
    "foreground": "Foreground",
    "strong": "Strong",
    "background_used": "BackgroundUsed",
    "overlapped": "Overlapped",
}


def mask_code(names: Sequence[str]) -> int:
    """Bitwise OR of ``MaskCode`` names, e.g. ``["Valid", "Foreground"]`` -> 5.

    Lower-case spellings (``valid``, ``background_used``) are accepted too.
    """
    code = 0
    for name in names:
        code |= MASK_CODES[MASK_NAMES.get(name, name)]
    return code


def count_mask_pixels(mask_values: np.ndarray, offsets: np.ndarray, code: int) -> np.ndarray:
    """Per shoebox, pixels whose mask has every bit of ``code``.

    ``mask_values`` holds all shoeboxes' masks back to back; shoebox ``i`` is
    ``mask_values[offsets[i]:offsets[i + 1]]``. Same rule as DIALS's
    ``flex.shoebox.count_mask_values(code)``.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    hits = (np.asarray(mask_values) & code) == code
    cumulative = np.concatenate(([0], np.cumsum(hits, dtype=np.int64)))
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def split_by_group(values: np.ndarray, group_of_row: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """``values`` split by group number ``0..n_groups-1`` (rows keep their order)."""
    return [values[rows] for rows in group_by_index(group_of_row, n_groups)]


@dataclass(frozen=True)
class SpotSizeResult:
    """Spot-size distribution over all selected spots and per group (experiment)."""

    overall: Distribution
    groups: tuple[Distribution, ...]


def spot_size_distributions(
    sizes: np.ndarray, group_of_row: np.ndarray, n_groups: int, binning: Binning
) -> SpotSizeResult:
    """Histogram ``sizes`` overall and for each group ``0..n_groups-1``.

    With automatic bounds, every histogram shares the range of the whole sample so
    that groups can be compared slot by slot.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    low, high = binning.resolve(sizes)
    shared = Binning(data_min=low, data_max=high, n_slots=binning.n_slots)
    overall = distribution(sizes, shared)
    groups = tuple(
        distribution(part, shared) for part in split_by_group(sizes, group_of_row, n_groups)
    )
    return SpotSizeResult(overall=overall, groups=groups)
