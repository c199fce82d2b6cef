"""Bounding the report's size: exact re-binning of pre-binned series, thinning, truncation.

Everything here works on the pre-binned ``results`` of a document (never raw rows), and
is vectorised numpy. Counts and count-weighted means merge exactly; medians of merged
bins cannot, so :func:`block_median` is the median of the bins' medians (said in the plot).
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np


def factor(n: int, limit: int) -> int:
    """Smallest block size ``k`` so that ``ceil(n / k) <= limit`` (1 when ``n <= limit``)."""
    return max(1, math.ceil(n / max(1, limit)))


def as_float(values: Sequence) -> np.ndarray:
    """A list with ``None`` entries as a float array with NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _starts(n: int, k: int) -> np.ndarray:
    return np.arange(0, n, k)


def block_sum(values: Sequence, k: int) -> np.ndarray:
    """Sums of consecutive blocks of ``k`` values (the last block may be shorter)."""
    array = np.nan_to_num(as_float(values))
    if k == 1 or array.size == 0:
        return array
    return np.add.reduceat(array, _starts(array.size, k))


def block_first(values: Sequence, k: int) -> np.ndarray:
    """The first value of each block."""
    return np.asarray(values)[_starts(len(values), k)]


def block_last(values: Sequence, k: int) -> np.ndarray:
    """The last value of each block."""
    n = len(values)
    return np.asarray(values)[np.minimum(_starts(n, k) + k, n) - 1]


def block_weighted_mean(values: Sequence, weights: Sequence, k: int) -> np.ndarray:
    """Exact merged means: ``sum(w * x) / sum(w)`` per block; NaN where ``sum(w) == 0``."""
    x = as_float(values)
    w = np.nan_to_num(as_float(weights))
    w = np.where(np.isfinite(x), w, 0.0)
    total = block_sum(w, k)
    weighted = block_sum(np.where(w > 0, x * w, 0.0), k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / np.where(total > 0, total, 1), np.nan)


def block_median(values: Sequence, k: int) -> np.ndarray:
    """Median of the finite values of each block (NaN for an all-empty block)."""
    x = as_float(values)
    if k == 1 or x.size == 0:
        return x
    padded = np.full(math.ceil(x.size / k) * k, np.nan)
    padded[: x.size] = x
    blocks = padded.reshape(-1, k)
    out = np.full(blocks.shape[0], np.nan)
    has = np.isfinite(blocks).any(axis=1)
    if has.any():
        out[has] = np.nanmedian(blocks[has], axis=1)
    return out


def block_sum_2d(counts: Sequence, ky: int, kx: int) -> np.ndarray:
    """A 2D histogram ``counts[iy][ix]`` with ``ky x kx`` blocks of bins merged (exact)."""
    array = np.asarray(counts, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        return array.reshape(0, 0) if array.size == 0 else array
    if ky > 1:
        array = np.add.reduceat(array, _starts(array.shape[0], ky), axis=0)
    if kx > 1:
        array = np.add.reduceat(array, _starts(array.shape[1], kx), axis=1)
    return array


def coarse_edges(edges: Sequence, k: int) -> np.ndarray:
    """Bin edges after merging blocks of ``k`` bins (the outer edges are kept)."""
    edges = np.asarray(edges, dtype=np.float64)
    if k == 1:
        return edges
    return np.append(edges[:-1][_starts(edges.size - 1, k)], edges[-1])


def stride(n: int, limit: int) -> np.ndarray:
    """Indices of every ``k``-th item, ``k = factor(n, limit)``: at most ``limit`` items."""
    return np.arange(0, n, factor(n, limit))


def plain(values: np.ndarray, digits: int = 6) -> list:
    """A float array as a JSON list: NaN/inf as ``None``, ``digits`` significant digits."""
    array = np.asarray(values, dtype=np.float64)
    rounded = [float(f"{v:.{digits}g}") for v in array.tolist()]
    return [v if math.isfinite(v) else None for v in rounded]


def truncate(value: Any, items: int, chars: int = 2000) -> Any:
    """``value`` with long lists cut to ``items`` entries and long strings to ``chars``."""
    if isinstance(value, dict):
        keys = list(value)
        out = {str(k): truncate(value[k], items, chars) for k in keys[:items]}
        if len(keys) > items:
            out["…"] = f"{len(keys) - items} more keys not shown"
        return out
    if isinstance(value, list):
        out = [truncate(v, items, chars) for v in value[:items]]
        if len(value) > items:
            out.append(f"… {len(value) - items} more items not shown")
        return out
    if isinstance(value, str) and len(value) > chars:
        return value[:chars] + f"… ({len(value) - chars} more characters)"
    return value


def bounded_json(value: Any, items: int, chars: int) -> str:
    """Indented JSON of ``value``, truncated (lists, then text) to about ``chars`` characters."""
    while True:
        text = json.dumps(truncate(value, items), indent=1, allow_nan=False, ensure_ascii=False)
        if len(text) <= chars or items <= 2:
            break
        items //= 2
    if len(text) > chars:
        text = text[:chars] + f"\n… ({len(text) - chars} more characters not shown)"
    return text
