"""Benchmark the DIALS-free reader against DIALS on a large, page-cached table.

Each measurement runs in its own subprocess (imports done before the clock starts), so
its peak RSS (``VmHWM``) is its own; the operation is repeated in that process and both
the first (cold process) and the best (warm process) times are reported, next to a plain
sequential read of the file (the physical floor). Prints a markdown table.

    /usr/bin/python3 benchmarks/bench_reader.py [--rows 1000000] [--path FILE] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
THREE = {
    "indexed": ["xyzobs.px.value", "flags", "id"],
    "integrated": ["xyzcal.px", "intensity.sum.value", "flags"],
}


def _status(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _three_columns(path: str) -> list[str]:
    from dials_refl_stats.reader import read_layout

    cols = read_layout(path).columns
    return THREE["indexed"] if "xyzobs.px.value" in cols else THREE["integrated"]


def _bytes_for(path: str, what: str) -> int:
    from dials_refl_stats.reader import read_layout

    layout = read_layout(path)
    if what == "reader_counts":
        return layout.columns["shoebox"].nbytes + layout.columns["bbox"].nbytes
    if what == "reader_3cols":
        return sum(layout.columns[c].nbytes for c in _three_columns(path))
    return os.path.getsize(path)


def child(what: str, path: str, repeat: int) -> None:
    """Run one measurement ``repeat`` times in this process; print JSON."""
    import numpy as np

    if what.startswith("dials"):
        from dials.array_family import flex
    else:
        from dials_refl_stats.reader import read_reflections, shoebox_mask_counts

    cols = _three_columns(path)
    buf = bytearray(16 << 20)

    def run():
        if what == "cat":
            view = memoryview(buf)
            with open(path, "rb", buffering=0) as fh:
                while fh.readinto(view):
                    pass
            return None
        if what == "dials_from_file":
            return len(flex.reflection_table.from_file(path))
        if what == "dials_count":
            t = flex.reflection_table.from_file(path)
            return int(flex.sum(t["shoebox"].count_mask_values(4)))
        if what == "reader_counts":
            return int(shoebox_mask_counts(path, 4).sum())
        if what == "reader_3cols":
            data = read_reflections(path, columns=cols)
            return int(np.asarray(data.columns[cols[0]]).shape[0])
        if what == "reader_masks":
            return int(len(read_reflections(path, columns=[], shoebox="mask").shoebox))
        raise ValueError(what)

    base = _status("VmRSS")
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    out = {"times": times, "hwm_mb": _status("VmHWM"), "base_mb": base, "result": result}
    print(json.dumps(out))


MEASUREMENTS = [
    ("cat", "sequential read (floor)"),
    ("dials_from_file", "DIALS `from_file`"),
    ("dials_count", "DIALS `from_file` + `count_mask_values(4)`"),
    ("reader_counts", "reader `shoebox_mask_counts(path, 4)`"),
    ("reader_3cols", "reader, 3 flat columns"),
    ("reader_masks", 'reader `shoebox="mask"` (ragged masks)'),
]


def measure(what: str, path: str, repeat: int) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        what,
        path,
        "--repeat",
        str(repeat),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--path", help="table to use (default: generated big table)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], help="measurement names to skip")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.repeat)
        return 0
    sys.path.insert(0, str(HERE))
    from make_big_table import ensure_big_table

    path = args.path or ensure_big_table(args.rows)
    size = os.path.getsize(path)
    with open(path, "rb") as fh:  # page-cache the file
        while fh.read(16 << 20):
            pass
    rows = {}
    for what, label in MEASUREMENTS:
        if what in args.skip:
            continue
        rows[what] = (label, measure(what, path, args.repeat))
    print(
        f"\nFile: `{path}` ({size / 1e6:.1f} MB), best of {args.repeat} runs per "
        "fresh process (first run in brackets)\n"
    )
    print(
        "| measurement | time best (first) s | MB/s | bytes needed MB | peak RSS MB "
        "| RSS before MB |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for what, (label, res) in rows.items():
        best, first = min(res["times"]), res["times"][0]
        need = _bytes_for(path, what) / 1e6
        print(
            f"| {label} | {best:.3f} ({first:.3f}) | {need / best:.0f} | {need:.1f} "
            f"| {res['hwm_mb']:.0f} | {res['base_mb']:.0f} |"
        )
    ratios = []
    if "dials_from_file" in rows:
        ref = rows["dials_from_file"][1]["times"]
        for what in ("reader_counts", "reader_3cols"):
            if what in rows:
                mine = min(rows[what][1]["times"])
                ratios.append(
                    f"- {rows[what][0]}: {ref[0] / mine:.0f}x faster than a fresh-process "
                    f"`from_file` ({ref[0]:.2f} s), {min(ref) / mine:.0f}x than the best "
                    f"warm-process `from_file` ({min(ref):.2f} s)"
                )
        hwm = rows["dials_from_file"][1]["hwm_mb"] - rows["dials_from_file"][1]["base_mb"]
        for what in ("reader_counts", "reader_3cols"):
            if what in rows:
                res = rows[what][1]
                ratios.append(
                    f"- {rows[what][0]}: RSS growth {res['hwm_mb'] - res['base_mb']:.0f} MB "
                    f"vs {hwm:.0f} MB for `from_file` "
                    f"({(res['hwm_mb'] - res['base_mb']) / hwm:.2f}x)"
                )
    if ratios:
        print("\n" + "\n".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
