"""Experiments read without DIALS's parser (``pipeline/experiment_models.py``) are dxtbx's.

Every shipped ``.expt`` file (and a 60-panel hierarchical detector written by dxtbx) is
read both ways: by :func:`read_experiments` and by dxtbx's
``ExperimentListFactory.from_json_file(check_format=False)``, as DIALS's parser reads
it. The beams, detectors and scans must be equal model for model (``==`` and
``to_dict``), shared between experiments the same way, with the same px/mm strategies
and frames. Command lines parse to the same phil, files and experiments either way;
whatever the light reader does not read the same way goes to DIALS's parser, which
gives its own result or error. The programs' JSON is the same byte for byte.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PACKAGE_DATA, TESTS_DATA, needs_dials

from dials_refl_stats.pipeline.experiment_models import (
    LightExperimentList,
    NotLight,
    read_experiment_files,
    read_experiments,
)

pytestmark = needs_dials

EXPERIMENT_FILES = sorted([*TESTS_DATA.glob("*/*.expt"), *PACKAGE_DATA.glob("*/*.expt")])


def dxtbx_experiments(path):
    from dxtbx.model.experiment_list import ExperimentListFactory

    return ExperimentListFactory.from_json_file(str(path), check_format=False)


def assert_same_models(light, reference) -> None:
    """Equal beams, detectors and scans, shared alike, with the same panel frames."""
    assert isinstance(light, LightExperimentList)
    assert len(light) == len(reference)
    assert light.identifiers() == list(reference.identifiers())
    for kind in ("beam", "detector", "scan"):
        ours = [getattr(e, kind) for e in light]
        theirs = [getattr(e, kind) for e in reference]
        for a, b in zip(ours, theirs):
            assert (a is None) == (b is None)
            if a is not None:
                assert a == b
                assert a.to_dict() == b.to_dict()
        # the same experiments share one model object
        assert [[x is y for y in ours] for x in ours] == [[x is y for y in theirs] for x in theirs]
    assert len(light.beams()) == len(reference.beams())
    assert len(light.detectors()) == len(reference.detectors())
    assert len(light.scans()) == len(reference.scans())
    for a, b in zip(light, reference):
        if a.detector is None:
            continue
        for p, q in zip(a.detector, b.detector):
            assert p.get_px_mm_strategy().name() == q.get_px_mm_strategy().name()
            assert tuple(p.get_d_matrix()) == tuple(q.get_d_matrix())
            assert tuple(p.get_pixel_size()) == tuple(q.get_pixel_size())
            assert p.pixel_to_millimeter((11.25, 7.5)) == q.pixel_to_millimeter((11.25, 7.5))


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_experiment_file_reads_as_dxtbx_reads_it(path):
    assert_same_models(read_experiments(str(path)), dxtbx_experiments(path))


def test_the_shipped_files_cover_parallax_stills_and_scans():
    """The comparison above sees parallax-corrected panels, stills and several sweeps."""
    strategies, stills, sweeps = set(), 0, 0
    for path in EXPERIMENT_FILES:
        for experiment in read_experiments(str(path)):
            strategies |= {p.get_px_mm_strategy().name() for p in experiment.detector}
            stills += experiment.scan is None
            sweeps += experiment.scan is not None
    assert {"SimplePxMmStrategy", "ParallaxCorrectedPxMmStrategy"} <= strategies
    assert stills >= 5 and sweeps >= 5


def test_a_hierarchical_multi_panel_detector_reads_as_dxtbx_reads_it(tmp_path):
    from test_strong_reflection_positions import split_into_pilatus_modules

    expt, _refl, _kept, n_panels = split_into_pilatus_modules(tmp_path)
    light = read_experiments(str(expt))
    assert len(light[0].detector) == n_panels == 60
    assert_same_models(light, dxtbx_experiments(expt))


# --- what the light reader leaves to dxtbx --------------------------------------------------


def written(tmp_path, obj, name="changed.expt") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def sim_twoexp() -> dict:
    return json.loads((TESTS_DATA / "sim_twoexp" / "integrated.expt").read_text())


def test_files_the_light_reader_leaves_to_dxtbx(tmp_path):
    reflections = TESTS_DATA / "sim_twoexp" / "integrated.refl"
    by_file = sim_twoexp()
    by_file["experiment"][0]["detector"] = "other.expt"  # a model given by file name
    named = sim_twoexp()
    named["detector"][0] = "other.expt"  # not a dictionary
    duplicated = sim_twoexp()
    duplicated["experiment"][1]["identifier"] = duplicated["experiment"][0]["identifier"]
    no_scan = sim_twoexp()
    del no_scan["experiment"][0]["scan"]  # a sequence without a scan: dxtbx looks for images
    out_of_range = sim_twoexp()
    out_of_range["experiment"][0]["crystal"] = 7
    broken_scan = sim_twoexp()
    broken_scan["scan"][0]["image_range"] = [30, 1]
    # newer dxtbx: its own class for a polychromatic beam (3.16+), dx/dy maps read even
    # without the images (3.22+): left to the installed dxtbx
    polychromatic = sim_twoexp()
    polychromatic["beam"][0]["__id__"] = "polychromatic"
    corrected = sim_twoexp()
    corrected["imageset"][0].update(dx="dx.pickle", dy="dy.pickle")
    # dxtbx 3.17+ writes a scan's epochs, exposure times and oscillation as a per-image
    # "properties" table, which its ScanFactory expands: left to the installed dxtbx
    properties = sim_twoexp()
    for scan in properties["scan"]:
        first, last = scan["image_range"]
        start, width = scan.pop("oscillation")
        scan["properties"] = {
            "epochs": scan.pop("epochs"),
            "exposure_time": scan.pop("exposure_time"),
            "oscillation": [start + width * i for i in range(last - first + 1)],
        }
    cases = {
        "scan properties": properties,
        "polychromatic": polychromatic,
        "dx dy maps": corrected,
        "not json": "not json {",
        "a datablock": [{"__id__": "DataBlock"}],
        "by file": by_file,
        "named": named,
        "duplicated": duplicated,
        "no scan": no_scan,
        "out of range": out_of_range,
        "broken scan": broken_scan,
    }
    for name, obj in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.expt"
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        with pytest.raises(NotLight):
            read_experiments(str(path))
    # and a reflection file is not an experiment list
    with pytest.raises(NotLight):
        read_experiments(str(reflections))


def test_a_detector_dxtbx_refuses_is_a_sorry_when_used(tmp_path):
    """Beams and detectors are made when a program uses them (spot sizes and intensities
    per frame never do): then a detector dxtbx refuses is a one-line Sorry."""
    from dials.util import Sorry

    broken = sim_twoexp()
    broken["detector"][1]["panels"][0]["fast_axis"] = "along x"
    experiments = read_experiments(written(tmp_path, broken))
    assert experiments[0].scan.get_image_range() == (1, 30)
    with pytest.raises(Sorry, match="changed.expt: dxtbx cannot make its detector models"):
        experiments[0].detector


def test_an_identifier_in_two_files_is_left_to_dxtbx(tmp_path):
    first = written(tmp_path, sim_twoexp(), "first.expt")
    second = written(tmp_path, sim_twoexp(), "second.expt")
    with pytest.raises(NotLight):
        read_experiment_files([first, second])
    assert len(read_experiment_files([first])) == 2


# --- command lines: the same invocation as through DIALS's parser ---------------------------


def parse(program: str, args, light: bool):
    import importlib

    from dials_refl_stats.pipeline.arguments import parse_command_line

    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    return parse_command_line(
        [str(a) for a in args], module.phil_scope, "usage", "", light_experiments=light
    )


def command_lines(tmp_path):
    sim, ssx = TESTS_DATA / "sim_twoexp", TESTS_DATA / "ssx_CuNiR"
    phil = tmp_path / "experiments.phil"
    phil.write_text(f"input.experiments = {sim / 'indexed.expt'}\nresolution.n_shells = 4\n")
    return [
        ("strong_reflection_positions", [sim / "integrated.expt", sim / "integrated.refl"]),
        ("strong_reflection_positions", [sim / "integrated.refl", sim / "integrated.expt", "-v"]),
        (
            "strong_reflection_positions",
            [f"input.experiments={sim / 'integrated.expt'}", sim / "integrated.refl"],
        ),
        (
            "strong_reflection_positions",  # the same file twice: used once
            [
                sim / "integrated.expt",
                f"input.experiments={sim / 'integrated.expt'}",
                sim / "integrated.refl",
                "n_shells=3",
            ],
        ),
        ("strong_reflection_positions", [phil, sim / "indexed.refl"]),
        ("intensity_per_frame", [sim / "integrated.expt", sim / "integrated.refl", "choice=prf"]),
        ("intensity_per_frame", [ssx / "integrated.expt", ssx / "integrated.refl"]),
        ("spot_size_histogram", [sim / "indexed.expt", sim / "indexed.refl", "n_slots=7"]),
    ]


def test_command_lines_parse_as_through_dials_parser(tmp_path, monkeypatch):
    from dials_refl_stats.pipeline.arguments import PhilOnlyParser

    monkeypatch.chdir(tmp_path)
    for program, args in command_lines(tmp_path):
        light = parse(program, args, light=True)
        reference = parse(program, args, light=False)
        assert isinstance(light.parser, PhilOnlyParser), args
        assert not isinstance(reference.parser, PhilOnlyParser)
        assert light.parser.phil.as_str() == reference.parser.phil.as_str(), args
        assert light.parser.diff_phil.as_str() == reference.parser.diff_phil.as_str(), args
        system = light.parser.system_phil
        assert system.format(python_object=light.params).as_str() == (
            reference.parser.system_phil.format(python_object=reference.params).as_str()
        )
        assert light.experiment_paths == reference.experiment_paths
        assert light.reflection_paths == reference.reflection_paths
        assert light.options.verbose == reference.options.verbose
        assert_same_models(light.experiments, reference.experiments)


def test_what_the_light_path_does_not_read_gets_dials_answer(tmp_path, monkeypatch):
    from dials.util import Sorry

    monkeypatch.chdir(tmp_path)
    sim = TESTS_DATA / "sim_twoexp"
    renamed = tmp_path / "renamed.refl"
    renamed.write_text((sim / "integrated.expt").read_text())
    copy_of = tmp_path / "copy.expt"
    copy_of.write_text((sim / "integrated.expt").read_text())
    cases = [
        [f"input.experiments={renamed}", sim / "integrated.refl"],  # DIALS reads it: refused
        ["input.experiments=missing.expt", sim / "integrated.refl"],
        [sim / "integrated.expt", copy_of, sim / "integrated.refl"],  # identifiers twice
        [sim / "integrated.expt", "-h"],
        [sim / "integrated.expt"],  # no reflections
    ]
    for args in cases:
        outcomes = []
        for light in (True, False):
            try:
                invocation = parse("strong_reflection_positions", args, light)
                outcomes.append(("ok", invocation and invocation.experiment_paths))
            except (Sorry, RuntimeError, SystemExit) as error:
                outcomes.append((type(error).__name__, str(error)))
        assert outcomes[0] == outcomes[1], args


# --- whole programs --------------------------------------------------------------------------

RUNS = [
    ("strong_reflection_positions", "sim_twoexp/integrated", ["output.positions=True"]),
    ("strong_reflection_positions", "ssx_CuNiR/integrated", ["output.positions=True"]),
    ("strong_reflection_positions", "quartz_processed/integrated", []),
    ("intensity_per_frame", "sim_twoexp/integrated", []),
    ("intensity_per_frame", "ssx_CuNiR/integrated", []),
    ("spot_size_histogram", "sim_twoexp/indexed", []),
    ("spot_size_histogram", "centroid_test_data/indexed", []),
]


#: Programs that use crystals: experiment files listing none (spot finding's) and
#: files of plain crystals (indexed stills: their unit-cell histograms) are light.
RUNS_WITHOUT_CRYSTALS = [
    ("per_image_statistics", "ssx_CuNiR/imported_no_ref_5", "ssx_CuNiR/strong_5", ["plot=None"]),
    ("per_image_statistics", "sim_small/imported", "sim_small/strong", ["plot=None", "-v"]),
    ("refl_stats", "ssx_CuNiR/imported_no_ref_5", "ssx_CuNiR/strong_5", ["output.html=None"]),
    ("refl_stats", "sim_small/imported", "sim_small/strong", ["output.html=None"]),
    ("per_image_statistics", "ssx_CuNiR/indexed", "ssx_CuNiR/indexed", ["plot=None"]),
    ("per_image_statistics", "ssx_CuNiR/integrated", "ssx_CuNiR/integrated", ["plot=None"]),
    ("refl_stats", "ssx_CuNiR/indexed", "ssx_CuNiR/indexed", ["output.html=None"]),
    ("per_image_statistics", "sim_twoexp/indexed", "sim_twoexp/indexed", ["plot=None"]),
]


@pytest.mark.parametrize("program,stem,extra", RUNS, ids=lambda v: str(v))
def test_programs_write_the_same_json_either_way(
    program, stem, extra, tmp_path, run_inprocess, monkeypatch
):
    extra = ["output.plot=None", *extra]
    same_json_either_way(program, stem, stem, extra, tmp_path, run_inprocess, monkeypatch)


@pytest.mark.parametrize("program,expt,refl,extra", RUNS_WITHOUT_CRYSTALS, ids=lambda v: str(v))
def test_programs_using_crystals_read_files_without_any_light(
    program, expt, refl, extra, tmp_path, run_inprocess, monkeypatch
):
    same_json_either_way(program, expt, refl, extra, tmp_path, run_inprocess, monkeypatch)


#: Shipped experiment files listing crystals, and whether their crystals are made here.
CRYSTAL_FILES = [
    ("ssx_CuNiR/indexed", True),  # stills, Sauter 2014 mosaicity, covariance of B
    ("ssx_CuNiR/integrated", True),  # stills, no covariance
    ("sim_twoexp/indexed", True),
    ("centroid_test_data/indexed", True),
    ("quartz_processed/indexed", True),
    ("sim_twoexp/integrated", True),  # scan-varying: settings and covariances of B
    ("quartz_processed/integrated", True),  # scan-varying
]


def crystal_facts(crystal) -> tuple:
    """What dxtbx derives from a crystal's setting and sets from its scan points and
    recalculated cell, to compare to the bit."""
    return (
        crystal.get_unit_cell().parameters(),
        tuple(crystal.get_A()),
        tuple(crystal.get_B()),
        tuple(crystal.get_U()),
        tuple(op.as_xyz() for op in crystal.get_space_group().all_ops()),
        crystal.num_scan_points,
        [tuple(crystal.get_A_at_scan_point(i)) for i in range(crystal.num_scan_points)],
        [
            crystal.get_unit_cell_at_scan_point(i).parameters()
            for i in range(crystal.num_scan_points)
        ],
        tuple(crystal.get_B_covariance_at_scan_points()),
        crystal.get_recalculated_unit_cell(),
        tuple(crystal.get_recalculated_cell_parameter_sd()),
        crystal.get_recalculated_cell_volume_sd(),
    )


@pytest.mark.parametrize("stem,light", CRYSTAL_FILES)
def test_crystals_made_here_equal_dials_crystals(stem, light):
    """A program that uses crystals reads these files without DIALS's parser when
    every crystal is plainly what dxtbx accepts; the crystals' unit cells, A, B and U
    matrices and space groups are then dxtbx's own, to the bit."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_refl_stats.pipeline.arguments import PhilOnlyParser

    expt = TESTS_DATA / f"{stem}.expt"
    refl = next(TESTS_DATA.glob(f"{stem.split('/')[0]}/*.refl"))
    invocation = parse_crystals("per_image_statistics", [str(expt), str(refl)], True)
    assert isinstance(invocation.parser, PhilOnlyParser) == light
    dials = ExperimentListFactory.from_json_file(str(expt), check_format=False)
    mine = [crystal_facts(e.crystal) for e in invocation.experiments]
    assert repr(mine) == repr([crystal_facts(e.crystal) for e in dials])
    # programs that use no crystal read them light and never make them
    invocation = parse_crystals("per_image_statistics", [str(expt), str(refl)], False)
    assert isinstance(invocation.parser, PhilOnlyParser)


