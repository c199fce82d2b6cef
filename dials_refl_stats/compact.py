"""The compact JSON form: what keeps a document small for 10^5 files or experiments.

Documents are *full* (every per-file and per-experiment column, labels, identifiers)
up to :data:`COMPACT_THRESHOLD` reflection files or experiment identifiers, and
*compact* past it (``output.json_form``; the envelope's ``form`` says which). The
compact form changes a few fields, each losslessly decodable with this module:

* reflection file names as a numbered template (:func:`encode_names`,
  :func:`decode_names`; :func:`reflection_paths` gives the paths of either form);
* index-like integer columns (file, id, experiment, image numbers) as arithmetic runs
  (:func:`encode_runs`, :func:`decode`; :func:`expand` decodes every column of a table);
* per-experiment label and identifier columns are left out (the identifiers are in
  the ``.expt`` files; ``file_index`` and ``id`` name a group, :func:`group_labels`);
* floats of per-experiment and per-image columns to :data:`COMPACT_DIGITS` significant
  digits (:func:`round_significant`).

Readers of our JSON call :func:`expand` (or :func:`decode`) on column tables and
:func:`reflection_paths` on ``inputs.reflections``; both accept the full form unchanged.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any, Iterator, Sequence

import numpy as np

from dials_refl_stats.output import RoundedColumn

#: Past this many reflection files or experiment identifiers a document is compact
#: (``output.json_form=auto``).
COMPACT_THRESHOLD = 1000

#: Significant digits of the floats of compact per-experiment and per-image columns.
COMPACT_DIGITS = 4

#: A column is written as runs only when that takes at most this fraction of its entries.
RUNS_FRACTION = 0.25

#: The character of a number's digits in a name template (as DIALS image templates).
TEMPLATE_DIGIT = "#"

_DIGITS = re.compile(r"\d+")
#: Numbers in names are encoded up to this many digits (all of them fit in an int64).
_MAX_NUMBER_DIGITS = 18


def is_compact(n_files: int, n_groups: int, form: str = "auto") -> bool:
    """Whether a document with ``n_files`` files and ``n_groups`` experiments is compact."""
    if form in ("full", "compact"):
        return form == "compact"
    return max(n_files, n_groups) > COMPACT_THRESHOLD


# -- runs ---------------------------------------------------------------------------


def runs(values: Sequence[Any] | np.ndarray) -> list[list] | None:
    """``[[first, count, step], ...]``: ``values`` as arithmetic runs, greedily from the
    left (``step`` 0 for repeated values, and for anything not an integer).

    ``None`` when that would take more than :data:`RUNS_FRACTION` of the entries.
    """
    array = np.asarray(values)
    n = int(array.size)
    if n == 0:
        return None
    limit = int(n * RUNS_FRACTION)
    if limit < 1:
        return None
    if array.dtype.kind in "iu":
        return _integer_runs(array.astype(np.int64), limit)
    objects = np.empty(n, dtype=object)
    objects[:] = list(array.tolist()) if array.dtype.kind != "O" else list(array)
    starts = np.flatnonzero(np.concatenate(([True], objects[1:] != objects[:-1])))
    if starts.size > limit:
        return None
    counts = np.diff(np.append(starts, n))
    return [[objects[s], int(c), 0] for s, c in zip(starts.tolist(), counts.tolist())]


def _integer_runs(values: np.ndarray, limit: int) -> list[list] | None:
    """Greedy arithmetic runs of ``values`` (int64), at most ``limit`` of them.

    The steps between neighbours form blocks of equal steps; a run starts at value
    ``i``, takes the rest of the block holding step ``i`` and the value after it, and
    the next run starts two past that block's end. So every block of two or more steps
    starts a run, and of a stretch of one-step blocks every second one does (the runs
    before it jump over the others); a last value left alone is a run of its own.
    """
    n = values.size
    if n == 1:
        return [[int(values[0]), 1, 0]]
    steps = np.diff(values)
    ends = np.append(np.flatnonzero(steps[1:] != steps[:-1]), steps.size - 1)
    if ends.size > 2 * limit:
        return None
    lengths = np.diff(ends, prepend=-1)
    single = lengths == 1
    single[0] = False  # the first block always starts a run
    # a stretch of one-step blocks starting at block a: blocks a + 1, a + 3, ... start runs
    index = np.arange(ends.size)
    stretch_start = single & ~np.concatenate(([False], single[:-1]))
    position = index - np.maximum.accumulate(np.where(stretch_start, index, 0))
    starts_run = ~single | (position % 2 == 1)
    blocks = np.flatnonzero(starts_run)
    first = np.concatenate(([0], ends[blocks[:-1]] + 2))
    last = ends[blocks[-1]] + 2
    n_runs = blocks.size + (last == n - 1)
    if n_runs > limit:
        return None
    counts = ends[blocks] - first + 2
    out = [
        [value, count, step]
        for value, count, step in zip(
            values[first].tolist(), counts.tolist(), steps[first].tolist()
        )
    ]
    if last == n - 1:
        out.append([int(values[-1]), 1, 0])
    return out


def encode_runs(values: Sequence[Any] | np.ndarray) -> list | dict:
    """``{"runs": [[first, count, step], ...]}`` when that is short, else a plain list."""
    found = runs(values)
    if found is None:
        return np.asarray(values).tolist() if isinstance(values, np.ndarray) else list(values)
    return {"runs": found}


def decode(column: Any) -> list:
    """A column as a list: a plain list as it is, ``{"runs": ...}`` expanded."""
    if isinstance(column, dict) and "runs" in column:
        out: list = []
        for first, count, step in column["runs"]:
            if step:
                out.extend(range(first, first + step * count, step))
            else:
                out.extend([first] * count)
        return out
    return list(column) if column is not None else []


def iter_decoded(column: Any) -> Iterator:
    """:func:`decode`, one value at a time."""
    if isinstance(column, dict) and "runs" in column:
        for first, count, step in column["runs"]:
            if step:
                yield from range(first, first + step * count, step)
            else:
                yield from itertools.repeat(first, count)
    elif column is not None:
        yield from column


def expand(table: Any) -> Any:
    """A column table with every ``{"runs": ...}`` column decoded (other values kept)."""
    if not isinstance(table, dict):
        return table
    return {
        k: decode(v) if isinstance(v, dict) and set(v) == {"runs"} else v for k, v in table.items()
    }


# -- names --------------------------------------------------------------------------


def encode_names(names: Sequence[str]) -> list[str] | dict:
    """``{"template": "still_#####.refl", "numbers": [[0, 99999]]}`` when every name is
    one template with one number (zero-padded to the template's ``#`` count, or more
    digits), the numbers in inclusive ascending ranges of consecutive numbers; else the
    plain list of names."""
    names = list(names)
    if len(names) < 2 or any(TEMPLATE_DIGIT in name for name in names[:1]):
        return names
    for match in reversed(list(_DIGITS.finditer(names[0]))):
        prefix, suffix = names[0][: match.start()], names[0][match.end() :]
        if TEMPLATE_DIGIT in prefix + suffix:
            continue
        digits = _fixed_width_digits(names, prefix, suffix)
        if digits is not None:  # the usual listing: one width, no pattern per name
            encoded = _numbered(prefix, suffix, digits, padded=True)
            if encoded is not None:
                return encoded
            continue
        pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
        digits = []
        for name in names:
            found = pattern.fullmatch(name)
            if found is None:
                break
            digits.append(found.group(1))
        else:
            encoded = _numbered(prefix, suffix, digits)
            if encoded is not None:
                return encoded
    return names


def _fixed_width_digits(names: list[str], prefix: str, suffix: str) -> list[str] | None:
    """The numbers of ``names`` when every name is ``prefix``, ASCII digits and ``suffix``
    and all have the same length (``None``: not that simple, or not all)."""
    size = len(names[0])
    start, end = len(prefix), size - len(suffix)
    if set(map(len, names)) != {size}:
        return None
    if not all(map(str.startswith, names, itertools.repeat(prefix))):
        return None
    if not all(map(str.endswith, names, itertools.repeat(suffix))):
        return None
    digits = [name[start:end] for name in names]
    joined = "".join(digits)
    return digits if joined.isascii() and joined.isdigit() else None


def _numbered(prefix: str, suffix: str, digits: list[str], padded: bool = False) -> dict | None:
    """``padded``: the digits are known to be of one width (then zero-padded)."""
    width = min(map(len, digits))
    if max(map(len, digits)) > _MAX_NUMBER_DIGITS:
        return None  # numbers past int64: the names are listed as they are
    if padded:  # the ASCII digits as a (names, width) array of 0-9: one dot product
        codes = np.frombuffer("".join(digits).encode("ascii"), np.uint8).reshape(-1, width)
        numbers = (codes - ord("0")).astype(np.int64) @ 10 ** np.arange(width - 1, -1, -1)
    else:
        numbers = np.array([int(d) for d in digits], dtype=np.int64)
        if any(f"{k:0{width}d}" != d for k, d in zip(numbers.tolist(), digits)):
            return None
    breaks = np.flatnonzero(np.diff(numbers) != 1) + 1
    if breaks.size + 1 > max(1, len(digits) * RUNS_FRACTION):
        return None
    starts = np.concatenate(([0], breaks))
    ends = np.append(breaks, numbers.size) - 1
    return {
        "template": prefix + TEMPLATE_DIGIT * width + suffix,
        "numbers": [[int(numbers[a]), int(numbers[b])] for a, b in zip(starts, ends)],
    }


def decode_names(value: list[str] | dict) -> list[str]:
    """The names a :func:`encode_names` value stands for, in order."""
    return list(iter_names(value))


def iter_names(value: list[str] | dict) -> Iterator[str]:
    """:func:`decode_names`, one name at a time (a report shows the first few of 10^6)."""
    if not isinstance(value, dict):
        yield from value
        return
    prefix, width, suffix = _template_parts(value["template"])
    for first, last in value["numbers"]:
        for k in range(first, last + 1):
            yield f"{prefix}{k:0{width}d}{suffix}"


def name_at(value: list[str] | dict, index: int) -> str | None:
    """Name ``index`` of a :func:`encode_names` value (``None`` past the end)."""
    if not isinstance(value, dict):
        return value[index] if 0 <= index < len(value) else None
    if index < 0:
        return None
    prefix, width, suffix = _template_parts(value["template"])
    for first, last in value["numbers"]:
        if index <= last - first:
            return f"{prefix}{first + index:0{width}d}{suffix}"
        index -= last - first + 1
    return None


def _template_parts(template: str) -> tuple[str, int, str]:
    """A names template's prefix, number width and suffix."""
    start = template.index(TEMPLATE_DIGIT)
    width = len(template) - len(template[start:].lstrip(TEMPLATE_DIGIT)) - start
    return template[:start], width, template[start + width :]


