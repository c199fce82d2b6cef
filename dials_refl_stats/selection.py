"""DIALS reflection flags: names <-> bits, and flag selections as boolean masks.

The bit values are those of ``flex.reflection_table.flags`` (DIALS 3.12 and later); the
table is repeated here so that selections work without DIALS. ``tests/test_selection.py``
checks it against the installed DIALS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

FLAG_BITS: dict[str, int] = {
    "predicted": 1 << 0,
    "observed": 1 << 1,
    "indexed": 1 << 2,
    "used_in_refinement": 1 << 3,
    "strong": 1 << 5,
    "reference_spot": 1 << 6,
    "dont_integrate": 1 << 7,
    "integrated_sum": 1 << 8,
    "integrated_prf": 1 << 9,
    "integrated": (1 << 8) | (1 << 9),
    "overloaded": 1 << 10,
    "overlapped_bg": 1 << 11,
    "overlapped_fg": 1 << 12,
    "in_powder_ring": 1 << 13,
    "foreground_includes_bad_pixels": 1 << 14,
    "background_includes_bad_pixels": 1 << 15,
    "includes_bad_pixels": (1 << 14) | (1 << 15),
    "bad_shoebox": 0xFC00,
    "bad_spot": 0xFC00,
    "used_in_modelling": 1 << 16,
    "centroid_outlier": 1 << 17,
    "failed_during_background_modelling": 1 << 18,
    "failed_during_summation": 1 << 19,
    "failed_during_profile_fitting": 1 << 20,
    "bad_reference": 1 << 21,
    "user_excluded_in_scaling": 1 << 22,
    "outlier_in_scaling": 1 << 23,
    "excluded_for_scaling": 1 << 24,
    "bad_for_scaling": (1 << 22) | (1 << 23) | (1 << 24),
    "scaled": 1 << 26,
    "excluded_for_refinement": 1 << 25,
    # DIALS 3.12-3.24's: 3.25+ (dials/dials ada4cf988) adds not_suitable_for_refinement
    "bad_for_refinement": (1 << 25) | (1 << 17),
    "not_suitable_for_refinement": 1 << 27,  # DIALS 3.25+
}

#: Pseudo flag name selecting every reflection.
ALL_REFLECTIONS = "all"

#: Rules combining several flag names, as ``get_flags(mask, all=...)`` does.
RULES = ("all", "any")


class UnknownFlagError(ValueError):
    """A flag name that DIALS does not define."""


def flag_mask(names: Sequence[str]) -> int:
    """Bitwise OR of the named flags (``"all"`` contributes nothing)."""
    mask = 0
    for name in names:
        if name == ALL_REFLECTIONS:
            continue
        try:
            mask |= FLAG_BITS[name]
        except KeyError:
            known = ", ".join(sorted(FLAG_BITS))
            raise UnknownFlagError(
                f"unknown reflection flag '{name}' (known flags: all, {known})"
            ) from None
    return mask


@dataclass(frozen=True)
class FlagSelection:
    """Which reflections to count: flag names combined by ``rule``.

    ``rule="all"`` keeps rows with every bit of every named flag set (DIALS
    ``get_flags(mask)``, the default ``all=True``); ``rule="any"`` keeps rows with at
    least one of the bits (``get_flags(mask, all=False)``). The name ``"all"`` alone
    selects every row.
    """

    names: tuple[str, ...]
    rule: str = "all"

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"selection rule must be one of {RULES}, not {self.rule!r}")
        flag_mask(self.names)  # validate names early

    @property
    def mask(self) -> int:
        return flag_mask(self.names)

    @property
    def selects_everything(self) -> bool:
        return not self.names or self.mask == 0

    def apply(self, flags: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows of a ``flags`` column that are selected."""
        flags = np.asarray(flags)
        if self.selects_everything:
            return np.ones(flags.shape, dtype=bool)
        hits = flags & np.asarray(self.mask, dtype=flags.dtype)
        if self.rule == "all":
            return hits == self.mask
        return hits != 0

    def describe(self) -> dict:
        """JSON-ready description, recorded in every output."""
        if self.selects_everything:
            expression = "every reflection"
        else:
            call = "get_flags(mask)" if self.rule == "all" else "get_flags(mask, all=False)"
            expression = f"flex.reflection_table.{call}"
        return {
            "flags": list(self.names),
            "rule": self.rule,
            "mask": self.mask,
            "dials_equivalent": expression,
        }