def scan_varying_extras(crystal: dict, n_points: int, rng) -> dict:
    """What dials.refine (covariances at scan points) and dials.two_theta_refine
    (recalculated cell) add to a scan-varying crystal."""
    return {
        **crystal,
        "B_covariance_at_scan_points": rng.normal(0, 1e-6, 81 * n_points).tolist(),
        "recalculated_unit_cell": [57.8, 57.8, 150.1, 90.0, 90.0, 90.0],
        "recalculated_cell_parameter_sd": [0.01, 0.01, 0.03, 0.0, 0.0, 0.0],
        "recalculated_cell_volume_sd": 12.5,
    }


def test_scan_varying_crystals_with_covariances_and_recalculated_cells(tmp_path):
    """Every key ``Crystal.from_dict`` sets (settings and covariances of B at scan points,
    a recalculated cell and its standard deviations) set as dxtbx sets them; values
    dxtbx refuses (covariances of another length than 81 per scan point, a cell cctbx
    refuses) give DIALS's own Sorry either way."""
    import numpy as np
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_refl_stats.pipeline.arguments import PhilOnlyParser

    rng = np.random.default_rng(19)
    obj = json.loads((TESTS_DATA / "sim_twoexp" / "integrated.expt").read_text())
    crystal = obj["crystal"][0]
    n_points = len(crystal["A_at_scan_points"])
    refl = str(TESTS_DATA / "sim_twoexp" / "integrated.refl")
    cases = {
        "good": scan_varying_extras(crystal, n_points, rng),
        "short": {**scan_varying_extras(crystal, n_points, rng), "recalculated_unit_cell": None},
        "bad_covariance": {
            **crystal,
            "B_covariance_at_scan_points": [0.0] * (81 * n_points - 1),
        },
        "bad_cell": {**crystal, "recalculated_unit_cell": [1.0, 2.0, 3.0, 90.0, 90.0, 200.0]},
        "bad_points": {**crystal, "A_at_scan_points": [[1.0] * 8]},
    }
    for name, edited in cases.items():
        path = tmp_path / f"{name}.expt"
        path.write_text(json.dumps({**obj, "crystal": [edited, *obj["crystal"][1:]]}))
        args = [str(path), refl]
        if name in ("good", "short"):
            invocation = parse_crystals("per_image_statistics", args, True)
            assert isinstance(invocation.parser, PhilOnlyParser), name
            dials = ExperimentListFactory.from_json_file(str(path), check_format=False)
            mine = [crystal_facts(e.crystal) for e in invocation.experiments]
            assert repr(mine) == repr([crystal_facts(e.crystal) for e in dials]), name
            assert dials[0].crystal.get_recalculated_cell_volume_sd() == 12.5
            continue
        light, dials = parse_outcomes("per_image_statistics", args)
        assert light == dials != "ok", name


