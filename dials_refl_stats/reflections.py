"""Loading reflection files: columns as numpy arrays, only what a statistic asks for.

:func:`open_reflection_file` returns a :class:`ReflectionSource` that knows the file's
columns, row count and experiment identifiers, and hands out single columns as numpy
arrays plus per-row shoebox mask counts. The ``dials`` backend uses DIALS's own
``flex.reflection_table.from_file``.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

MSGPACK_MAGIC = b"\x93\xbbdials::af::reflection_table"
PICKLE_MAGIC = b"\x80"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class ReflectionLoadError(Exception):
    """A reflection file that cannot be used; the message is one line naming the file."""


class ReflectionSource(Protocol):
    """What the programs need of a loaded reflection file."""

    path: str
    backend: str
    nrows: int
    identifiers: dict[int, str]
    column_names: frozenset[str]

    def column(self, name: str) -> np.ndarray:
        """One column as a numpy array (vectors as ``(n, k)``)."""

    def shoebox_mask_counts(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """Per row: pixels whose mask has all bits of ``code``; shoebox allocated."""


def sniff_format(path: str) -> str:
    """``"msgpack"``, ``"pickle"``, ``"hdf5"`` or ``"unknown"`` from the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(len(MSGPACK_MAGIC))
    if head.startswith(MSGPACK_MAGIC):
        return "msgpack"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(PICKLE_MAGIC):
        return "pickle"
    return "unknown"


def check_readable(path: str) -> str:
    """Raise :class:`ReflectionLoadError` unless ``path`` looks like a reflection file.

    Returns the format name from :func:`sniff_format`.
    """
    if not os.path.exists(path):
        raise ReflectionLoadError(f"{path}: file not found")
    if os.path.isdir(path):
        raise ReflectionLoadError(f"{path}: is a directory, not a reflection file")
    try:
        kind = sniff_format(path)
    except OSError as error:
        raise ReflectionLoadError(f"{path}: cannot be read ({error.strerror})") from None
    if kind == "unknown":
        size = os.path.getsize(path)
        problem = "empty file" if size == 0 else "not a DIALS reflection file"
        raise ReflectionLoadError(f"{path}: {problem}")
    return kind


class DialsReflectionSource:
    """A reflection file loaded with DIALS's ``flex.reflection_table.from_file``."""

    backend = "dials"

    def __init__(self, path: str):
        kind = check_readable(path)
        try:
            from dials.array_family import flex
        except ImportError:  # pragma: no cover - DIALS-less machines
            raise ReflectionLoadError(
                f"{path}: reading this file needs DIALS, which is not installed"
            ) from None
        try:
            table = flex.reflection_table.from_file(path)
        except Exception as error:
            problem = {
                "msgpack": "truncated or corrupt reflection file",
                "pickle": "legacy pickle reflection table that this DIALS cannot read",
                "hdf5": "HDF5 reflection table that this DIALS cannot read",
            }[kind]
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ReflectionLoadError(f"{path}: {problem} ({detail})") from None
        if not isinstance(table, flex.reflection_table):
            raise ReflectionLoadError(f"{path}: does not hold a reflection table")
        self.path = path
        self.format = kind
        self._table = table
        self.nrows = table.size()
        self.identifiers = dict(table.experiment_identifiers())
        self.column_names = frozenset(table.keys())

    def column(self, name: str) -> np.ndarray:
        if name not in self.column_names:
            raise ReflectionLoadError(f"{self.path}: no column '{name}'")
        return flex_to_numpy(self._table[name])

    def shoebox_mask_counts(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        shoeboxes = self._table["shoebox"]
        counts = shoeboxes.count_mask_values(code).as_numpy_array().astype(np.int64)
        allocated = shoeboxes.is_allocated().as_numpy_array().astype(bool)
        return counts, allocated


def flex_to_numpy(values) -> np.ndarray:
    """A flex column as numpy: scalars 1-D, vectors (vec3, int6, miller index) ``(n, k)``."""
    if hasattr(values, "as_numpy_array"):
        return values.as_numpy_array()
    if hasattr(values, "parts"):  # int6 (bbox)
        return np.stack([part.as_numpy_array() for part in values.parts()], axis=1)
    if hasattr(values, "as_vec3_double"):  # miller_index
        return values.as_vec3_double().as_numpy_array().astype(np.int32)
    raise TypeError(f"cannot convert a {type(values).__name__} column to numpy")


def open_reflection_file(path: str, backend: str = "auto") -> ReflectionSource:
    """Open ``path`` with the requested backend (``auto`` picks the best available)."""
    if backend not in ("auto", "dials"):
        raise ValueError(f"unknown backend {backend!r}")
    return DialsReflectionSource(path)
