"""Whole-process wall time and peak memory of the programs next to DIALS's own load.

Each measurement runs in a fresh process (start-up included), after one warm-up read of the
file so that it is page-cached; peak memory is the child's maximum resident set size (mapped
file pages included); CPU time (user + system) is reported too, as it varies less than the
wall time on a shared machine. Every round runs each case once (rounds repeated
``--repeats`` times); the best wall and the best CPU time of each case are reported.
Prints a markdown table for the README.

    .venv/bin/python benchmarks/bench_programs.py                 # 10^5 and 10^6 rows
    .venv/bin/python benchmarks/bench_programs.py --rows 100000 --repeats 3
    .venv/bin/python benchmarks/bench_programs.py --no-seed       # skip the slow seed loop
    .venv/bin/python benchmarks/bench_programs.py --rows 1000000 --no-seed \\
        --pair tests/data/sim_twoexp/integrated.refl tests/data/sim_twoexp/integrated.expt \\
        --pair tests/data/sim_twoexp/indexed.refl tests/data/sim_twoexp/indexed.expt

With ``--pair TABLE EXPT`` (repeatable) each generated table is run with its experiments:
the baseline is then DIALS loading both (import dials, ``ExperimentList.from_file``,
``flex.reflection_table.from_file``) and every program is given the .expt file too.
``--work DIR`` finds (or makes) the tables in ``DIR`` (a worktree can use the main
checkout's ``benchmarks/work``). The package the programs import is byte-compiled first,
as installing it does (``--no-compile``: not).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

DIALS_LOAD = """
import sys
from dials.array_family import flex
table = flex.reflection_table.from_file(sys.argv[1])
print(table.size())
"""

DIALS_PARSER_AND_LOAD = """
import sys
from dials.util.options import ArgumentParser
import dials.util.log
from dials.array_family import flex
table = flex.reflection_table.from_file(sys.argv[1])
print(table.size())
"""

DIALS_LOAD_WITH_EXPERIMENTS = """
import sys
import dials
from dials.array_family import flex
from dxtbx.model.experiment_list import ExperimentList
experiments = ExperimentList.from_file(sys.argv[2], check_format=False)
table = flex.reflection_table.from_file(sys.argv[1])
print(len(experiments), table.size())
"""

SEED_LOOP = """
import sys
from dials.algorithms.shoebox import MaskCode
from dials.array_family import flex
data = flex.reflection_table.from_file(sys.argv[1])
data = data.select(data.get_flags(data.flags.indexed))
pixels = flex.size_t()
for j in range(data.size()):
    pixels.append(data[j]["shoebox"].count_mask_values(MaskCode.Foreground))
hist = flex.histogram(pixels.as_double(), data_min=0, data_max=1000, n_slots=100)
print(sum(hist.slots()))
"""

MEASURE = """
import resource, subprocess, sys, time, json
start = time.perf_counter()
done = subprocess.run(sys.argv[2:], cwd=sys.argv[1], stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                  "peak_mib": usage.ru_maxrss / 1024, "rc": done.returncode,
                  "stderr": done.stderr[-500:]}))
"""


def measure_once(command: list[str], workdir: str) -> dict:
    """Wall time, CPU time and peak RSS of one fresh process running ``command``."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, workdir, *command],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"{command} failed: {result['stderr']}")
    return result


def measure_cases(cases: dict[str, list[str]], workdir: str, repeats: int) -> dict[str, dict]:
    """Per case: the best wall time (with that run's peak RSS) and the best CPU time over
    ``repeats`` rounds; each round runs every case once, so that a change of load on a
    shared machine hits all cases alike."""
    best: dict[str, dict] = {}
    failed: set[str] = set()
    for _ in range(repeats):
        for name, command in cases.items():
            if name in failed:
                continue
            try:
                result = measure_once(command, workdir)
            except RuntimeError as error:
                print(f"# {name}: {error}", file=sys.stderr)
                failed.add(name)
                best.pop(name, None)
                continue
            old = best.get(name)
            if old is None:
                best[name] = result
                continue
            cpu = min(old["cpu"], result["cpu"])
            best[name] = result if result["wall"] < old["wall"] else old
            best[name] = {**best[name], "cpu": cpu}
    return best