def test_a_crystal_per_still_keeps_the_stills_one_run(tmp_path):
    """2000 stills (ssx_CuNiR's beam and detector), each with its own crystal entry (as
    dials.ssx_index writes them): one run of experiments sharing models for every
    question about beams, detectors and scans; each experiment its own crystal, equal
    to dxtbx's."""
    from dxtbx.model.experiment_list import ExperimentListFactory

    from dials_refl_stats.pipeline.experiment_models import model_runs, read_experiments

    obj = json.loads((TESTS_DATA / "ssx_CuNiR" / "indexed.expt").read_text())
    entry, crystals = obj["experiment"][0], obj["crystal"]
    obj["crystal"] = [crystals[k % len(crystals)] for k in range(2000)]
    obj["experiment"] = [{**entry, "identifier": f"still-{k}", "crystal": k} for k in range(2000)]
    path = tmp_path / "stills.expt"
    path.write_text(json.dumps(obj))
    light = read_experiments(str(path))
    assert [n for _first, n in model_runs(light)] == [2000]
    assert light.crystals_made()
    mine = [crystal_facts(e.crystal) for e in light]
    dials = ExperimentListFactory.from_json_file(str(path), check_format=False)
    assert repr(mine) == repr([crystal_facts(e.crystal) for e in dials])
    assert len({id(e.crystal) for e in light}) == 2000


