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
import struct
from typing import Protocol

import numpy as np

from dials_refl_stats.pipeline.errors import Sorry, one_line
from dials_refl_stats.reader import ReflectionFileError, read_layout, read_reflections, sniff_format
from dials_refl_stats.reader import shoebox_mask_counts as stream_mask_counts
from dials_refl_stats.reader.columns import FLAT_TYPES, check_flat

BACKENDS = ("auto", "fast", "dials")

#: What decoding a corrupt file can raise besides :class:`ReflectionFileError`: numpy on
#: absurd shapes, h5py, and DIALS/Boost.Python (``RuntimeError``). Never bugs like
#: ``AttributeError`` or ``NameError``, which keep their traceback.
DATA_ERRORS = (
    ValueError,
    IndexError,
    OverflowError,
    MemoryError,
    TypeError,
    KeyError,
    EOFError,
    UnicodeError,
    struct.error,
    OSError,
    RuntimeError,
)


class ReflectionLoadError(Sorry):
    """A reflection file that cannot be used; the message is ``"<path>: <problem>"``.

    A user error, so a ``Sorry``: a program that lets it through prints one line
    ``Sorry: <path>: <problem>`` and exits 1, without a traceback, whichever column or
    step found the problem. Like libtbx's own ``Sorry`` subclasses it hides its module,
    and it also prints under the name ``Sorry`` (the DIALS convention users know).
    """

    __module__ = Exception.__module__
    __qualname__ = "Sorry"
    #: whether ``input.on_error=skip`` may skip the file (not when the file is readable
    #: but disagrees with the other inputs, e.g. the experiments)
    skippable = True

    def __init__(self, message: str, *args):
        # one line even where it quotes a corrupt file's strings (identifiers, types)
        super().__init__(one_line(str(message)), *args)

    def __reduce__(self):  # picklable (to and from workers) despite the hidden name
        if type(self) is ReflectionLoadError:
            return (_load_error, (str(self),))
        return (type(self), self.args)  # subclasses keep their own names


def _load_error(message: str) -> ReflectionLoadError:
    return ReflectionLoadError(message)


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


def check_regular(path: str) -> None:
    """Raise :class:`ReflectionLoadError` unless ``path`` is a regular file (a FIFO or a
    device could block a reader forever)."""
    if os.path.isfile(path):
        return
    if not os.path.exists(path):
        raise ReflectionLoadError(f"{path}: file not found")
    if os.path.isdir(path):
        raise ReflectionLoadError(f"{path}: is a directory, not a reflection file")
    raise ReflectionLoadError(f"{path}: not a regular file")


