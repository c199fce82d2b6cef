"""Generate a large, realistic reflection table (with shoeboxes) for benchmarks.

The rows of a real indexed table are replicated with DIALS itself: copy ``k`` has its
z coordinates (``xyzobs.*``, ``xyzcal.px``, ``bbox`` and the shoebox bounding boxes)
shifted by ``k`` scan widths, so the result looks like a longer sweep of the same
crystal(s). The table is written with ``as_file`` (msgpack), exactly as DIALS writes it.

Usage (DIALS's interpreter)::

    /usr/bin/python3 benchmarks/make_big_table.py --rows 1000000 [OUTPUT] [--source FILE]

Other benchmark scripts call :func:`make_big_table` (or :func:`ensure_big_table`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / "work"
DEFAULT_SOURCE = REPO / "tests" / "data" / "sim_twoexp" / "indexed.refl"
FALLBACK_SOURCE = REPO / "dials_refl_stats" / "data" / "sim_small" / "indexed.refl"

Z_COLUMNS = ("xyzobs.px.value", "xyzcal.px")


def default_path(rows: int) -> str:
    """Default output path under ``benchmarks/work/`` (git-ignored)."""
    return str(WORK / f"big_{rows}.refl")


def _shifted_copy(source, dz: int):
    """A copy of ``source`` with every z coordinate shifted by ``dz`` images."""
    from dials.array_family import flex

    t = source.copy()
    for name in Z_COLUMNS:
        if name in t:
            x, y, z = t[name].parts()
            t[name] = flex.vec3_double(x, y, z + dz)
    if "bbox" in t:
        parts = list(t["bbox"].parts())
        parts[4] += dz
        parts[5] += dz
        t["bbox"] = flex.int6(*parts)
    if "shoebox" in t:
        sb = t["shoebox"].deep_copy()
        for i in range(len(sb)):  # ~1 us per row; DIALS has no vectorised setter
            b = sb[i].bbox
            sb[i].bbox = (b[0], b[1], b[2], b[3], b[4] + dz, b[5] + dz)
        t["shoebox"] = sb
    return t


def make_big_table(rows: int, path: str | None = None, source: str | None = None) -> str:
    """Write a table of exactly ``rows`` rows replicated from ``source``; return path.

    ``source`` defaults to ``tests/data/sim_twoexp/indexed.refl`` (two experiments,
    shoeboxes). Requires DIALS.
    """
    from dials.array_family import flex

    if rows <= 0:
        raise ValueError("rows must be positive")
    path = path or default_path(rows)
    if source is None:
        source = str(DEFAULT_SOURCE if DEFAULT_SOURCE.exists() else FALLBACK_SOURCE)
    base = flex.reflection_table.from_file(source)
    if "bbox" in base and len(base):
        _x0, _x1, _y0, _y1, z0, z1 = base["bbox"].parts()
        width = max(1, int(flex.max(z1)) - min(0, int(flex.min(z0))))
    else:
        width = 1
    out = None
    k = 0
    while out is None or len(out) < rows:
        block = _shifted_copy(base, k * width)
        if out is None:
            out = block
        else:
            out.extend(block)
        k += 1
    if len(out) > rows:
        keep = flex.bool(len(out), False)
        keep.set_selected(flex.size_t_range(rows), True)
        out = out.select(keep)  # select keeps the experiment identifiers, [:n] not
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    out.as_file(tmp)
    os.replace(tmp, path)
    return str(path)


def ensure_big_table(rows: int, path: str | None = None, source: str | None = None) -> str:
    """Return ``path`` (default under benchmarks/work), generating it if missing."""
    path = path or default_path(rows)
    if not os.path.exists(path):
        make_big_table(rows, path, source)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", help="output .refl (default benchmarks/work/)")
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--source", help="real DIALS .refl with shoeboxes to replicate")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = make_big_table(args.rows, args.output, args.source)
    size = os.path.getsize(path)
    print(f"{path}: {args.rows} rows, {size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
