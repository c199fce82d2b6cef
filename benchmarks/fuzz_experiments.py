"""Mutated experiment files: the light reader's route against DIALS's parser.

Each case edits a copy of an ``.expt`` file (a model reference, an identifier or a model
list set to another value, or a few bytes changed) and parses a program's command line
with it twice: as the program does (``Program.light_experiments``, ``uses_crystals``) and
through DIALS's parser. The outcomes must agree: the same experiments (identifiers,
beam and detector dictionaries, each crystal's unit cell and A matrix to the bit, for
programs that use crystals), or a ``Sorry`` both ways. A
difference is printed and makes the exit code 1.

    .venv/bin/python benchmarks/fuzz_experiments.py --iterations 1000 --seed 1
    .venv/bin/python benchmarks/fuzz_experiments.py --program strong_reflection_positions \\
        --experiments tests/data/sim_twoexp/integrated.expt \\
        --reflections tests/data/sim_twoexp/integrated.refl

Known and documented (``pipeline/experiment_models.py``): for a program that uses no
crystals, a crystal, goniometer or profile dictionary dxtbx would refuse does not stop
it (the light reader does not make those models); such cases are counted apart. Files
with crystals (``--experiments tests/data/ssx_CuNiR/indexed.expt``) also get their
crystal dictionaries edited (scan-varying ones: ``tests/data/sim_twoexp/integrated.expt``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from dials_refl_stats.pipeline import experiment_models

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "ssx_CuNiR"
VALUES = [0, 1, -1, 5, None, "x", True, 0.0, [0]]
KEYS = ["beam", "detector", "imageset", "crystal", "identifier", "scan", "goniometer"]
UNUSED_MODELS = ("crystal", "goniometer", "profile")


#: Values a crystal dictionary's entries are set to (vectors, symbols, numbers, junk).
CRYSTAL_VALUES = [
    [1.0, 2.0, 3.0],
    [0, 0, 0],
    [1, 2],
    [1, 2, 3, 4],
    [float("nan"), 1.0, 2.0],
    [True, 1.0, 2.0],
    [10**400, 1, 1],
    " P 1",
    " C 2y",
    "Q 9",
    [0.0] * 81,
    [0.0] * 80,
    ["x"] * 81,
    [[1.0] * 9],
    # scan points' settings and covariances, recalculated cells and their deviations
    [[10.0, 0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 10.0]] * 3,
    [[1.0] * 9, [1.0] * 8],
    [0.0] * 162,
    [1e-6] * 243,
    [57.8, 57.8, 150.1, 90.0, 90.0, 90.0],
    [1.0, 2.0, 3.0, 90.0, 90.0, 200.0],
    [0.01] * 6,
    12.5,
    *VALUES,
]
#: Keys set or dropped: those the light reader reads, and some it leaves to DIALS.
CRYSTAL_KEYS = [
    *sorted(experiment_models.CRYSTAL_KEYS),
    "foo",
]


def mutated_crystals(obj: dict, rng: random.Random) -> None:
    """Set, drop or add keys of one to three crystal dictionaries."""
    crystals = [c for c in obj.get("crystal") or [] if isinstance(c, dict)]
    for _ in range(rng.randint(1, 3) if crystals else 0):
        crystal = rng.choice(crystals)
        key = rng.choice(CRYSTAL_KEYS)
        if rng.random() < 0.25:
            crystal.pop(key, None)
        else:
            crystal[key] = rng.choice(CRYSTAL_VALUES)


def mutated(text: str, rng: random.Random) -> tuple[str, set[str]]:
    """An edited copy of the file's text and the model lists it changed."""
    obj = json.loads(text)
    if obj.get("crystal") and rng.random() < 0.3:
        mutated_crystals(obj, rng)
        return json.dumps(obj), {"crystal"}
    if rng.random() < 0.4:
        for _ in range(rng.randint(1, 3)):
            entry = rng.choice(obj["experiment"])
            entry[rng.choice(KEYS)] = rng.choice(VALUES)
        changed = set()
        if rng.random() < 0.3:
            obj["crystal"] = rng.choice([[], [None], [{}], "x"])
            changed.add("crystal")
        return json.dumps(obj), changed
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 5)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    edited = data.decode("latin-1")
    try:
        changed = {k for k, v in json.loads(edited).items() if v != obj.get(k)}
    except ValueError:
        changed = set()
    return edited, changed