def check_readable(path: str) -> str:
    """Raise :class:`ReflectionLoadError` unless ``path`` looks like a reflection file.

    Returns the format name from :func:`sniff_format`.
    """
    check_regular(path)
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
    """A reflection file loaded with DIALS's ``flex.reflection_table.from_file``.

    A msgpack file is checked by the fast reader first (header, column lengths, shoebox
    records against the file size), so that DIALS never allocates for a corrupt length.
    """

    backend = "dials"

    def __init__(self, path: str):
        kind = check_readable(path)
        try:
            from dials.array_family import flex
        except ImportError:  # pragma: no cover - DIALS-less machines
            raise ReflectionLoadError(
                f"{path}: reading this file needs DIALS, which is not installed"
            ) from None
        if kind == "msgpack":
            with _as_load_error(path):
                _check_structure(path)
        try:
            table = flex.reflection_table.from_file(path)
        except Exception as error:
            problem = {
                "msgpack": "truncated or corrupt reflection file",
                "pickle": "legacy pickle reflection table that this DIALS cannot read",
                "hdf5": "HDF5 reflection table that this DIALS cannot read",
            }[kind]
            raise ReflectionLoadError(f"{path}: {problem} ({_detail(error)})") from None
        if not isinstance(table, flex.reflection_table):
            raise ReflectionLoadError(f"{path}: does not hold a reflection table")
        self.path = path
        self.format = kind
        self._table = table
        with _as_load_error(path):
            self.nrows = table.size()
            self.identifiers = dict(table.experiment_identifiers())
            self.column_names = frozenset(table.keys())
        self._cache: dict[str, np.ndarray] = {}

    def column(self, name: str) -> np.ndarray:
        if name not in self.column_names:
            raise ReflectionLoadError(f"{self.path}: no column '{name}'")
        if name not in self._cache:
            with _as_load_error(self.path):
                values = flex_to_numpy(self._table[name])
                check_column(self.path, name, values, self.nrows, self.identifiers)
            self._cache[name] = values
        return self._cache[name]

    def shoebox_mask_counts(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        if "shoebox" not in self.column_names:
            raise ReflectionLoadError(f"{self.path}: no column 'shoebox'")
        with _as_load_error(self.path):
            shoeboxes = self._table["shoebox"]
            counts = shoeboxes.count_mask_values(code).as_numpy_array().astype(np.int64)
            allocated = shoeboxes.is_allocated().as_numpy_array().astype(bool)
        return counts, allocated


def _detail(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _check_structure(path: str) -> None:
    """What the fast reader can check without decoding: header, column byte lengths,
    shoebox record headers and sizes (raises :class:`ReflectionFileError`)."""
    layout = read_layout(path)
    for span in layout.columns.values():
        if span.type_name in FLAT_TYPES:
            check_flat(path, span)
    if any(span.type_name == "Shoebox<>" for span in layout.columns.values()):
        stream_mask_counts(path, 0)


def flex_to_numpy(values) -> np.ndarray:
    """A flex column as numpy: scalars 1-D, vectors (vec3, int6, miller index) ``(n, k)``."""
    if hasattr(values, "as_numpy_array"):
        return values.as_numpy_array()
    if hasattr(values, "parts"):  # int6 (bbox)
        return np.stack([part.as_numpy_array() for part in values.parts()], axis=1)
    if hasattr(values, "as_vec3_double"):  # miller_index
        return values.as_vec3_double().as_numpy_array().astype(np.int32)
    raise TypeError(f"cannot convert a {type(values).__name__} column to numpy")


#: Columns DIALS writes as integers (another type is a damaged file).
INTEGER_COLUMNS = ("flags", "id", "panel")

#: Values per row of the columns the programs read, as DIALS writes them (another
#: shape, such as an ``int6`` centroid of the same byte length, is a damaged file).
ROW_SHAPES: dict[str, tuple[tuple[int, ...], str]] = {
    **{name: ((), "std::size_t") for name in ("flags", "panel")},
    "id": ((), "int"),
    **{
        name: ((3,), "vec3<double>")
        for name in ("xyzobs.px.value", "xyzobs.px.variance", "xyzcal.px", "xyzobs.mm.value")
    },
    "bbox": ((6,), "int6"),
    **{
        f"intensity.{kind}.{part}": ((), "double")
        for kind in ("sum", "prf")
        for part in ("value", "variance")
    },
    "d": ((), "double"),
}


def row_shape_problem(name: str, row_shape: tuple[int, ...]) -> str | None:
    """Why column ``name`` with ``row_shape`` values a row is not as DIALS writes it."""
    expected = ROW_SHAPES.get(name)
    if expected is None or tuple(row_shape) == expected[0]:
        return None
    n = int(np.prod(row_shape)) if row_shape else 1
    return (
        f"column '{name}' holds {n} value{'s' if n != 1 else ''} a row, not the "
        f"{expected[1]} DIALS writes there"
    )


def check_column(
    path: str, name: str, values: np.ndarray, nrows: int, identifiers: dict[int, str]
) -> None:
    """Values no DIALS program writes are errors, not wrong results.

    Every column has ``nrows`` rows; ``id`` is -1 (no experiment) or, when the file
    has experiment identifiers, one of them (DIALS keeps the two consistent), and is
    never below -1; a ``panel`` is a number a detector can have; a ``bbox`` (x0, x1, y0,
    y1, z0, z1) never has an upper bound below its lower one.
    """
    if len(values) != nrows:
        raise ReflectionLoadError(
            f"{path}: column '{name}' has {len(values)} rows, the table has {nrows}"
        )
    problem = row_shape_problem(name, np.shape(values)[1:])
    if problem is not None:
        raise ReflectionLoadError(f"{path}: {problem}")
    if name in INTEGER_COLUMNS and values.dtype.kind not in "iu":
        raise ReflectionLoadError(
            f"{path}: column '{name}' holds {values.dtype} values, not the integers DIALS "
            "writes there"
        )
    if name == "id" and len(values):
        _check_ids(path, values, identifiers)
    elif name == "panel" and len(values):
        bad = impossible_panels(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise ReflectionLoadError(
                f"{path}: column 'panel': row {row} has panel number {values[row]}, "
                "which no detector has"
            )
    elif name == "bbox" and values.ndim == 2 and values.shape[1] == 6:
        inverted = (values[:, 1::2] < values[:, 0::2]).any(axis=1)
        if inverted.any():
            row = int(np.argmax(inverted))
            raise ReflectionLoadError(
                f"{path}: column 'bbox': row {row} has an invalid bounding box "
                f"{values[row].tolist()} (an upper bound below its lower bound)"
            )


#: Panel numbers from this one up are no detector's (a damaged ``size_t``: as a signed
#: number it may even be negative).
MAX_PANEL = 1 << 31


def impossible_panels(panel: np.ndarray) -> np.ndarray:
    """Per row: a panel number no detector has (negative, or :data:`MAX_PANEL` or more)."""
    panel = np.asarray(panel)
    if panel.dtype.kind == "u":
        return panel >= MAX_PANEL
    return (panel < 0) | (panel >= MAX_PANEL)


def _check_ids(path: str, ids: np.ndarray, identifiers: dict[int, str]) -> None:
    ids = np.asarray(ids)
    low = int(ids.min())
    if low < -1:
        row = int(np.argmax(ids == low))
        raise ReflectionLoadError(f"{path}: column 'id': row {row} has invalid experiment id {low}")
    if not identifiers:
        return
    known = np.fromiter(identifiers, dtype=np.int64, count=len(identifiers))
    stray = (ids != -1) & ~np.isin(ids, known)
    if stray.any():
        row = int(np.argmax(stray))
        raise ReflectionLoadError(
            f"{path}: column 'id': row {row} has experiment id {int(ids[row])}, which is not "
            f"among the file's {len(known)} experiment identifiers"
        )


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
                values = read_reflections(self.path, columns=[name]).columns[name]
                check_column(self.path, name, values, self.nrows, self.identifiers)
            self._cache[name] = values
        return self._cache[name]

    def shoebox_mask_counts(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        with _as_load_error(self.path):
            counts, allocated = stream_mask_counts(self.path, code, with_allocated=True)
            if len(counts) != self.nrows:
                raise ReflectionLoadError(
                    f"{self.path}: {len(counts)} shoeboxes, the table has {self.nrows} rows"
                )
        return counts, allocated


class _as_load_error:
    """Context manager: any problem met while decoding ``path`` becomes a one-line
    :class:`ReflectionLoadError` (``"<path>: <problem>"``)."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, ReflectionLoadError):
            return False
        if isinstance(error, ReflectionFileError):
            raise ReflectionLoadError(f"{self.path}: {error.problem}") from None
        if isinstance(error, MemoryError):
            raise ReflectionLoadError(
                f"{self.path}: corrupt reflection file (its sizes need more memory than "
                "is available)"
            ) from None
        if isinstance(error, DATA_ERRORS):
            raise ReflectionLoadError(
                f"{self.path}: corrupt reflection file ({type(error).__name__}: {_detail(error)})"
            ) from None
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
