"""Fuzz every program with experiment files whose models hold absurd but well-formed
values: what a hand-edited or corrupt ``.expt`` gives a program that computes with them.

``fuzz_programs.py`` mutates reflection files and ``fuzz_experiments.py`` checks that
mutated experiment files are *parsed* as DIALS parses them; here the parse succeeds and
the programs compute with the values: a wavelength of 1e-300 or 1e300, a zero or NaN
beam direction, parallel or zero detector axes, zero or negative pixel sizes and image
sizes, huge distances, scans of one image or of a negative oscillation, degenerate
crystal vectors. Each case runs one program on the shipped reflection file with the
mutated ``.expt``, in a forked child process with a time limit, and checks the contract
of ``fuzz_programs.py``: exit 0 with a valid JSON document, or one ``Sorry:`` line
naming an input file with nothing written; never a traceback, a hang or a dead process.

    .venv/bin/python benchmarks/fuzz_geometry.py --iterations 500 --seed 1
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"


def _engine():
    spec = importlib.util.spec_from_file_location("fuzz_programs", HERE / "fuzz_programs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


engine = _engine()

#: (experiments, reflections) every program runs cleanly on.
PAIRS = [
    ("sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"),
    ("sim_small/imported.expt", "sim_small/strong.refl"),
    ("ssx_CuNiR/indexed.expt", "ssx_CuNiR/indexed.refl"),
    ("quartz_processed/indexed.expt", "quartz_processed/indexed.refl"),
]
#: Model lists whose numbers are edited.
MODELS = ("beam", "detector", "scan", "crystal", "goniometer")
#: What a number becomes.
NUMBERS = [
    0.0,
    -1.0,
    1e-300,
    1e300,
    -1e300,
    math.nan,
    math.inf,
    5e-324,
    1e-6,
    1e6,
    3,
    -3,
    2**31 - 1,
]
#: What a 3-vector becomes.
VECTORS = [[0.0, 0.0, 0.0], [math.nan, 0.0, 1.0], [1e300, 1e300, 1e300], [0.0, 0.0, -1.0]]


def _leaves(value, path=()):
    """Paths of every number and every list of three numbers in ``value``."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path
    elif isinstance(value, list):
        if len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
            yield path
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "__id__":
                yield from _leaves(item, (*path, key))


def _set(document, path, value) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


def _get(document, path):
    for key in path:
        document = document[key]
    return document


def mutated(document: dict, rng: random.Random) -> tuple[dict, list[str]]:
    """A copy of ``document`` with one to three model numbers or vectors replaced."""
    document = copy.deepcopy(document)
    leaves = [
        (name, path)
        for name in MODELS
        for path in _leaves(document.get(name) or [], (name,))
        if len(path) > 1
    ]
    edits = []
    for _ in range(rng.randint(1, 3)):
        name, path = rng.choice(leaves)
        old = _get(document, path)
        if isinstance(old, list):
            new = rng.choice([*VECTORS, [rng.choice(NUMBERS) for _ in range(3)]])
        elif rng.random() < 0.3:
            new = old * rng.choice([-1, 0.5, 2, 1e-9, 1e9])
        else:
            new = rng.choice(NUMBERS)
            if isinstance(old, int) and not isinstance(new, int) and math.isfinite(new):
                new = int(max(min(new, 2**40), -(2**40)))
        _set(document, path, new)
        edits.append(f"{'.'.join(map(str, path))}={new!r}")
    return document, edits


def _run(connection, program: str, args: list[str], workdir: str, names: list[str]) -> None:
    module = engine.discover_programs()[program]
    outcome = engine.run_in_process(module, args, Path(workdir))
    problems = []
    for name in names:  # a Sorry naming either input is fine
        problems = engine.check_outcome(program, outcome, name)
        if not problems:
            break
    label = "traceback" if outcome.traceback else ("ok" if outcome.code == 0 else "sorry")
    connection.send((label, problems, outcome.stderr.strip()[:300]))


def run_case(program, quiet, expt_text: str, refl: Path, scratch: Path, timeout: float):
    inputs = Path(tempfile.mkdtemp(prefix="in_", dir=scratch))
    work = Path(tempfile.mkdtemp(prefix="work_", dir=scratch))
    expt = inputs / "mutated.expt"
    expt.write_text(expt_text)
    args = [str(expt), str(refl), *quiet]
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_run, args=(send, program, args, str(work), [expt.name, refl.name])
    )
    child.start()
    send.close()
    try:
        if receive.poll(timeout):
            try:
                result = receive.recv()
            except EOFError:
                child.join()
                result = ("crash", [f"the process died (exit code {child.exitcode})"], "")
        else:
            child.kill()
            result = ("hang", [f"no result after {timeout:g} s"], "")
    finally:
        child.join()
        shutil.rmtree(inputs)
        shutil.rmtree(work)
    return result


def setups() -> list[tuple]:
    """(program, quiet arguments, experiments document, reflection file), every pair of
    :data:`PAIRS` with every program."""
    programs = engine.discover_programs()
    return [
        (name, engine.quiet_arguments(module), json.loads((DATA / e).read_text()), DATA / r)
        for e, r in PAIRS
        for name, module in sorted(programs.items())
    ]


def fuzz(
    seed: int,
    first: int,
    stop: int,
    timeout: float = 60,
    keep: Path | None = None,
    plot_every: int = 10,
):
    """Cases ``first .. stop - 1`` (case ``i`` depends on ``(seed, i)`` only): the outcome
    counts by program, and the failures ``(case, program, data, edits, problems)``.
    Every ``plot_every``-th case writes the plot or HTML report too (0: none)."""
    cases = setups()
    stats: Counter = Counter()
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for it in range(first, stop):
            rng = random.Random(f"{seed}-{it}")
            program, quiet, document, refl = cases[it % len(cases)]
            if plot_every > 0 and it % plot_every == 0:
                quiet = ()
            edited, edits = mutated(document, rng)
            text = json.dumps(edited, indent=1)
            label, problems, _stderr = run_case(program, quiet, text, refl, Path(tmp), timeout)
            stats[(program, label)] += 1
            if problems:
                failures.append((it, program, refl.parent.name, edits, problems))
                if keep:
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / f"case_{seed}_{it}_{program}.expt").write_text(text)
    return stats, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--keep", type=Path, help="keep failing .expt files here")
    parser.add_argument("--plot-every", type=int, default=10, help="0: never plot")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    stats, failures = fuzz(args.seed, 0, args.iterations, args.timeout, args.keep, args.plot_every)
    took = time.perf_counter() - start
    print(f"{args.iterations} cases in {took:.0f} s (seed {args.seed})")
    for (program, label), n in sorted(stats.items()):
        print(f"  {program:30s} {label:10s} {n}")
    for it, program, data, edits, problems in failures[:40]:
        print(f"case {it}: {program} on {data} with {edits}: {'; '.join(problems)[:400]}")
    print(f"{len(failures)} cases violated the contract" if failures else "no violations")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
