"""Recognising reflection-file formats from their first bytes; the HDF5 layout.

* ``msgpack``: DIALS's default (``as_file``): a 3-element array starting with the
  string ``"dials::af::reflection_table"``.
* ``pickle``: legacy DIALS (``DIALS_USE_PICKLE``); needs DIALS to unpickle, so the fast
  reader refuses it with a clear message.
* ``hdf5``: DIALS >= 3.23 with ``DIALS_USE_H5`` (``dials/util/table_as_hdf5_file.py``):
  ``/dials/<process>/group_<i>/<column>`` datasets, the most recent ``<process>``
  group is the table; each ``group_<i>`` carries ``identifiers`` and
  ``experiment_ids`` attributes; a ``Shoebox<>`` column is a sub-group with
  ``panel``, ``bbox``, ``shoebox_data``, ``shoebox_mask``, ``shoebox_background``
  (flat, concatenated in row order, LZ4-compressed). Read with h5py when installed.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import ReflectionFileError

MSGPACK_MAGIC = b"dials::af::reflection_table"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def sniff_bytes(head: bytes) -> str:
    """Format name from the first bytes of a file (see :func:`sniff_format`)."""
    if head[:1] in (b"\x93", b"\xdc", b"\xdd") and MSGPACK_MAGIC in head[:48]:
        return "msgpack"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head[:1] in (b"(", b"c", b"]", b"}") and b"reflection_table" in head[:200]:
        return "pickle"  # protocols 0/1
    return "unknown"


def sniff_format(path: str | os.PathLike) -> str:
    """``"msgpack"``, ``"pickle"``, ``"hdf5"`` or ``"unknown"`` (reads 512 bytes)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
            kind = sniff_bytes(head)
            if kind == "unknown":  # HDF5 may sit after a user block of 512 * 2**k
                off = 512
                size = os.fstat(fh.fileno()).st_size
                while off + 8 <= size and off <= 1 << 20:
                    fh.seek(off)
                    if fh.read(8) == HDF5_MAGIC:
                        return "hdf5"
                    off *= 2
            return kind
    except OSError as exc:
        raise ReflectionFileError(path, f"cannot open ({exc.strerror or exc})") from None


def _h5py(path: str):
    try:
        import h5py
    except ImportError:
        raise ReflectionFileError(
            path, "HDF5 reflection file: reading it needs h5py (pip install h5py)"
        ) from None
    return h5py


_H5_TYPES = {  # (dtype kind, itemsize, trailing shape) -> DIALS type name
    ("b", 1, ()): "bool",
    ("i", 4, ()): "int",
    ("u", 8, ()): "std::size_t",
    ("f", 8, ()): "double",
    ("f", 8, (2,)): "vec2<double>",
    ("f", 8, (3,)): "vec3<double>",
    ("f", 8, (3, 3)): "mat3<double>",
    ("i", 4, (6,)): "int6",
    ("i", 4, (3,)): "cctbx::miller::index<>",
}


def h5_type_name(dset) -> str:
    """The DIALS type of an HDF5 column dataset (as DIALS's decoder would choose)."""
    if dset.dtype.kind == "O" or dset.dtype.kind == "S":
        return "std::string"
    key = (dset.dtype.kind, dset.dtype.itemsize, tuple(dset.shape[1:]))
    if key in _H5_TYPES:
        return _H5_TYPES[key]
    return f"hdf5:{dset.dtype.str}{list(dset.shape[1:])}"


#: An HDF5 dataset may hold at most this many times the file's bytes (LZ4, DIALS's
#: filter, compresses at most ~255:1), so that a damaged shape allocates nothing.
H5_MAX_EXPANSION = 1024


def _h5_rows(path: str, name: str, dset, limit: int) -> int:
    """Rows of a dataset, after checking that its size is plausible for the file."""
    if not dset.shape:
        raise ReflectionFileError(path, f"column '{name}' is a scalar, not a column")
    nbytes = int(np.prod(dset.shape, dtype=np.float64)) * dset.dtype.itemsize
    if nbytes > limit:
        raise ReflectionFileError(
            path, f"column '{name}' claims {nbytes} bytes, implausible for the file size"
        )
    return int(dset.shape[0])


