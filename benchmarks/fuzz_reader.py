"""Fuzz the DIALS-free reader with seeded mutations of real reflection files.

Every mutated file must either read or raise :class:`ReflectionFileError` with a one-line
message naming the file: no other exception, crash, hang, or allocation beyond what the
file size justifies (checked with ``tracemalloc``, which sees numpy's buffers).

    python benchmarks/fuzz_reader.py --iterations 20000 [--seed 1] [--read-ahead] [FILE ...]
    make fuzz FUZZ_ITERATIONS=20000

The same engine runs a short, fixed-seed pass in ``tests/test_reader_robustness.py``.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from dials_refl_stats.reader import (  # noqa: E402
    ReflectionFileError,
    read_layout,
    read_reflections,
    shoebox_mask_counts,
    sniff_format,
)

DEFAULT_FILES = [
    REPO / "dials_refl_stats" / "data" / "sim_small" / "indexed.refl",
    REPO / "tests" / "data" / "centroid_test_data" / "integrated.refl",
    REPO / "tests" / "data" / "ssx_CuNiR" / "indexed.refl",
    REPO / "tests" / "data" / "quartz_processed" / "integrated.refl",
]
EXTREMES = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 0xFFFF, 1 << 20, 3, 29]


def _shoebox_offsets(raw: bytes, path: Path) -> list[int]:
    """Absolute offsets of a few shoebox record headers (targets for mutations)."""
    try:
        span = read_layout(path).columns.get("shoebox")
    except ReflectionFileError:
        return []
    if span is None:
        return []
    sb = read_reflections(path, columns=[], shoebox="mask").shoebox
    sizes = 29 + np.diff(sb.offsets) * np.where(sb.allocated, 12, 0)
    starts = span.offset + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [int(x) for x in starts]


class Mutator:
    """Seeded mutations of one file's bytes."""

    def __init__(self, path: Path, rng: np.random.Generator) -> None:
        self.path, self.rng = path, rng
        self.raw = path.read_bytes()
        layout = read_layout(path)
        self.spans = list(layout.columns.values())
        self.records = _shoebox_offsets(self.raw, path)
        self.header_end = min((s.offset for s in self.spans), default=len(self.raw))

    def __call__(self) -> tuple[str, bytes]:
        kinds = [
            "truncate",
            "flip",
            "flip_header",
            "int32",
            "record",
            "binlen",
            "nrows",
            "version",
            "magic",
            "splice",
            "append",
        ]
        kind = kinds[int(self.rng.integers(len(kinds)))]
        return kind, getattr(self, f"_{kind}")(bytearray(self.raw))

    def _pos(self, lo: int = 0, hi: int | None = None) -> int:
        hi = len(self.raw) if hi is None else hi
        return int(self.rng.integers(lo, max(hi, lo + 1)))

    def _truncate(self, b: bytearray) -> bytes:
        return bytes(b[: self._pos()])

    def _flip(self, b: bytearray) -> bytes:
        for _ in range(int(self.rng.integers(1, 9))):
            p = self._pos(0, len(b))
            b[p] ^= 1 << int(self.rng.integers(8))
        return bytes(b)

    def _flip_header(self, b: bytearray) -> bytes:
        for _ in range(int(self.rng.integers(1, 4))):
            p = self._pos(0, self.header_end + 64)
            if p < len(b):
                b[p] = int(self.rng.integers(256))
        return bytes(b)

    def _int32(self, b: bytearray) -> bytes:
        p = self._pos(0, len(b) - 4)
        v = EXTREMES[int(self.rng.integers(len(EXTREMES)))]
        b[p : p + 4] = struct.pack("<I", v & 0xFFFFFFFF)
        return bytes(b)

    def _record(self, b: bytearray) -> bytes:
        """Corrupt a shoebox header: panel, a bbox value, or the flag."""
        if not self.records:
            return self._int32(b)
        start = self.records[int(self.rng.integers(len(self.records)))]
        field = int(self.rng.integers(8))
        if field == 7:
            b[start + 28] = int(self.rng.choice([0, 1, 2, 3, 255]))
        else:
            v = EXTREMES[int(self.rng.integers(len(EXTREMES)))]
            b[start + 4 * field : start + 4 * field + 4] = struct.pack("<I", v & 0xFFFFFFFF)
        return bytes(b)

    def _binlen(self, b: bytearray) -> bytes:
        """Change a column's bin32/bin16 length (past the end, shorter, huge)."""
        span = self.spans[int(self.rng.integers(len(self.spans)))]
        for hlen, tag, fmt in ((5, 0xC6, ">I"), (3, 0xC5, ">H"), (2, 0xC4, ">B")):
            if span.offset >= hlen and b[span.offset - hlen] == tag:
                top = (1 << (8 * struct.calcsize(fmt))) - 1
                v = int(
                    self.rng.choice(
                        [0, top, span.nbytes + 1, span.nbytes - 1, len(b) * 2 % (top + 1)]
                    )
                )
                b[span.offset - hlen + 1 : span.offset] = struct.pack(fmt, max(0, min(v, top)))
                break
        return bytes(b)

    def _nrows(self, b: bytearray) -> bytes:
        i = bytes(b).find(b"\xa5nrows")
        if i < 0:
            return self._flip(b)
        choices = [0, 1, 2**31, 2**64 - 1, len(self.raw)]
        new = choices[int(self.rng.integers(len(choices)))]
        return bytes(b[: i + 6]) + b"\xcf" + struct.pack(">Q", new) + _skip_int(b, i + 6)

    def _version(self, b: bytearray) -> bytes:
        b[29] = int(self.rng.choice([0, 2, 3, 0x7F, 0xCC]))
        return bytes(b)

    def _magic(self, b: bytearray) -> bytes:
        b[2 + int(self.rng.integers(27))] ^= 0x20
        return bytes(b)

    def _splice(self, b: bytearray) -> bytes:
        p, q = sorted((self._pos(), self._pos()))
        if self.rng.random() < 0.5:
            return bytes(b[:p] + b[q:])  # delete
        return bytes(b[:q] + b[p:q] + b[q:])  # duplicate

    def _append(self, b: bytearray) -> bytes:
        extra = self.rng.integers(0, 256, int(self.rng.integers(1, 100)), dtype=np.uint8)
        return bytes(b) + extra.tobytes()