def test_a_crystal_dxtbx_refuses_anywhere_in_the_list_is_dials_sorry(tmp_path):
    """A crystal entry no experiment names, with a space group cctbx refuses: DIALS's
    parser refuses the file, so the program route does too (the file goes to it)."""

    obj = json.loads((TESTS_DATA / "ssx_CuNiR" / "indexed.expt").read_text())
    obj["crystal"].append({**obj["crystal"][0], "space_group_hall_symbol": "Q 9"})
    path = tmp_path / "bad_crystal.expt"
    path.write_text(json.dumps(obj))
    args = [str(path), str(TESTS_DATA / "ssx_CuNiR" / "indexed.refl")]
    light, dials = parse_outcomes("per_image_statistics", args)
    assert light == dials != "ok"
    assert light.endswith("bad_crystal.expt: not a readable DIALS experiment list")


def parse_outcomes(program: str, args) -> list[str]:
    """ "ok" or the Sorry's text, for the program's own route (experiments read light
    where it can) and for DIALS's parser."""
    from dials.util import Sorry

    outcomes = []
    for light in (True, False):
        try:
            if light:
                parse_crystals(program, args, crystals=True)
            else:
                parse(program, args, light=False)
            outcomes.append("ok")
        except Sorry as error:
            outcomes.append(str(error))
    return outcomes


