"""A scan's image range and oscillation from its ``.expt`` dictionary, as dxtbx reads them.

The programs need from a scan only its image range, number of images and oscillation
(image numbers, stills). :func:`scan_facts` gives them without dxtbx's C++ models (their
import costs ~0.1 s), for a dictionary that ``ScanFactory.from_dict`` plus dxtbx's C++
``Scan.from_dict`` (``dxtbx/model/boost_python/scan.cc``) are sure to accept: exactly
the values those give (the oscillation through the same degrees -> radians -> degrees
doubles). Anything else is ``None``, and the caller makes dxtbx's own ``Scan``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

#: ``scitbx::constants::pi_180`` (``std::atan(1.) / 45.``): ``deg_as_rad(x) = x * pi_180``,
#: ``rad_as_deg(x) = x / pi_180``.
PI_180 = math.atan(1.0) / 45.0

INT_MIN, INT_MAX = -(2**31), 2**31 - 1


class LightScan:
    """A scan's image range and oscillation; every other attribute is dxtbx's ``Scan``'s,
    made on first use by ``make``."""

    __slots__ = ("_range", "_oscillation", "_make", "_scan")

    def __init__(
        self, image_range: tuple[int, int], oscillation: tuple[float, float], make: Callable
    ) -> None:
        self._range = image_range
        self._oscillation = (oscillation[0] * PI_180, oscillation[1] * PI_180)  # radians
        self._make = make
        self._scan = None

    def get_image_range(self) -> tuple[int, int]:
        return self._range

    def get_num_images(self) -> int:
        return self._range[1] - self._range[0] + 1

    def get_oscillation(self, deg: bool = True) -> tuple[float, float]:
        start, width = self._oscillation
        return (start / PI_180, width / PI_180) if deg else (start, width)

    def __len__(self) -> int:
        return self.get_num_images()

    def __eq__(self, other: object) -> bool:
        other = other.dxtbx() if isinstance(other, LightScan) else other
        return self.dxtbx() == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = object.__hash__  # by object, as dxtbx's models

    def dxtbx(self) -> Any:
        """dxtbx's ``Scan`` of the same dictionary."""
        if self._scan is None:
            self._scan = self._make()
        return self._scan

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dxtbx(), name)


def scan_facts(d: Any, make: Callable) -> LightScan | None:
    """:class:`LightScan` of scan dictionary ``d`` when dxtbx is sure to read it (else
    ``None``); ``make()`` makes dxtbx's own ``Scan`` of it, if ever needed."""
    if type(d) is not dict or "exposure_time" not in d:
        return None
    image_range = d.get("image_range")
    oscillation = d.get("oscillation")
    if not (_ints(image_range, 2) and _numbers(oscillation, 2)):
        return None
    first, last = image_range
    n_images = last - first + 1
    if last < first or not _int(d.get("batch_offset", 0)):
        return None
    exposure = d["exposure_time"]
    exposure = exposure if isinstance(exposure, list) else [exposure]
    epochs = d.get("epochs", [])
    if not (_numbers(exposure) and _numbers(epochs)):
        return None
    if len(exposure) > n_images or len(epochs) > n_images:
        return None
    if not _valid_image_ranges(d.get("valid_image_ranges", {})):
        return None
    start, width = float(oscillation[0]), float(oscillation[1])
    if not width * PI_180 >= 0.0:  # Scan's DXTBX_ASSERT(oscillation[1] >= 0) (and NaN)
        return None
    return LightScan((first, last), (start, width), make)


def _int(value: Any) -> bool:
    return type(value) is int and INT_MIN <= value <= INT_MAX


def _ints(values: Any, n: int) -> bool:
    return type(values) is list and len(values) == n and all(_int(v) for v in values)


def _numbers(values: Any, n: int | None = None) -> bool:
    return (
        type(values) is list
        and (n is None or len(values) == n)
        and all(type(v) is float or _int(v) for v in values)
    )


def _valid_image_ranges(ranges: Any) -> bool:
    return type(ranges) is dict and all(
        type(key) is str and type(value) is list and all(_ints(pair, 2) for pair in value)
        for key, value in ranges.items()
    )
