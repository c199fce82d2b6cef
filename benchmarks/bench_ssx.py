"""Serial-crystallography scale: our programs next to a DIALS loop and reciprocalspaceship.

Every measurement is a fresh process (start-up included), best of ``--repeats`` rounds
by wall time (each round runs every case once, so that the shared machine's slower and
faster spells fall on all cases alike); the inputs are read once beforehand so that they
are page-cached. Peak RSS: the driver's from ``wait4`` (its own ``ru_maxrss`` is the
largest of it and its waited-for children, so for local workers the driver's own is
sampled), workers' sampled with psutil every 50 ms. Data: ``benchmarks/make_ssx_sets.py``
(made with DIALS when missing).

    .venv/bin/python benchmarks/bench_ssx.py                    # 10^4 files, joint table
    .venv/bin/python benchmarks/bench_ssx.py --files 100000 --cases ours-serial ours-nproc2
    .venv/bin/python benchmarks/bench_ssx.py --no-joint --repeats 5 --cases dials-import \
        dials-loop floor-numpy floor-read floor-decode ours-import ours-serial  # target 1's floors
    .venv/bin/python benchmarks/bench_ssx.py --sizes            # JSON/log sizes, 4 programs
    .venv/bin/python benchmarks/bench_ssx.py --scaling --files 100000  # serial vs nproc=2
    .venv/bin/python benchmarks/bench_ssx.py --integrated --no-joint --cases none
        # 200 files x 50 integrated stills: reciprocalspaceship (its own virtualenv,
        # benchmarks/work/rs-venv) next to dials.intensity_per_frame
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")
DIALS_PYTHON = "/usr/bin/python3"
RS_VENV = WORK / "rs-venv"

#: The DIALS loop the issue measured: import once, from_file + count_mask_values per file.
DIALS_LOOP = """
import glob, os, sys
from dials.array_family import flex
from dials.algorithms.shoebox import MaskCode
target = sys.argv[1]
paths = sorted(glob.glob(os.path.join(target, "*.refl"))) if os.path.isdir(target) else [target]
sizes = flex.int()
for path in paths:
    table = flex.reflection_table.from_file(path)
    table = table.select(table.get_flags(table.flags.strong))
    sizes.extend(table["shoebox"].count_mask_values(MaskCode.Foreground))
histogram = flex.histogram(sizes.as_double(), n_slots=max(1, int(flex.max(sizes))))
print(len(paths), sizes.size(), list(histogram.slots())[:5])
"""

#: What any run must do at least (the floors of target 1): the interpreter and numpy,
#: then each file read into one reused buffer (``decode``: and decoded by msgpack's C
#: extension, no checks), as our small-file path reads them.
FLOOR = """
import os, sys
import numpy
from msgpack import _cmsgpack
target, decode = sys.argv[1], sys.argv[2] == "decode"
paths = sorted(os.path.join(target, n) for n in os.listdir(target) if n.endswith(".refl"))
buffer = bytearray((4 << 20) + 1)
view = memoryview(buffer)
total = 0
for path in paths:
    fd = os.open(path, os.O_RDONLY)
    size = os.readv(fd, [buffer])
    os.close(fd)
    if decode:
        _cmsgpack.unpackb(view[:size], raw=False, strict_map_key=False)
    total += size
print(len(paths), total)
"""

#: reciprocalspaceship: stills read with its joblib parallelism, strong-spot positions.
RS_STILLS = """
import glob, os, sys
import numpy as np
import reciprocalspaceship as rs
from reciprocalspaceship.io import dials
paths = sorted(glob.glob(os.path.join(sys.argv[1], "*.refl")))
df = dials.read_dials_stills(paths, unitcell=[100, 100, 100, 90, 90, 90], spacegroup="P1",
                             numjobs=int(sys.argv[2]), parallel_backend="joblib",
                             extra_cols=["flags"])
