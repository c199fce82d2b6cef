"""Loading reflection files: columns as numpy arrays, only what a statistic asks for.

:func:`open_reflection_file` returns a :class:`ReflectionSource` that knows the file's
columns, row count and experiment identifiers, and hands out single columns as numpy
arrays plus per-row shoebox mask counts. Two backends:

* ``fast``: :mod:`dials_refl_stats.reader` (no DIALS): reads the header, then only the
  bytes of the columns asked for; shoebox masks are streamed in bounded memory.
* ``dials``: DIALS's own ``flex.reflection_table.from_file`` (decodes every column).

``auto`` uses ``fast``, and ``dials`` for legacy pickle tables (which only DIALS can
unpickle).
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from dials_refl_stats.reader import ReflectionFileError, read_layout, read_reflections, sniff_format
from dials_refl_stats.reader import shoebox_mask_counts as stream_mask_counts

BACKENDS = ("auto", "fast", "dials")


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
    except ReflectionFileError as error:
        raise ReflectionLoadError(f"{path}: {error.problem}") from None
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


class FastReflectionSource:
    """A reflection file read with :mod:`dials_refl_stats.reader`, column by column."""

    backend = "fast"

    def __init__(self, path: str):
        self.format = check_readable(path)
        self.path = path
        with _as_load_error(path):
            if self.format == "msgpack":
                layout = read_layout(path)
                self.nrows = layout.nrows
                self.identifiers = dict(layout.identifiers)
                self.column_names = frozenset(layout.columns)
            else:
                header = read_reflections(path, columns=[])
                self.nrows = header.nrows
                self.identifiers = dict(header.identifiers)
                self.column_names = frozenset(header.column_types)
        self._cache: dict[str, np.ndarray] = {}

    def column(self, name: str) -> np.ndarray:
        if name not in self.column_names:
            raise ReflectionLoadError(f"{self.path}: no column '{name}'")
        if name not in self._cache:
            with _as_load_error(self.path):
                self._cache[name] = read_reflections(self.path, columns=[name]).columns[name]
        return self._cache[name]

    def shoebox_mask_counts(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        with _as_load_error(self.path):
            return stream_mask_counts(self.path, code, with_allocated=True)


class _as_load_error:
    """Context manager turning the reader's errors into :class:`ReflectionLoadError`."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, ReflectionFileError):
            raise ReflectionLoadError(f"{self.path}: {error.problem}") from None
        return False


def open_reflection_file(path: str, backend: str = "auto") -> ReflectionSource:
    """Open ``path`` with ``backend``: ``fast``, ``dials`` or ``auto`` (see module doc)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    if backend == "dials":
        return DialsReflectionSource(path)
    if backend == "fast":
        return FastReflectionSource(path)
    kind = check_readable(path)
    if kind == "pickle":
        return DialsReflectionSource(path)
    return FastReflectionSource(path)