def _skip_int(b: bytearray, i: int) -> bytes:
    """The bytes after the msgpack integer starting at ``i``."""
    tag = b[i]
    size = {0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9, 0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}
    return bytes(b[i + size.get(tag, 1) :])


def check_file(path: Path, measure: bool = False) -> tuple[str, int]:
    """Exercise every entry point on ``path``; returns (outcome, peak traced bytes)."""
    outcome = "ok"
    if measure:
        tracemalloc.start()
    try:
        assert sniff_format(path) in ("msgpack", "pickle", "hdf5", "unknown")
        for call in (
            lambda: read_reflections(path, shoebox="full", chunk_bytes=16384),
            lambda: read_reflections(path, columns=["flags"]),
            lambda: shoebox_mask_counts(path, 5, chunk_bytes=8192),
            lambda: shoebox_mask_counts(path, 1 << 9, all_bits=False),
        ):
            try:
                call()
            except ReflectionFileError as exc:
                msg = str(exc)
                if "\n" in msg or not msg.startswith(f"{path.name}: "):
                    raise AssertionError(f"bad error message: {msg!r}") from exc
                outcome = "error"
    finally:
        peak = 0
        if measure:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return outcome, peak


def fuzz(
    files: list[Path], iterations: int, seed: int, workdir: Path, measure_every: int = 10
) -> Counter:
    """Run ``iterations`` mutations; raise on the first unexpected behaviour."""
    rng = np.random.default_rng(seed)
    mutators = [Mutator(Path(f), rng) for f in files]
    stats: Counter = Counter()
    for it in range(iterations):
        m = mutators[it % len(mutators)]
        kind, blob = m()
        target = workdir / m.path.name
        target.write_bytes(blob)
        measure = measure_every > 0 and it % measure_every == 0
        try:
            outcome, peak = check_file(target, measure)
        except Exception as exc:
            keep = workdir / f"failure_{seed}_{it}_{kind}_{m.path.name}"
            keep.write_bytes(blob)
            raise AssertionError(
                f"iteration {it} ({kind} of {m.path.name}) raised "
                f"{type(exc).__name__}: {exc}; input kept as {keep}"
            ) from exc
        limit = 32 * len(blob) + (4 << 20)
        if peak > limit:
            keep = workdir / f"memory_{seed}_{it}_{kind}_{m.path.name}"
            keep.write_bytes(blob)
            raise AssertionError(
                f"iteration {it} ({kind}): peak {peak} bytes for a {len(blob)}-byte file"
            )
        stats[(kind, outcome)] += 1
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--measure-every", type=int, default=10)
    parser.add_argument(
        "--read-ahead",
        action="store_true",
        help="use the read-ahead thread even for the small windows used here",
    )
    args = parser.parse_args(argv)
    if args.read_ahead:
        from dials_refl_stats.reader import shoebox

        shoebox.THREAD_MIN_WINDOW = 4096
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stats = fuzz(args.files, args.iterations, args.seed, Path(tmp), args.measure_every)
    took = time.perf_counter() - start
    print(f"{args.iterations} mutations in {took:.1f} s, no unexpected behaviour")
    for (kind, outcome), n in sorted(stats.items()):
        print(f"  {kind:12s} {outcome:6s} {n}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