summed = (df["flags"].to_numpy().astype(np.int64) & (1 << 16)) != 0  # integrated_sum
per_still = df[summed].groupby("BATCH")["intensity.sum.value"].agg(["count", "mean", "median"])
print(len(paths), len(df), len(per_still))
"""


def ensure_data(files: list[int]) -> dict[str, Path]:
    """The benchmark inputs (made with DIALS's Python when missing)."""
    data = {f"files_{n}": WORK / f"ssx_{'links' if n > 100000 else 'strong'}_{n}" for n in files}
    data["joint"] = WORK / "ssx_joint_10000.refl"
    data["integrated"] = WORK / "ssx_integrated_200_x_50"
    for n in files:
        if n <= 100000:
            data[f"indexed_{n}"] = WORK / f"ssx_indexed_{n}.expt"
    if not all(p.exists() for p in data.values()):
        command = [DIALS_PYTHON, str(HERE / "make_ssx_sets.py")]
        for n in files:
            command += ["--files", str(n)]
        subprocess.run(command, check=True)
    return data


def warm(path: Path) -> tuple[int, int]:
    """Read every file once (page cache); (number of files, bytes)."""
    paths = sorted(path.glob("*.refl")) if path.is_dir() else [path]
    total = 0
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                total += len(chunk)
    return len(paths), total


class Sampler(threading.Thread):
    """Peak RSS of a process's descendants, and of extra processes (external workers)."""

    def __init__(self, pid: int, extra: list[int]):
        super().__init__(daemon=True)
        import psutil

        self.psutil, self.root, self.extra = psutil, psutil.Process(pid), extra
        self.driver = self.workers = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.driver = max(self.driver, self.root.memory_info().rss)
                procs = self.root.children(recursive=True)
                procs += [self.psutil.Process(p) for p in self.extra]
                rss = [p.memory_info().rss for p in procs if p.is_running()]
            except self.psutil.Error:
                continue
            self.workers = max(self.workers, max(rss, default=0))


def measure(command: list[str], cwd: str, extra_pids: list[int]) -> dict:
    """Wall, CPU and peak RSS of one fresh run of ``command``."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = Sampler(proc.pid, extra_pids)
    sampler.start()
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{command} failed:\n{out.decode()[-2000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # largest of the process and its children
        "driver_rss_mb": sampler.driver / 2**20,
        "worker_rss_mb": sampler.workers / 2**20,
        "tail": out.decode(errors="replace").strip().splitlines()[-1:],
    }


def best_of(command: list[str], repeats: int, extra_pids=(), outputs=False) -> dict:
    """Best (by wall) of ``repeats`` runs in a fresh directory each; output sizes kept."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench_ssx_") as cwd:
            run = measure(command, cwd, list(extra_pids))
            run["outputs"] = {p.name: p.stat().st_size for p in Path(cwd).iterdir()}
            if outputs:
                for p in Path(cwd).glob("*.json"):
                    run["json"] = json.loads(p.read_text())
            runs.append(run)
    return min(runs, key=lambda r: r["wall_s"])


def ours(program: str, target: Path, *extra: str, plot: bool = False) -> list[str]:
    args = [str(target), *extra, *([] if plot else ["output.plot=None"])]
    return [str(BIN / f"dials.{program}"), *args]