def reflection_paths(reflections: dict) -> list[str]:
    """The reflection files of ``inputs.reflections`` (either form), as paths joined to
    its ``directory``."""
    directory = reflections.get("directory") or ""
    return [os.path.join(directory, name) for name in decode_names(reflections.get("paths", []))]


# -- numbers and labels -------------------------------------------------------------


def round_significant(values: Any, digits: int = COMPACT_DIGITS) -> np.ndarray:
    """``values`` (floats) rounded to ``digits`` significant digits; NaN/inf kept."""
    x = np.array(values, dtype=np.float64)
    finite = np.isfinite(x) & (x != 0)
    exponent = np.floor(np.log10(np.abs(x[finite])))
    shift = digits - 1 - exponent
    # powers of ten >= 1 are exact: multiply by one of them, never by 0.1 (inexact)
    up, down = 10.0 ** np.maximum(shift, 0), 10.0 ** np.maximum(-shift, 0)
    x[finite] = np.round(x[finite] * up / down) * down / up
    return x


def compact_column(values: Any, digits: int | None = COMPACT_DIGITS) -> list | dict:
    """A column in the compact form: floats to ``digits`` significant digits (``None``:
    as they are), whole numbers written as integers, NaN and infinities as ``None``;
    then runs when that is short (:func:`encode_runs`)."""
    if isinstance(values, dict):  # already runs
        return values
    array = np.asarray(values)
    if array.dtype.kind == "O":
        items = array.tolist()
        if any(isinstance(v, float) for v in items) and all(
            v is None or isinstance(v, (int, float)) for v in items
        ):
            array = np.array([np.nan if v is None else v for v in items], dtype=np.float64)
    if array.dtype.kind == "f":
        x = round_significant(array, digits) if digits else array.astype(np.float64)
        finite = np.isfinite(x)
        whole = finite & (np.abs(x) < 2.0**53)
        whole[whole] = x[whole] == np.round(x[whole])
        encoded = _encoded_floats(x, finite, whole)
        if digits and isinstance(encoded, list):  # rounded: to_plain need not again
            return RoundedColumn(encoded, digits)
        return encoded
    return encode_runs(array)