def parse_crystals(program: str, args, crystals: bool):
    import importlib

    from dials_refl_stats.pipeline.arguments import parse_command_line

    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    return parse_command_line(
        args, module.phil_scope, "usage", "", light_experiments=True, crystals=crystals
    )


def same_json_either_way(program, expt, refl, extra, tmp_path, run_inprocess, monkeypatch):
    """The program's document and JSON with the experiments read light and by DIALS."""
    import importlib

    from dials_refl_stats.pipeline.program import Program

    expt, refl = TESTS_DATA / f"{expt}.expt", TESTS_DATA / f"{refl}.refl"
    args = [expt, refl, *extra]
    (tmp_path / "light").mkdir()
    (tmp_path / "dials").mkdir()
    light = run_inprocess(program, *args, cwd=tmp_path / "light")
    module = importlib.import_module(f"dials_refl_stats.command_line.{program}")
    classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Program)]
    for cls in classes:
        monkeypatch.setattr(cls, "light_experiments", False)
    reference = run_inprocess(program, *args, cwd=tmp_path / "dials")
    assert light.exit_code == reference.exit_code == 0, light.stderr
    assert light.document == reference.document
    name = f"{program}.json"
    assert (tmp_path / "light" / name).read_bytes() == (tmp_path / "dials" / name).read_bytes()