class ExternalDask:
    """``dask scheduler`` and ``dask worker --nworkers 2`` on 127.0.0.1 (ended on exit)."""

    def __enter__(self) -> "ExternalDask":
        self.dir = tempfile.mkdtemp(prefix="bench_ssx_dask_")
        self.file = os.path.join(self.dir, "scheduler.json")
        cli = [sys.executable, "-m"]  # this interpreter: workers import dials_refl_stats
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": self.dir}
        self.scheduler = subprocess.Popen(
            [
                *cli,
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                self.file,
            ],
            **quiet,
        )
        while not os.path.exists(self.file):
            time.sleep(0.1)
        self.workers = subprocess.Popen(
            [
                *cli,
                "distributed.cli.dask_worker",
                "--scheduler-file",
                self.file,
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            **quiet,
        )
        import psutil

        nanny = psutil.Process(self.workers.pid)
        deadline = time.time() + 60
        while len(nanny.children(recursive=True)) < 4 and time.time() < deadline:
            time.sleep(0.2)  # two nannies, each with its worker process
        time.sleep(3)  # workers register with the scheduler
        self.pids = [p.pid for p in nanny.children(recursive=True)]
        return self

    def __exit__(self, *exc) -> None:
        for proc in (self.workers, self.scheduler):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def spot_cases(target: Path) -> dict[str, list[str]]:
    strong = "selection.flags=strong"
    return {
        "dials-loop": [DIALS_PYTHON, "-c", DIALS_LOOP, str(target)],
        "ours-serial": ours("spot_size_histogram", target, strong),
        # the default plot too (the DIALS loop makes none)
        "ours-serial-plot": ours("spot_size_histogram", target, strong, plot=True),
        "ours-nproc2": ours("spot_size_histogram", target, strong, "mp.nproc=2"),
        "ours-dask-local": ours(
            "spot_size_histogram", target, strong, "mp.method=dask", "mp.nproc=2"
        ),
        # floors and start-up costs (``--cases`` names them; not run by default)
        "dials-import": [DIALS_PYTHON, "-c", DIALS_LOOP.split("target =")[0]],
        "ours-import": [PYTHON, "-c", "import dials_refl_stats.command_line.spot_size_histogram"],
        "floor-numpy": [PYTHON, "-c", "import numpy"],
        "floor-read": [PYTHON, "-c", FLOOR, str(target), "read"],
        "floor-decode": [PYTHON, "-c", FLOOR, str(target), "decode"],
    }


def run_cases(name: str, target: Path, cases: list[str], repeats: int) -> list:
    n_files, n_bytes = warm(target)
    rows = []
    commands = spot_cases(target)
    if "ours-dask-external" in cases:
        commands["ours-dask-external"] = None
    if target.name.startswith("ssx_integrated"):  # flat columns: intensities per still
        commands = {
            "rs-stills-joblib2": [str(RS_VENV / "bin" / "python"), "-c", RS_STILLS, str(target)]
            + ["2"],
            "ours-ipf-serial": ours("intensity_per_frame", target),
            "ours-ipf-nproc2": ours("intensity_per_frame", target, "mp.nproc=2"),
        }
    selected = {c: command for c, command in commands.items() if c in cases}
    # rounds: every case once per round, so that a slower or faster spell of the shared
    # machine falls on all of them (best of the rounds per case)
    runs: dict[str, list[dict]] = {c: [] for c in selected if c != "ours-dask-external"}
    for _round in range(repeats):
        for case in runs:
            runs[case].append(best_of(selected[case], 1, outputs=case.startswith("ours")))
    results = {case: min(found, key=lambda r: r["wall_s"]) for case, found in runs.items()}
    if "ours-dask-external" in selected:
        with ExternalDask() as cluster:
            command = ours(
                "spot_size_histogram",
                target,
                "selection.flags=strong",
                "mp.method=dask",
                f"mp.dask.scheduler_file={cluster.file}",
            )
            results["ours-dask-external"] = best_of(command, repeats, cluster.pids, outputs=True)
    for case in selected:
        result = results[case]
        result.update(set=name, case=case, files=n_files, bytes=n_bytes)
        if "json" in result:
            N_ROWS[name] = result["json"]["inputs"]["reflections"]["total_rows"]
        result["rows"] = N_ROWS.get(name)
        print(summary(result), flush=True)
        rows.append(result)
    return rows


#: Rows of each set, from our JSON (the DIALS loop comes first: set in a previous run).
N_ROWS: dict[str, int] = {"10000 files": 1518000, "100000 files": 15180000,
                          "joint 10^4 stills": 1518000}  # fmt: skip


def summary(r: dict) -> str:
    rate = f"{r['rows'] / r['wall_s']:,.0f}" if r.get("rows") else ""
    sizes = ", ".join(f"{k} {v / 1024:.0f} KB" for k, v in sorted(r["outputs"].items()))
    return (
        f"| {r['set']} | {r['case']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
        f"{r['files'] / r['wall_s']:,.0f} | {rate} | {r['driver_rss_mb']:.0f} | "
        f"{r['worker_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | {sizes} |"
    )


HEADER = (
    "| set | case | wall s | CPU s | files/s | rows/s | driver RSS MB | largest child MB "
    "| peak RSS MB (wait4) | outputs |\n|---|---|---|---|---|---|---|---|---|---|"
)


def same_results(rows: list[dict]) -> None:
    """Our engines' ``results`` and ``selection`` blocks must be identical."""
    by_set: dict[str, list] = {}
    for r in rows:
        if "json" in r:
            doc = r["json"]
            blob = json.dumps([doc["results"], doc["selection"]], sort_keys=True)
            by_set.setdefault(r["set"], []).append((r["case"], blob))
    for name, blobs in by_set.items():
        same = len({b for _c, b in blobs}) == 1
        print(f"{name}: results of {[c for c, _b in blobs]} identical: {same}")


def output_sizes(target: Path) -> None:
    """JSON and log sizes of every program that applies, default parameters."""
    for program in (
        "spot_size_histogram",
        "strong_reflection_positions",
        "per_image_statistics",
        "intensity_per_frame",
    ):
        try:
            r = best_of(ours(program, target, "mp.nproc=2"), 1)
        except RuntimeError as error:
            print(f"| {program} | failed: {str(error).splitlines()[-1][:120]} |")
            continue
        sizes = ", ".join(f"{k} {v / 1024:.0f} KB" for k, v in sorted(r["outputs"].items()))
        print(f"| {program} | {r['wall_s']:.1f} s | {r['driver_rss_mb']:.0f} MB | {sizes} |")


#: Programs whose serial and 2-process runs ``--scaling`` compares (no plot; refl_stats
#: with its HTML report), with what
#: strong-spot files need (intensity per frame: observed centroids, strong rows).
SCALING_PROGRAMS = {
    "spot_size_histogram": ["selection.flags=strong"],
    "intensity_per_frame": ["frame.source=xyzobs", "selection.flags=strong"],
    "strong_reflection_positions": [],
    "per_image_statistics": [],
    "refl_stats": [],
}


def scaling(
    target: Path, name: str, repeats: int, programs=None, experiments: Path | None = None
) -> list[dict]:
    """Every program, serial next to ``mp.nproc=2`` (rounds as in :func:`run_cases`):
    wall times, the speed-up and whether the two JSON documents' results are identical.
    With ``experiments``, every program is given them."""
    n_files, n_bytes = warm(target)
    if experiments is not None:
        name = f"{name} + .expt"
    rows = []
    print(
        "| set | program | serial s | nproc=2 s | speed-up | CPU s serial / nproc=2 | identical |"
    )
    print("|---|---|---|---|---|---|---|")
    for program, extra in SCALING_PROGRAMS.items():
        if programs and program not in programs:
            continue
        report = program == "refl_stats"  # its HTML report cannot be left out
        if experiments is not None:
            extra = [*extra, str(experiments)]
        commands = {
            "serial": ours(program, target, *extra, "mp.nproc=1", plot=report),
            "nproc2": ours(program, target, *extra, "mp.nproc=2", plot=report),
        }
        runs: dict[str, list[dict]] = {case: [] for case in commands}
        for _round in range(repeats):
            for case, command in commands.items():
                runs[case].append(best_of(command, 1, outputs=True))
        best = {case: min(found, key=lambda r: r["wall_s"]) for case, found in runs.items()}
        serial, parallel = best["serial"], best["nproc2"]
        same = all(
            json.dumps([r["json"][k] for k in ("results", "selection")], sort_keys=True)
            == json.dumps([serial["json"][k] for k in ("results", "selection")], sort_keys=True)
            for found in runs.values()
            for r in found
        )
        print(
            f"| {name} | {program} | {serial['wall_s']:.2f} | {parallel['wall_s']:.2f} | "
            f"{serial['wall_s'] / parallel['wall_s']:.2f}x | {serial['cpu_s']:.1f} / "
            f"{parallel['cpu_s']:.1f} | {same} |",
            flush=True,
        )
        for case, r in best.items():
            r.pop("json", None)
            r.update(set=name, case=f"{program}-{case}", files=n_files, bytes=n_bytes)
            rows.append(r)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, action="append", help="still files (10^4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=[
            "dials-loop",
            "ours-serial",
            "ours-serial-plot",
            "ours-nproc2",
            "ours-dask-local",
            "ours-dask-external",
        ],
    )
    parser.add_argument("--no-joint", action="store_true", help="skip the joint table")
    parser.add_argument("--integrated", action="store_true", help="200 x 50 integrated stills")
    parser.add_argument("--sizes", action="store_true", help="output sizes of the 4 programs")
    parser.add_argument(
        "--scaling", action="store_true", help="every program: serial vs mp.nproc=2"
    )
    parser.add_argument("--programs", nargs="+", help="with --scaling: only these programs")
    parser.add_argument(
        "--with-experiments",
        action="store_true",
        help="with --scaling: give the programs the stills' experiments (ssx_strong_<n>.expt)",
    )
    parser.add_argument(
        "--with-crystals",
        action="store_true",
        help="with --scaling: the stills' experiments with a crystal each "
        "(ssx_indexed_<n>.expt, as dials.ssx_index writes them)",
    )
    args = parser.parse_args()
    # the package byte-compiled, as an installed one is (``make setup`` does it too)
    compileall.compile_dir(str(REPO / "dials_refl_stats"), quiet=1)
    files = args.files or [10000]
    data = ensure_data(files)
    if args.sizes:
        for n in files:
            output_sizes(data[f"files_{n}"])
        return
    if args.scaling:
        rows = []
        for n in files:
            target = data[f"files_{n}"]
            expt = target.with_suffix(".expt") if args.with_experiments else None
            if args.with_crystals:
                expt = WORK / f"ssx_indexed_{n}.expt"
            name = f"{n} files" + (" (crystals)" if args.with_crystals else "")
            rows += scaling(target, name, args.repeats, args.programs, expt)
        (WORK / "bench_ssx_scaling.json").write_text(json.dumps(rows, indent=1))
        return
    print(HEADER)
    rows = []
    for n in files:
        rows += run_cases(f"{n} files", data[f"files_{n}"], args.cases, args.repeats)
    if not args.no_joint:
        joint = [c for c in args.cases if c in ("dials-loop", "ours-serial", "ours-nproc2")]
        rows += run_cases("joint 10^4 stills", data["joint"], joint, args.repeats)
    if args.integrated:
        flat = ["rs-stills-joblib2", "ours-ipf-serial", "ours-ipf-nproc2"]
        rows += run_cases("200 x 50 integrated", data["integrated"], flat, args.repeats)
    same_results(rows)
    out = WORK / "bench_ssx_results.json"
    for r in rows:
        r.pop("json", None)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