def _encoded_floats(x: np.ndarray, finite: np.ndarray, whole: np.ndarray) -> list | dict:
    """:func:`encode_runs` of ``x`` as a list of ints (``whole``), ``None`` (not
    ``finite``) and floats, with its runs found on ``x`` itself: as such a list reads
    back, all ints give arithmetic runs, a list with a ``None`` runs of equal items, and
    floats (ints among them made floats) runs of equal floats."""
    out = x.astype(object)
    out[~finite] = None
    out[whole] = x[whole].astype(np.int64).tolist()  # exact: below 2^53
    n, limit = x.size, int(x.size * RUNS_FRACTION)
    if n == 0 or limit < 1:
        return out.tolist()
    if whole.all():
        found = _integer_runs(x.astype(np.int64), limit)
    else:
        # equal neighbours: the same number, or both None
        same = (x[1:] == x[:-1]) | ~(finite[1:] | finite[:-1])
        starts = np.flatnonzero(np.concatenate(([True], ~same)))
        found = None
        if starts.size <= limit:
            firsts = out[starts].tolist() if not finite.all() else x[starts].tolist()
            counts = np.diff(np.append(starts, n)).tolist()
            found = [[first, count, 0] for first, count in zip(firsts, counts)]
    return out.tolist() if found is None else {"runs": found}