def outcome(program: str, path: str, reflections: str, light: bool) -> tuple:
    from dials_refl_stats.pipeline.arguments import parse_command_line
    from dials_refl_stats.pipeline.program import Program

    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    owner = next(
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, Program) and c.__module__ == module.__name__
    )
    crystals = owner.uses_crystals
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            invocation = parse_command_line(
                [path, reflections],
                module.phil_scope,
                "usage",
                "",
                light_experiments=light and owner.light_experiments,
                crystals=crystals,
            )
            described = [
                (
                    e.identifier,
                    e.beam and e.beam.to_dict(),
                    e.detector and e.detector.to_dict(),
                    crystals and _crystal_facts(e.crystal),
                )
                for e in invocation.experiments
            ]
        return ("ok", described)
    except BaseException as error:  # noqa: BLE001 - every outcome is compared
        return (type(error).__name__, str(error).replace(path, "FILE"))


def _crystal_facts(crystal) -> str | None:
    """A crystal's unit cell and setting matrices, its scan points and recalculated cell,
    to the bit (``None``: no crystal)."""
    if crystal is None:
        return None
    points = range(crystal.num_scan_points)
    return repr(
        (
            crystal.get_unit_cell().parameters(),
            tuple(crystal.get_A()),
            [tuple(crystal.get_A_at_scan_point(i)) for i in points],
            tuple(crystal.get_B_covariance_at_scan_points()),
            crystal.get_recalculated_unit_cell(),
            tuple(crystal.get_recalculated_cell_parameter_sd()),
            crystal.get_recalculated_cell_volume_sd(),
        )
    )


def _unused(program: str) -> tuple[str, ...]:
    """The models ``program`` does not make (crystals are made by those using them)."""
    from dials_refl_stats.pipeline.program import Program

    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    uses = any(
        c.uses_crystals
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, Program) and c.__module__ == module.__name__
    )
    return tuple(m for m in UNUSED_MODELS if not (uses and m == "crystal"))


def _unused_models_only(edited: str, text: str, path: str, args, ours: tuple) -> bool:
    """Whether DIALS's parser reads what we read once the models the program does not use
    are restored (then only those made it refuse the file)."""
    obj, original = json.loads(edited), json.loads(text)
    for name in _unused(args.program):
        obj[name] = original.get(name, [])
    Path(path).write_text(json.dumps(obj))
    return outcome(args.program, path, args.reflections, light=False) == ours


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--program", default="per_image_statistics")
    parser.add_argument("--experiments", default=str(DATA / "imported_no_ref_5.expt"))
    parser.add_argument("--reflections", default=str(DATA / "strong_5.refl"))
    args = parser.parse_args()
    text = Path(args.experiments).read_text()
    rng = random.Random(args.seed)
    counts: Counter = Counter()
    differences = 0
    with tempfile.TemporaryDirectory() as scratch:
        for case in range(args.iterations):
            edited, changed = mutated(text, rng)
            path = str(Path(scratch) / f"case_{case}.expt")
            Path(path).write_text(edited, encoding="latin-1")
            ours = outcome(args.program, path, args.reflections, light=True)
            dials = outcome(args.program, path, args.reflections, light=False)
            if ours == dials or (ours[0] == dials[0] == "Sorry"):
                counts[f"same ({dials[0]})"] += 1
            elif (
                ours[0] == "ok"
                and changed & set(_unused(args.program))
                and _unused_models_only(edited, text, path, args, ours)
            ):
                counts["unused model dxtbx refuses (documented)"] += 1
            else:
                differences += 1
                print(f"case {case}: ours {ours[0]}: {str(ours[1])[:200]}")
                print(f"          DIALS {dials[0]}: {str(dials[1])[:200]}")
    print(f"{args.iterations} cases (seed {args.seed}, {args.program}): {dict(counts)}")
    print(f"differences: {differences}")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