def byte_compile_package() -> str:
    """Byte-compile the ``dials_refl_stats`` the programs will import, as installing it
    does (DIALS's own modules are compiled): with ``PYTHONDONTWRITEBYTECODE`` set, every
    run would otherwise compile it again (~0.07 s). Returns its directory."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import dials_refl_stats as p, os; print(os.path.dirname(p.__file__))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    package = out.stdout.strip()
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
    return package


def warm(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(64 << 20):
            pass


def table_for(rows: int, source: str | None, work: Path = HERE / "work") -> Path:
    """The generated table of ``rows`` rows replicated from ``source`` (made once, in
    ``work``)."""
    sys.path.insert(0, str(HERE))
    from make_big_table import make_big_table

    stem = f"{Path(source).parent.name}_{Path(source).stem}" if source else "big"
    path = work / f"{stem}_{rows}.refl"
    if not path.exists():
        make_big_table(rows, str(path), source)
    return path


def program_cases(path: Path, experiments: str | None) -> dict[str, list[str]]:
    """The three programs on ``path`` (with ``experiments`` first when given)."""
    before = [experiments] if experiments else []
    return {
        "dials.spot_size_histogram (default reader)": [
            str(BIN / "dials.spot_size_histogram"),
            *before,
            str(path),
        ],
        "dials.intensity_per_frame": [
            str(BIN / "dials.intensity_per_frame"),
            *before,
            str(path),
            "selection.flags=all",
            "frame.source=xyzobs",
        ],
        "dials.strong_reflection_positions": [
            str(BIN / "dials.strong_reflection_positions"),
            *before,
            str(path),
            "selection.flags=all",
        ],
    }


def cases_for(path: Path, experiments: str | None, seed: bool) -> dict[str, list[str]]:
    """Baseline(s) first, then the programs (and the seed's loop when ``seed``)."""
    python = sys.executable
    if experiments:
        cases = {
            "DIALS: import + ExperimentList + from_file": [
                python,
                "-c",
                DIALS_LOAD_WITH_EXPERIMENTS,
                str(path),
                experiments,
            ]
        }
        cases.update(program_cases(path, experiments))
    else:
        cases = {
            "DIALS: import + from_file": [python, "-c", DIALS_LOAD, str(path)],
            "DIALS: import parser, logging + from_file": [
                python,
                "-c",
                DIALS_PARSER_AND_LOAD,
                str(path),
            ],
        }
        cases.update(program_cases(path, None))
        cases["dials.spot_size_histogram reader=dials"] = [
            str(BIN / "dials.spot_size_histogram"),
            str(path),
            "reader=dials",
        ]
    if seed:
        cases["seed script (row loop)"] = [python, "-c", SEED_LOOP, str(path)]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-seed", action="store_true", help="skip the seed's row loop")
    parser.add_argument("--json", help="also write the measurements here")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="do not byte-compile dials_refl_stats first (see byte_compile_package)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=HERE / "work",
        help="directory of the generated tables (default: benchmarks/work; a worktree "
        "can use the main checkout's)",
    )
    parser.add_argument(
        "--source",
        help="indexed.refl (with shoeboxes) to replicate; default: make_big_table's "
        "(tests/data/sim_twoexp/indexed.refl). The README's numbers use the 'medium' "
        "simulated data set: ../shared/tools/make_dials_dataset.sh medium",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("TABLE", "EXPT"),
        help="replicate TABLE and run everything with EXPT too (repeatable; replaces --source)",
    )
    args = parser.parse_args()

    inputs = (
        [(t, str(Path(e).resolve())) for t, e in args.pair] if args.pair else [(args.source, None)]
    )
    if not args.no_compile:
        print(f"# byte-compiled {byte_compile_package()}", file=sys.stderr)
    rows_out = []
    for rows in args.rows:
        for source, experiments in inputs:
            path = table_for(rows, source, args.work)
            warm(path)
            size_mb = path.stat().st_size / 1e6
            table = path.name
            with tempfile.TemporaryDirectory() as workdir:
                cases = cases_for(path, experiments, seed=not args.no_seed)
                cases = {n: c for n, c in cases.items() if Path(c[0]).exists()}
                for name, result in measure_cases(cases, workdir, args.repeats).items():
                    rows_out.append(
                        {"rows": rows, "table": table, "file_mb": size_mb, "case": name, **result}
                    )
                    print(
                        f"{rows:>8} {table:<36} {name:<45} {result['wall']:7.2f} s "
                        f"(cpu {result['cpu']:6.2f} s) {result['peak_mib']:8.0f} MiB",
                        file=sys.stderr,
                    )

    print(
        "| rows | table | file | command | wall time (s) | CPU time (s) | peak RSS (MiB) "
        "| time / DIALS load | CPU / DIALS load | memory / DIALS load |"
    )
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for key in dict.fromkeys((r["rows"], r["table"]) for r in rows_out):
        cases = [r for r in rows_out if (r["rows"], r["table"]) == key]
        base = next((r for r in cases if r["case"].startswith("DIALS")), None)
        for r in cases:
            ratio_t = r["wall"] / base["wall"] if base else float("nan")
            ratio_c = r["cpu"] / base["cpu"] if base else float("nan")
            ratio_m = r["peak_mib"] / base["peak_mib"] if base else float("nan")
            print(
                f"| {r['rows']:,} | {r['table']} | {r['file_mb']:.0f} MB | {r['case']} | "
                f"{r['wall']:.2f} | {r['cpu']:.2f} | {r['peak_mib']:.0f} | {ratio_t:.2f} | "
                f"{ratio_c:.2f} | {ratio_m:.2f} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows_out, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