def group_labels(file_index: Sequence[int], ids: Sequence[int], n_files: int) -> list[str]:
    """Labels of groups given by file and ``id`` (as the full form's ``label`` column,
    without the identifier): ``file 3: experiment 0``, ``unassigned (id -1)``."""
    labels = []
    for f, i in zip(file_index, ids):
        name = "unassigned (id -1)" if i is not None and i < 0 else f"experiment {i}"
        labels.append(f"file {f}: {name}" if n_files > 1 else name)
    return labels


def split_paths(paths: Sequence[str]) -> list[tuple[str, str]]:
    """``os.path.split`` of every path (one comprehension where the separator is ``/``)."""
    if os.sep != "/" or os.altsep:
        return [os.path.split(p) for p in paths]
    # rpartition: (head with trailing slashes removed, unless it is only slashes, name)
    return [(d.rstrip("/") or d + s, n) for d, s, n in (str(p).rpartition("/") for p in paths)]


def common_directory(paths: Sequence[str]) -> tuple[str, list[str]]:
    """``(directory, names)``: the absolute common directory of ``paths`` (a single
    file's directory) and each path relative to it."""
    if not paths:
        return "", []
    same = one_directory(paths)
    if same is not None:
        return same
    # abspath once per distinct directory (10^5 files usually share one or a few)
    parts = split_paths(paths)
    if any(n in ("", ".", "..") for _d, n in parts):
        parts = split_paths([os.path.abspath(p) for p in paths])
    absolute_dirs = {d: os.path.abspath(d or ".") for d in {d for d, _n in parts}}
    distinct = list(set(absolute_dirs.values()))
    directory = distinct[0] if len(distinct) == 1 else os.path.commonpath(distinct)
    start = len(directory.rstrip(os.sep)) + 1
    prefix = {d: "" if a == directory else a[start:] + os.sep for d, a in absolute_dirs.items()}
    return directory, [prefix[d] + n for d, n in parts]


def one_directory(paths: Sequence[str]) -> tuple[str, list[str]] | None:
    """:func:`common_directory` of paths that all name files of one directory (a
    directory's listing), from their common prefix; ``None`` for any other paths."""
    head = directory_prefix(paths)
    if head is None:
        return None
    return os.path.abspath(head.rstrip("/") or head), [p[len(head) :] for p in paths]