def read_hdf5(path: str, columns, shoebox: str):
    """Read an HDF5 reflection table; returns the pieces of a ReflectionData."""
    h5py = _h5py(path)
    from .columns import FLAT_TYPES

    limit = H5_MAX_EXPANSION * os.path.getsize(path) + (1 << 20)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ReflectionFileError(path, f"unreadable HDF5 file ({exc})") from None
    with fh:
        top = fh.get("dials")
        if not isinstance(top, h5py.Group) or not len(top):
            raise ReflectionFileError(path, "HDF5 file has no /dials reflection data")
        proc = top[list(top.keys())[-1]]
        members = proc.values() if isinstance(proc, h5py.Group) else ()
        groups = [g for g in members if isinstance(g, h5py.Group)]
        if len(groups) != 1:
            raise ReflectionFileError(
                path,
                f"HDF5 file holds {len(groups)} reflection tables; the fast reader "
                "reads files with exactly one",
            )
        g = groups[0]
        try:
            ids = [str(x.decode() if isinstance(x, bytes) else x) for x in g.attrs["identifiers"]]
            exp_ids = [int(x) for x in np.asarray(g.attrs["experiment_ids"]).ravel()]
        except KeyError:
            raise ReflectionFileError(path, "HDF5 table lacks identifiers") from None
        identifiers = dict(zip(exp_ids, ids))
        types: dict[str, str] = {}
        nrows = None
        for name, obj in g.items():
            if isinstance(obj, h5py.Group):
                types[name] = "Shoebox<>"
                if "bbox" not in obj or "panel" not in obj:
                    raise ReflectionFileError(path, f"shoebox column '{name}' lacks bbox or panel")
                counts = [
                    _h5_rows(path, f"{name}/{part}", obj[part], limit) for part in ("bbox", "panel")
                ]
                if counts[0] != counts[1]:
                    raise ReflectionFileError(
                        path, f"column '{name}': {counts[1]} panels for {counts[0]} bounding boxes"
                    )
                n = counts[0]
            else:
                types[name] = h5_type_name(obj)
                n = _h5_rows(path, name, obj, limit)
            if nrows is not None and n != nrows:
                raise ReflectionFileError(path, f"column '{name}' has {n} rows, table has {nrows}")
            nrows = n
        wanted = _select(path, types, columns)
        cols = {}
        for name in wanted:
            arr = np.asarray(g[name][()])
            if types[name] == "mat3<double>":
                arr = arr.reshape(len(arr), 9)
            cols[name] = arr.astype(FLAT_TYPES[types[name]].dtype.newbyteorder("="))
            if types[name] == "bool":
                cols[name] = cols[name].view(np.bool_)
        sb = None
        if shoebox != "none":
            sb = _h5_shoebox(path, g, types, shoebox, limit)
        return nrows or 0, identifiers, types, cols, sb


def _select(path: str, types: dict[str, str], columns) -> list[str]:
    from .columns import FLAT_TYPES

    if columns is None:
        return [n for n, t in types.items() if t in FLAT_TYPES]
    out = []
    for name in columns:
        if name not in types:
            raise ReflectionFileError(path, f"no column '{name}' in the file")
        if types[name] not in FLAT_TYPES:
            raise ReflectionFileError(
                path, f"column '{name}' has type {types[name]}, not a flat column"
            )
        out.append(name)
    return out


def _h5_shoebox(path, g, types, mode, limit):
    from . import ShoeboxColumn

    names = [n for n, t in types.items() if t == "Shoebox<>"]
    if not names:
        raise ReflectionFileError(path, "no Shoebox<> column in the file")
    name = "shoebox" if "shoebox" in names else names[0]
    sb = g[name]
    parts = ["shoebox_mask"] + (["shoebox_data", "shoebox_background"] if mode == "full" else [])
    try:
        for part in parts:
            _h5_rows(path, f"{name}/{part}", sb[part], limit)
        bbox = np.asarray(sb["bbox"][()])
        panel = np.asarray(sb["panel"][()], dtype=np.uint32)
        mask = np.asarray(sb["shoebox_mask"][()]).ravel()
        data = bg = None
        if mode == "full":
            data = np.asarray(sb["shoebox_data"][()], dtype=np.float32).ravel()
            bg = np.asarray(sb["shoebox_background"][()], dtype=np.float32).ravel()
    except (OSError, KeyError) as exc:
        raise ReflectionFileError(
            path, f"HDF5 shoebox data unreadable ({exc}; LZ4 needs hdf5plugin)"
        ) from None
    if bbox.ndim != 2 or bbox.shape[1] != 6 or bbox.dtype.kind not in "iu":
        raise ReflectionFileError(path, f"HDF5 shoebox: bbox of shape {bbox.shape}, not (n, 6)")
    bbox = bbox.astype(np.int64)
    ext = bbox[:, 1::2] - bbox[:, 0::2]
    bad = (ext < 0).any(axis=1) | (bbox < -(1 << 31)).any(axis=1) | (bbox >= 1 << 31).any(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise ReflectionFileError(
            path, f"HDF5 shoebox: row {row}: invalid bounding box {bbox[row].tolist()}"
        )
    sizes = [len(mask)] + ([len(data), len(bg)] if mode == "full" else [])
    npix = np.zeros(len(bbox), np.int64)
    in_range = ext.astype(np.float64).prod(axis=1).sum() <= len(mask)  # no int64 overflow
    if in_range:
        npix = ext[:, 0] * ext[:, 1] * ext[:, 2]
    offsets = np.zeros(len(bbox) + 1, dtype=np.int64)
    np.cumsum(npix, out=offsets[1:])
    if not in_range or any(size != offsets[-1] for size in sizes):
        raise ReflectionFileError(
            path,
            "HDF5 shoebox: the pixel arrays (sizes "
            f"{'/'.join(str(size) for size in sizes)}) do not match the bounding boxes",
        )
    mask = mask.astype(np.uint8 if mask.dtype.itemsize == 1 else np.int32)
    return ShoeboxColumn(panel, bbox.astype(np.int32), npix > 0, mask, offsets, data, bg)