#: DIALS's flex and what it imports (pandas): the per-image analysis needs them only for
#: images outside its numpy port's domain (none here).
FLEX = ("dials.array_family.flex", "pandas")


@pytest.mark.parametrize(
    "program,stem,absent",
    [
        ("strong_reflection_positions", "integrated", ()),
        ("intensity_per_frame", "integrated", ("dxtbx_model_ext",)),
        ("spot_size_histogram", "indexed", ("dxtbx_model_ext",)),
        # scan-varying crystals, made light; DIALS's per-image analysis without its flex
        ("per_image_statistics", "integrated", FLEX),
        ("refl_stats", "integrated", FLEX),
        ("per_image_statistics", "indexed", FLEX),
    ],
)
def test_programs_with_experiments_import_neither_dxtbx_model_nor_dials_parser(
    program, stem, absent, tmp_path
):
    """Nor dxtbx's C++ models, for the programs that need only scans."""
    sim = TESTS_DATA / "sim_twoexp"
    modules = ("dxtbx.model", "dials.util.options", "sklearn", *absent)
    quiet = "output.html=None" if program == "refl_stats" else "output.plot=None"
    script = (
        "import sys\n"
        f"from dials_refl_stats.command_line import {program} as m\n"
        f"m.run([{str(sim / f'{stem}.expt')!r}, {str(sim / f'{stem}.refl')!r}, "
        f"{quiet!r}])\n"
        f"print(sorted(n for n in {modules!r} if n in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    document = json.loads(Path(tmp_path / f"{program}.json").read_text())
    assert document["inputs"]["experiments"]["n_experiments"] == 2


# --- scans without dxtbx's models ------------------------------------------------------------


def dxtbx_scan(d):
    from dxtbx.model.scan import ScanFactory

    return ScanFactory.from_dict(copy.deepcopy(d))


def assert_same_scan(light, scan) -> None:
    assert light.get_image_range() == tuple(scan.get_image_range())
    assert light.get_num_images() == scan.get_num_images() == len(light)
    for deg in (True, False):
        assert light.get_oscillation(deg=deg) == tuple(scan.get_oscillation(deg=deg))
    assert light == scan and light.dxtbx() == scan


def scan_variants() -> list[dict]:
    base = sim_twoexp()["scan"][0]
    variants = []
    for change in (
        {},
        {"exposure_time": 0.1},
        {"exposure_time": [0.1]},
        {"epochs": []},
        {"epochs": [5.0]},
        {"epochs": [5.0, 6.5]},
        {"image_range": [0, 9], "exposure_time": [], "epochs": []},
        {"image_range": [-3, -3], "exposure_time": [], "epochs": []},
        {"oscillation": [0.0, 0.0]},
        {"oscillation": [-180.0, 0.1]},
        {"oscillation": [1e-300, 123.456789]},
        {"oscillation": [3, 1]},
        {"valid_image_ranges": {"abc": [[1, 10], [12, 30]]}},
        {"batch_offset": 100},
    ):
        variant = {**copy.deepcopy(base), **change}
        if "epochs" in change and not change["epochs"]:
            del variant["epochs"]
        variants.append(variant)
    return variants


def test_scan_facts_are_dxtbx_scans():
    from dials_refl_stats.pipeline.light_scan import scan_facts

    dictionaries = [d for p in EXPERIMENT_FILES for d in json.loads(p.read_text()).get("scan", [])]
    assert len(dictionaries) >= 5
    for d in dictionaries + scan_variants():
        reference = dxtbx_scan(d)
        light = scan_facts(d, lambda d=d: dxtbx_scan(d))
        assert light is not None, d
        assert_same_scan(light, reference)
        assert light.get_exposure_times() == reference.get_exposure_times()  # dxtbx's


def test_scans_dxtbx_might_refuse_are_dxtbx_s(tmp_path):
    from dials_refl_stats.pipeline.light_scan import LightScan, scan_facts

    base = sim_twoexp()["scan"][0]
    refused = [
        {"image_range": [30, 1]},  # DXTBX_ASSERT(ir[1] >= ir[0])
        {"image_range": [1, 3]},  # more exposure times than images
        {"oscillation": [0.0, -0.5]},  # negative width
        {"oscillation": [0.0, float("nan")]},
        {"image_range": [True, 30]},
        {"oscillation": ["0", "0.5"]},
        {"batch_offset": 2**40},
        {"valid_image_ranges": {"abc": [[1, 2, 3]]}},
        {"epochs": [10**10] * 30},  # fine for dxtbx, not checked here
    ]
    for change in refused:
        d = {**copy.deepcopy(base), **change}
        assert scan_facts(d, lambda: None) is None, change
    missing = copy.deepcopy(base)
    del missing["exposure_time"]
    assert scan_facts(missing, lambda: None) is None
    # a file with a scan not checked here has dxtbx's own scans ...
    obj = sim_twoexp()
    obj["scan"][1]["epochs"] = [10**10] * 30
    experiments = read_experiments(written(tmp_path, obj))
    assert not any(isinstance(e.scan, LightScan) for e in experiments)
    assert_same_models(experiments, dxtbx_experiments(tmp_path / "changed.expt"))
    # ... and one dxtbx refuses is left to dxtbx
    obj["scan"][1]["image_range"] = [30, 1]
    with pytest.raises(NotLight):
        read_experiments(written(tmp_path, obj))


@pytest.mark.parametrize(
    "edit",
    [
        ("identifier", 0, 5),  # not a string
        ("identifier", 2, None),
        ("detector", 0, None),  # the sequence's first experiment: dxtbx cannot make it
        ("beam", 0, None),
        ("goniometer", 0, None),
        ("detector", 3, None),  # a later experiment of the sequence: dxtbx reads it
    ],
    ids=str,
)
def test_edited_experiments_get_dials_answer_either_way(tmp_path, monkeypatch, edit):
    """Files DIALS's parser refuses are refused, and those it reads are read, whichever
    route the programs take (the light one for spot finding's experiments)."""
    from dials.util import Sorry

    monkeypatch.chdir(tmp_path)
    ssx = TESTS_DATA / "ssx_CuNiR"
    key, index, value = edit
    obj = json.loads((ssx / "imported_no_ref_5.expt").read_text())
    obj["experiment"][index][key] = value
    path = tmp_path / "edited.expt"
    path.write_text(json.dumps(obj))
    args = [str(path), str(ssx / "strong_5.refl")]
    outcomes = []
    for light in (True, False):
        try:
            invocation = (
                parse_crystals("per_image_statistics", args, crystals=True)
                if light
                else parse("per_image_statistics", args, light=False)
            )
            outcomes.append(("ok", list(invocation.experiments.identifiers())))
        except Sorry as error:
            outcomes.append(("Sorry", str(error)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == ("ok" if edit == ("detector", 3, None) else "Sorry")


def test_dxtbx_model_module_inside_the_package_as_newer_dxtbx_builds_have_it(monkeypatch, tmp_path):
    """Newer dxtbx builds put ``dxtbx_model_ext`` inside the package: with the top-level
    module missing and the real one as ``dxtbx.dxtbx_model_ext``, experiment files are
    still read without DIALS's parser, crystals included; with neither, ``NotLight``."""
    import importlib

    from dials_refl_stats.pipeline import experiment_models
    from dials_refl_stats.pipeline.arguments import PhilOnlyParser

    real = importlib.import_module("dxtbx_model_ext")
    monkeypatch.setitem(sys.modules, "dxtbx_model_ext", None)  # import raises
    monkeypatch.setitem(sys.modules, "dxtbx.dxtbx_model_ext", real)
    assert experiment_models.model_classes() is real
    ssx = TESTS_DATA / "ssx_CuNiR"
    args = [str(ssx / "indexed.expt"), str(ssx / "indexed.refl")]
    invocation = parse_crystals("per_image_statistics", args, True)
    assert isinstance(invocation.parser, PhilOnlyParser)
    assert all(e.crystal is not None for e in invocation.experiments)
    monkeypatch.setitem(sys.modules, "dxtbx.dxtbx_model_ext", None)
    with pytest.raises(NotLight, match="not importable"):  # then DIALS's parser reads
        experiment_models.model_classes()