def directory_prefix(paths: Sequence[str]) -> str | None:
    """The prefix (ending in ``/``) of paths that each name a plain file of one directory
    (no further ``/``; not ``""``, ``.`` or ``..``), else ``None``. 10^6 paths are checked
    with string operations in C: one join, counts and searches."""
    if os.sep != "/" or os.altsep or not paths:
        return None
    prefix = os.path.commonprefix([min(paths), max(paths)])  # common to all of them
    head = prefix[: prefix.rfind("/") + 1]
    if not head:
        return None
    joined = "\n".join(paths) + "\n"
    if (
        joined.count("\n") != len(paths)  # no path holds a newline
        or joined.count("/") != len(paths) * head.count("/")
        or any(f"/{name}\n" in joined for name in ("", ".", ".."))
    ):
        return None
    return head


# -- program-specific readers ---------------------------------------------------------

#: Per-series summary fields of intensity_per_frame (columns of the compact form).
SUMMARY_FIELDS = (
    "n",
    "n_non_positive",
    "n_with_sigma",
    "mean",
    "median",
    "mean_i_over_sigma",
    "frame_min",
    "frame_max",
)
#: Per-frame columns of intensity_per_frame (concatenated over series when compact).
FRAME_FIELDS = (
    "frame_first",
    "frame_last",
    "count",
    "mean",
    "median",
    "mean_i_over_sigma",
    "n_with_sigma",
    "n_non_positive",
)


def intensity_series_full(results: dict) -> dict:
    """dials.intensity_per_frame ``results`` with compact ``series`` turned into the full
    form's lists of objects (labels from file and ``id``); full results as they are."""
    series = results.get("series")
    if not isinstance(series, dict):
        return results
    numbering = decode(series["numbering"])
    first, last = decode(series["image_first"]), decode(series["image_last"])
    members = expand(series["experiments"])
    n_files = len(set(members["file_index"])) or 1
    experiments: list[list[dict]] = [[] for _ in numbering]
    for k, f, i in zip(members["series"], members["file_index"], members["id"]):
        label = group_labels([f], [i], n_files)[0]
        experiments[k].append({"file_index": f, "id": i, "identifier": None, "label": label})
    labels = []
    for n, group in zip(numbering, experiments):
        if n != "experiment_index" and group:
            labels.append(group[0]["label"])
            continue
        prefix = f"file {group[0]['file_index']}: " if group and n_files > 1 else ""
        labels.append(prefix + "stills")
    full = dict(results)
    full["series"] = [
        {
            "label": label,
            "numbering": n,
            "experiments": e,
            "image_range": None if a is None else [a, b],
        }
        for label, n, e, a, b in zip(labels, numbering, experiments, first, last)
    ]
    full["intensities"] = [
        _intensity_full(block, labels, results) for block in results["intensities"]
    ]
    return full


def _intensity_full(block: dict, labels: list[str], results: dict) -> dict:
    columns = expand(block["series"])
    frames = expand(block.get("per_frame") or {})
    bin_width = results.get("bin_width", 1)
    rows: dict[int, list[int]] = {}
    for j, k in enumerate(frames.get("series", [])):
        rows.setdefault(k, []).append(j)
    series = []
    for k, label in enumerate(labels):
        summary = {name: columns[name][k] for name in SUMMARY_FIELDS}
        if k in rows:
            per_frame = {name: [frames[name][j] for j in rows[k]] for name in FRAME_FIELDS}
        else:  # one bin with every row: its summary
            per_frame = {
                "frame_first": [summary["frame_min"]],
                "frame_last": [summary["frame_max"]],
                "count": [summary["n"]],
                **{name: [summary[name]] for name in FRAME_FIELDS[3:]},
            }
        per_frame = {"bin_width": bin_width, "n_bins": len(per_frame["count"]), **per_frame}
        series.append(
            {
                "label": label,
                "n_outside_scan": columns["n_outside_scan"][k],
                "summary": summary,
                "per_frame": per_frame,
            }
        )
    full = {k: v for k, v in block.items() if k != "per_frame"}
    full["series"] = series
    return full
