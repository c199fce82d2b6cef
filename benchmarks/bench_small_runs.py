"""Whole-process wall time of the programs on the shipped DIALS files (what a user feels
running one on a small data set), next to DIALS's own ``dials.spot_counts_per_image``.

Each case is a fresh process (start-up included), run in a fresh directory; every round
runs each case once and the best of ``--repeats`` rounds is kept. ``--pythonpath DIR``
runs another checkout's package with the same console scripts (a "before" column:
``git worktree add /tmp/before <commit>``). Prints a markdown table.

    .venv/bin/python benchmarks/bench_small_runs.py --repeats 5
    .venv/bin/python benchmarks/bench_small_runs.py --repeats 5 --pythonpath /tmp/before
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
BIN = Path(sys.executable).parent

#: (label, experiments, reflections): DIALS's program reads spot finding's output only
INPUTS = [
    ("sim_small strong (spot finding)", "sim_small/imported.expt", "sim_small/strong.refl"),
    ("sim_twoexp indexed", "sim_twoexp/indexed.expt", "sim_twoexp/indexed.refl"),
    ("sim_twoexp integrated (scan-varying)", "sim_twoexp/integrated.expt",
     "sim_twoexp/integrated.refl"),
    ("ssx_CuNiR indexed (5 stills)", "ssx_CuNiR/indexed.expt", "ssx_CuNiR/indexed.refl"),
]  # fmt: skip
#: (program, arguments without plots)
PROGRAMS = [
    ("spot_size_histogram", ["output.plot=None"]),
    ("per_image_statistics", ["output.plot=None"]),
    ("refl_stats", ["output.html=None"]),
]


def best_wall(command: list[str], env: dict, repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench_small_") as cwd:
            start = time.perf_counter()
            subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
    return min(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pythonpath", help="another checkout's package (a 'before' column)")
    args = parser.parse_args()
    envs = {"after": dict(os.environ)}
    # byte-compiled, as an installed package is (this machine sets PYTHONDONTWRITEBYTECODE)
    compileall.compile_dir(str(REPO / "dials_refl_stats"), quiet=1)
    if args.pythonpath:
        compileall.compile_dir(str(Path(args.pythonpath) / "dials_refl_stats"), quiet=1)
        envs = {"before": {**os.environ, "PYTHONPATH": args.pythonpath}, **envs}
    cases = []
    for label, expt, refl in INPUTS:
        inputs = [str(DATA / expt), str(DATA / refl)]
        for program, quiet in PROGRAMS:
            cases.append((label, program, [str(BIN / f"dials.{program}"), *inputs, *quiet]))
        if "spot finding" in label:
            dials = ["dials.spot_counts_per_image", *inputs]
            cases.append((label, "(DIALS: dials.spot_counts_per_image)", dials))
    print(f"| input | program | {' | '.join(f'{name} s' for name in envs)} |")
    print(f"|---|---|{'---|' * len(envs)}")
    for label, program, command in cases:
        if command[0].startswith("dials.spot_counts"):
            walls = [best_wall(command, envs["after"], args.repeats)] * len(envs)
        else:
            walls = [best_wall(command, env, args.repeats) for env in envs.values()]
        print(f"| {label} | {program} | {' | '.join(f'{w:.2f}' for w in walls)} |", flush=True)


if __name__ == "__main__":
    main()
