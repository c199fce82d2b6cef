"""The driver's per-experiment work on 10^5 stills, by runs and columns, is the loop's.

``read_experiments`` decodes the entries column by column (``_by_columns``), the model
index and the stills' ``ExperimentInfo`` look once per run of experiments with the same
models (``model_runs``), and ``dials.strong_reflection_positions``' finalize makes its
groups and compact beam centres in one pass. Each must give what the loops they replace
give (kept here as references, verbatim): the same objects and values in the same
order, and the same exception for the same first bad experiment. The experiment lists
are written by dxtbx itself from the shipped files (shared and copied models, several
of each, experiments without a beam or detector, ``null`` model entries, 2000+
experiments, two files read into one list).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import data_path, needs_dials, split_stills

from dials_refl_stats import geometry
from dials_refl_stats.analysis.statistic import ID_BITS, ExperimentInfo
from dials_refl_stats.command_line import strong_reflection_positions as positions_program
from dials_refl_stats.experiment_groups import ExperimentGroup
from dials_refl_stats.output import to_plain
from dials_refl_stats.pipeline import experiment_models, inputs
from dials_refl_stats.pipeline import program as program_module
from dials_refl_stats.pipeline.experiment_models import (
    LightExperimentList,
    NotLight,
    model_runs,
    read_experiment_files,
    read_experiments,
)
from dials_refl_stats.pipeline.inputs import experiment_infos
from dials_refl_stats.results import strong_positions

pytestmark = needs_dials

N_EXTRA = 2100  # experiments added to the 5 stills of ssx_CuNiR


# --- the loops the fast paths replace (verbatim) ---------------------------------------------


def reference_model_index(experiments) -> geometry.ModelIndex:
    found: tuple[dict, dict] = ({}, {})  # id of a model -> (position, model)
    positions = np.full((2, len(experiments)), -1, dtype=np.int64)
    for n, experiment in enumerate(experiments):
        for kind, model in enumerate((experiment.detector, experiment.beam)):
            if model is not None:
                known = found[kind]
                positions[kind, n] = known.setdefault(id(model), (len(known), model))[0]
    detectors, beams = ([model for _n, model in known.values()] for known in found)
    return geometry.ModelIndex(detectors, beams, positions[0], positions[1])


def reference_infos(experiments) -> list[ExperimentInfo]:
    infos = []
    sweeps: dict[int, int] = {}
    for index, experiment in enumerate(experiments or []):
        scan = experiment.scan
        image_range = sweep = None
        if scan is not None and scan.get_num_images() >= 1 and not _is_still(experiment):
            first, last = scan.get_image_range()
            image_range = (int(first), int(last))
            sweep = sweeps.setdefault(id(scan), len(sweeps))
        infos.append(ExperimentInfo(index, experiment.identifier or None, image_range, sweep))
    return infos


def _is_still(experiment) -> bool:
    scan = experiment.scan
    return scan is None or (scan.get_oscillation()[1] == 0 and scan.get_num_images() == 1)


def reference_distinct_beam_centres(centres: list[dict]) -> list[dict]:
    distinct: dict[str, tuple[dict, list[int]]] = {}
    keys: dict[tuple, str] = {}
    fields = ("panel", "px", "mm", "lab")
    for centre in centres:
        values = tuple(centre[k] for k in fields)
        key = keys.get(values)
        if key is None:
            plain = to_plain(dict(zip(fields, values)))
            key = keys[values] = json.dumps(plain, sort_keys=True)
            distinct.setdefault(key, (plain, []))
        distinct[key][1].append(centre["experiment"])
    return [
        {"experiments": strong_positions.encode_runs(experiments), **plain}
        for plain, experiments in distinct.values()
    ]


def reference_merged_groups(keys, run):
    groups = [
        ExperimentGroup(f, i, run.files[f].info.identifiers.get(i))
        for f, i in zip((keys >> ID_BITS).tolist(), ((keys & ((1 << ID_BITS) - 1)) - 1).tolist())
    ]
    experiment_index = [run.files[g.file_index].info.experiment_of_id.get(g.id) for g in groups]
    return groups, experiment_index


def refuse(*args, **kwargs):
    raise RuntimeError("this path is switched off here")


# --- experiment lists written by dxtbx ---------------------------------------------------------


def load(path):
    from dxtbx.model.experiment_list import ExperimentListFactory

    return ExperimentListFactory.from_json_file(str(path), check_format=False)


def stills():
    """ssx_CuNiR's 5 indexed stills: one beam, one detector, an imageset each."""
    return load(data_path("ssx_CuNiR/indexed.expt"))


def extended(models_of, n: int = N_EXTRA):
    """The 5 stills, then ``n`` more (identifiers ``extra-k``) with the beam and detector
    ``models_of(k)`` gives and the imageset of still ``k % 5``."""
    from dxtbx.model import Experiment

    experiments = stills()
    # models taken first: an experiment of the list is a reference into its C++ vector,
    # which an append may move
    beam, detector = experiments[0].beam, experiments[0].detector
    imagesets = [e.imageset for e in experiments]
    more = []
    for k in range(n):
        b, d = models_of(k, beam, detector)
        more.append(
            Experiment(beam=b, detector=d, imageset=imagesets[k % 5], identifier=f"extra-{k}")
        )
    for experiment in more:
        experiments.append(experiment)
    return experiments


def shared(k, beam, detector):
    return beam, detector


def copies_of(beams: int, detectors: int):
    """Models of extra experiment ``k``: runs of the stills' own and of copies of them
    (equal values, other objects), in an order that comes back to earlier ones."""
    made: dict = {}

    def models_of(k, beam, detector):
        if not made:
            made["beam"] = [beam] + [copy.deepcopy(beam) for _ in range(beams)]
            made["detector"] = [detector] + [copy.deepcopy(detector) for _ in range(detectors)]
        b, d = made["beam"], made["detector"]
        return b[(k // 7) % len(b)], d[(k // 3 + k % 2) % len(d)]

    return models_of


def some_missing(k, beam, detector):
    """No beam, no detector, neither, or both, by turns (runs of 1 to 3)."""
    return (None if k % 9 in (1, 2, 5) else beam), (None if k % 9 in (3, 5, 6, 7) else detector)


def several():
    """Stills, rotation sweeps (scans), a parallax-corrected Pilatus: several beams and
    detectors (identifiers unique)."""
    experiments = stills()
    for relative in (
        "sim_twoexp/integrated.expt",
        "centroid_test_data/indexed.expt",
        "quartz_processed/integrated.expt",
        "ssx_CuNiR/integrated.expt",
    ):
        more = load(data_path(relative))
        if relative.startswith("ssx"):
            for e in more:
                e.identifier = f"integrated-{e.identifier}"
        experiments.extend(more)
    return experiments


def write(experiments, path: Path, edit=None) -> Path:
    """``experiments.as_file(path)``, then ``edit(obj)`` of its JSON if given."""
    experiments.as_file(str(path))
    if edit is not None:
        obj = json.loads(path.read_text())
        edit(obj)
        path.write_text(json.dumps(obj))
    return path


def null_entries(obj) -> None:
    """A ``null`` beam and detector entry, named by every 11th and 13th experiment."""
    obj["beam"].append(None)
    obj["detector"].append(None)
    for k, entry in enumerate(obj["experiment"]):
        if k % 11 == 4:
            entry["beam"] = len(obj["beam"]) - 1
        if k % 13 == 6:
            entry["detector"] = len(obj["detector"]) - 1


LISTS = {
    "one beam and detector": lambda: extended(shared),
    "copied beams and detectors": lambda: extended(copies_of(2, 3)),
    "no beam or detector": lambda: extended(some_missing),
    "several models and scans": several,
}


@pytest.fixture(params=[*LISTS, "null entries", "two files"])
def written(request, tmp_path):
    """``(light experiments, dxtbx experiments, paths)`` of each list."""
    name = request.param
    if name == "null entries":
        paths = [write(extended(copies_of(1, 1)), tmp_path / "nulls.expt", null_entries)]
    elif name == "two files":
        experiments = extended(copies_of(1, 2))
        first, second = experiments[:1000], experiments[1000:]
        paths = [write(first, tmp_path / "a.expt"), write(second, tmp_path / "b.expt")]
    else:
        paths = [write(LISTS[name](), tmp_path / "list.expt")]
    light = read_experiment_files([str(p) for p in paths])
    reference = load(paths[0])
    for path in paths[1:]:
        reference.extend(load(path))
    return light, reference, paths


def assert_same_index(index, expected) -> None:
    assert [id(d) for d in index.detectors] == [id(d) for d in expected.detectors]
    assert [id(b) for b in index.beams] == [id(b) for b in expected.beams]
    pairs = ((index.detector_of, expected.detector_of), (index.beam_of, expected.beam_of))
    for ours, theirs in pairs:
        assert ours.dtype == theirs.dtype == np.int64
        assert ours.shape == theirs.shape
        assert np.array_equal(ours, theirs)


# --- reading -------------------------------------------------------------------------------


def decoded_by_entries(path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(experiment_models, "_by_columns", refuse)
        return read_experiments(str(path))


def test_columns_decode_as_the_entries_loop(written, monkeypatch):
    light, _reference, paths = written
    for path in paths:
        with monkeypatch.context() as patch:  # the columns give it: the loop is not asked
            patch.setattr(experiment_models, "_by_entries", refuse)
            ours = read_experiments(str(path))
        theirs = decoded_by_entries(path, monkeypatch)
        assert type(ours) is LightExperimentList
        assert ours.identifiers() == theirs.identifiers()
        assert [e._refs for e in ours] == [e._refs for e in theirs]
        assert [list(e._refs) for e in ours] == [list(e._refs) for e in theirs]
        assert [e._crystal for e in ours] == [e._crystal for e in theirs]
        assert [e.scan is None for e in ours] == [e.scan is None for e in theirs]
        assert [e.scan.get_image_range() for e in ours if e.scan] == [
            e.scan.get_image_range() for e in theirs if e.scan
        ]
        assert ours[0]._models.lists == theirs[0]._models.lists
        # one dictionary of references per distinct combination (shared)
        distinct = {tuple(e._refs.items()) for e in ours}
        assert len({id(e._refs) for e in ours}) == len(distinct)
    assert model_runs(light) is not None


def entries_edited(tmp_path, edit, name="edited.expt") -> Path:
    def change(obj):
        edit(obj["experiment"])

    return write(extended(copies_of(1, 1), n=40), tmp_path / name, change)


def setting(index: int, key: str, value):
    def edit(entries):
        entries[index][key] = value

    return edit


def replacing(index: int, value):
    def edit(entries):
        entries[index] = value

    return edit


def both(*edits):
    def edit(entries):
        for e in edits:
            e(entries)

    return edit


ENTRY_EDITS = {
    "a bool": setting(7, "beam", True),
    "a float": setting(7, "detector", 0.0),
    "a string": setting(7, "beam", "0"),
    "a list": setting(7, "detector", [0]),
    "a dictionary": setting(7, "imageset", {"x": 1}),
    "out of range": setting(7, "beam", 99),
    "negative, in range": setting(7, "beam", -1),
    "negative, out of range": setting(7, "detector", -9),
    "an unknown kind": setting(7, "goniometer", 0),
    "not a dictionary": replacing(7, "experiment"),
    "a list entry": replacing(7, ["beam"]),
    "a number entry": replacing(7, 3),
    "an entry without models": replacing(7, {"identifier": "bare"}),
    "the later of two problems": both(setting(20, "beam", 99), setting(9, "beam", False)),
    "a bool after a float": both(setting(3, "detector", 1.5), setting(12, "beam", True)),
    "no identifier": lambda entries: entries[7].pop("identifier"),
    "a null identifier": setting(7, "identifier", None),
    "an identifier twice": setting(7, "identifier", "extra-3"),
    "an unhashable identifier": setting(7, "identifier", ["x"]),
    "an imageset out of range": setting(30, "imageset", 5),
    "no imageset": lambda entries: [e.pop("imageset") for e in entries[10:20]],
}


@pytest.mark.parametrize("name", list(ENTRY_EDITS))
def test_entries_the_columns_cannot_take_get_the_loops_answer(name, tmp_path, monkeypatch):
    path = entries_edited(tmp_path, ENTRY_EDITS[name])
    outcomes = both_readers(
        path, monkeypatch, lambda es: [(e.identifier, e._refs, e._crystal) for e in es]
    )
    assert outcomes[0] == outcomes[1]


def both_readers(path, monkeypatch, describe) -> list[tuple]:
    """``describe`` of the file's experiments (or the ``NotLight`` message), read column
    by column and entry by entry."""
    outcomes = []
    for columns in (True, False):
        with monkeypatch.context() as patch:
            if not columns:
                patch.setattr(experiment_models, "_by_columns", refuse)
            try:
                outcomes.append(("ok", describe(read_experiments(str(path)))))
            except NotLight as error:
                outcomes.append(("NotLight", str(error)))
    return outcomes


def test_scans_of_an_imageset_merge_as_in_the_loop(tmp_path, monkeypatch):
    """Rotation sweeps: each entry names its imageset and scan (merged, checked)."""
    sim = json.loads(data_path("sim_twoexp/integrated.expt").read_text())
    cases = {"as written": sim}
    one_imageset = copy.deepcopy(sim)
    one_imageset["experiment"][1]["imageset"] = 0  # both sweeps' scans in one imageset
    cases["one imageset, two scans"] = one_imageset
    narrower = copy.deepcopy(one_imageset)
    narrower["scan"][1]["oscillation"][1] /= 2  # refused: widths differ
    cases["widths differ"] = narrower
    no_scan = copy.deepcopy(one_imageset)
    del no_scan["experiment"][0]["scan"]
    cases["an experiment without its scan first"] = no_scan
    for name, obj in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.expt"
        path.write_text(json.dumps(obj))
        outcomes = both_readers(
            path,
            monkeypatch,
            lambda es: ([e.scan and e.scan.get_image_range() for e in es], [e._refs for e in es]),
        )
        assert outcomes[0] == outcomes[1], name


# --- model index ---------------------------------------------------------------------------


def test_model_index_by_runs_is_the_loop(written):
    light, reference, _paths = written
    runs = model_runs(light)
    assert runs is not None and sum(n for _e, n in runs) == len(light)
    index = geometry._model_index(light)
    assert_same_index(index, reference_model_index(light))
    # the generic loop on a plain list of the same experiments (models already made)
    assert model_runs(list(light)) is None
    assert_same_index(geometry._model_index(list(light)), index)
    # dxtbx's own list: the same distinct models, in the same order, the same positions
    theirs = reference_model_index(reference)
    assert [d.to_dict() for d in index.detectors] == [d.to_dict() for d in theirs.detectors]
    assert [b.to_dict() for b in index.beams] == [b.to_dict() for b in theirs.beams]
    assert np.array_equal(index.detector_of, theirs.detector_of)
    assert np.array_equal(index.beam_of, theirs.beam_of)
    assert len(index.detectors) == len(reference.detectors()) - (None in reference.detectors())
    assert_same_index(geometry._model_index(reference), theirs)


def test_a_list_mixing_dxtbx_experiments_takes_the_loop(tmp_path):
    light = read_experiments(str(write(extended(copies_of(1, 1), n=30), tmp_path / "m.expt")))
    mixed = LightExperimentList([*light[:10], *stills()[:2], *light[10:]])
    assert model_runs(mixed) is None
    assert_same_index(geometry._model_index(mixed), reference_model_index(mixed))


def broken(kind: str, entries_from: int, n: int = 12, entries=None):
    """An edit of the JSON: the ``kind`` dictionary refused by dxtbx, named first by
    experiment ``entries_from`` (the experiments before it name none of that kind)."""

    def edit(obj):
        model = obj[kind][0]
        if kind == "beam":
            model["direction"] = "along z"
        else:
            model["panels"][0]["fast_axis"] = "along x"
        for entry in obj["experiment"][:entries_from]:
            entry.pop(kind, None)

    return edit


def model_error(path_or_paths, index_of) -> tuple[str, str]:
    paths = path_or_paths if isinstance(path_or_paths, list) else [path_or_paths]
    experiments = read_experiment_files([str(p) for p in paths])
    with pytest.raises(Exception) as raised:
        index_of(experiments)
    return type(raised.value).__name__, str(raised.value)


def compose(*edits):
    def edit(obj):
        for e in edits:
            e(obj)

    return edit


@pytest.mark.parametrize(
    "edit,kind,path_name",
    [
        (broken("beam", 5), "beam", "one.expt"),
        (broken("detector", 3), "detector", "one.expt"),
        (compose(broken("beam", 5), broken("detector", 3)), "detector", "one.expt"),
        (compose(broken("beam", 2), broken("detector", 3)), "beam", "one.expt"),
        (compose(broken("beam", 4), broken("detector", 4)), "detector", "one.expt"),
    ],
    ids=["beam at 5", "detector at 3", "detector 3 before beam 5", "beam 2 first", "same"],
)
def test_the_first_model_dxtbx_refuses_is_the_loops_sorry(edit, kind, path_name, tmp_path):
    path = write(extended(shared, n=20), tmp_path / path_name, edit)
    ours = model_error(path, geometry._model_index)
    assert ours == model_error(path, reference_model_index)
    assert ours[0] == "Sorry"
    assert f"{path_name}: dxtbx cannot make its {kind} models" in ours[1]


def test_a_refused_model_in_the_second_file_is_named_as_by_the_loop(tmp_path):
    experiments = extended(shared, n=15)
    first = write(experiments[:5], tmp_path / "first.expt")
    for kind, edit in (
        ("beam", broken("beam", 0)),
        ("detector", compose(broken("beam", 4), broken("detector", 2))),
    ):
        second = write(experiments[5:], tmp_path / f"second_{kind}.expt", edit)
        ours = model_error([first, second], geometry._model_index)
        assert ours == model_error([first, second], reference_model_index)
        assert f"second_{kind}.expt: dxtbx cannot make its {kind} models" in ours[1]


# --- experiment infos ----------------------------------------------------------------------


def test_experiment_infos_are_the_loops(written):
    light, reference, _paths = written
    for experiments in (light, list(light), reference, light[:0], None):
        ours = experiment_infos(experiments)
        theirs = reference_infos(experiments)
        assert ours == theirs
        assert all(type(i) is ExperimentInfo for i in ours)
        assert [i.__dict__ for i in ours] == [i.__dict__ for i in theirs]


def test_stills_without_identifiers_are_the_loops(tmp_path):
    def anonymous(obj):
        for k, entry in enumerate(obj["experiment"]):
            if k % 3:
                entry.pop("identifier")
            else:
                entry["identifier"] = ""

    light = read_experiments(str(write(extended(shared, n=50), tmp_path / "a.expt", anonymous)))
    assert experiment_infos(light) == reference_infos(light)
    assert {i.identifier for i in experiment_infos(light)} == {None}


# --- dials.strong_reflection_positions' finalize -------------------------------------------


def centre_lists() -> dict[str, list[dict]]:
    one = {"panel": 0, "px": (1.5, 2.5), "mm": (0.3, 0.5), "lab": (1.0, 2.0, -100.0)}
    equal = copy.deepcopy(one)  # equal values, other objects
    other = {**one, "px": (1.5, 2.25)}
    nan = {**one, "px": (math.nan, 1.0)}
    nan_again = {**one, "px": (math.nan, 1.0)}
    negative_zero = {**one, "lab": (-0.0, 2.0, -100.0)}
    off = {"panel": None, "px": None, "mm": None, "lab": (3.0, 4.0, 5.0)}
    rounded = {**one, "px": (1.5000000001, 2.5)}  # the same to 6 digits: one entry
    pattern = [one, one, equal, other, one, nan, nan, nan_again, off, off, negative_zero,
               rounded, one, other, other, equal]  # fmt: skip
    return {
        "shared": [{"experiment": k, "identifier": None, **one} for k in range(3000)],
        "mixed": [
            {"experiment": 2 * k + 1, "identifier": f"x{k}", **pattern[k % len(pattern)]}
            for k in range(len(pattern) * 40)
        ],
        "empty": [],
    }


@pytest.mark.parametrize("name", ["shared", "mixed", "empty"])
def test_distinct_beam_centres_are_the_loops(name):
    centres = centre_lists()[name]
    ours = strong_positions.distinct_beam_centres(centres)
    assert json.dumps(ours) == json.dumps(reference_distinct_beam_centres(centres))


def generic_paths(patch) -> None:
    """Every fast path of this work replaced by the loop it replaces."""
    patch.setattr(experiment_models, "_by_columns", refuse)
    patch.setattr(geometry, "_model_index", reference_model_index)
    patch.setattr(program_module, "experiment_infos", reference_infos)
    patch.setattr(inputs, "experiment_infos", reference_infos)
    patch.setattr(strong_positions, "distinct_beam_centres", reference_distinct_beam_centres)
    patch.setattr(positions_program, "merged_groups", reference_merged_groups)


@pytest.fixture(scope="module")
def still_files(tmp_path_factory) -> Path:
    return split_stills("ssx_CuNiR/indexed.refl", tmp_path_factory.mktemp("stills"), copies=3)


MERGED, JOINED = "Computed in the tasks", "Selected rows joined in this process"
#: name -> (experiment list, arguments, the finalize path taken)
PROGRAM_RUNS = {
    "one beam and detector, compact": (
        "one beam and detector",
        ["output.json_form=compact"],
        MERGED,
    ),
    "one beam and detector, full": ("one beam and detector", ["output.json_form=full"], MERGED),
    "copies, two processes": ("copied beams and detectors", ["mp.nproc=2"], MERGED),
    "no beam or detector": ("no beam or detector", ["output.json_form=compact"], JOINED),
    "positions listed": ("one beam and detector", ["output.positions=True"], JOINED),
    "two files": ("two files", ["output.json_form=compact"], MERGED),
}


def finals_recorded(patch) -> list:
    """The :class:`Final` of every finalize of the program from now on."""
    finals = []
    finalize = positions_program.StrongReflectionPositions.finalize

    def recording(self, final, run):
        finals.append(finalize(self, final, run))
        return finals[-1]

    patch.setattr(positions_program.StrongReflectionPositions, "finalize", recording)
    return finals


def final_values(final) -> tuple:
    computed = final.computed
    return (
        computed.groups,
        computed.beam_centres,
        computed.n_detectors,
        computed.image_sizes,
        final.lab_frame,
        final.n_selected,
        json.dumps(to_plain(final.result)),
    )


@pytest.mark.parametrize("name", list(PROGRAM_RUNS))
def test_strong_reflection_positions_finalizes_as_the_loops(
    name, still_files, tmp_path, run_inprocess, monkeypatch
):
    list_name, extra, path_taken = PROGRAM_RUNS[name]
    if list_name == "two files":
        experiments = extended(copies_of(1, 2))
        expts = [write(experiments[:700], tmp_path / "a.expt")]
        expts.append(write(experiments[700:], tmp_path / "b.expt"))
    else:
        expts = [write(LISTS[list_name](), tmp_path / "list.expt")]
    args = [*expts, *sorted(still_files.glob("*.refl")), "output.plot=None", *extra]
    runs = {}
    for way in ("fast", "loops"):
        directory = tmp_path / way
        directory.mkdir()
        with monkeypatch.context() as patch:
            if way == "loops":
                generic_paths(patch)
            finals = finals_recorded(patch)
            result = run_inprocess("strong_reflection_positions", *args, cwd=directory)
        assert result.exit_code == 0, result.stderr
        assert path_taken in (directory / "dials.strong_reflection_positions.log").read_text()
        json_bytes = (directory / "strong_reflection_positions.json").read_bytes()
        runs[way] = (result.document, json_bytes, [final_values(f) for f in finals])
    assert runs["fast"] == runs["loops"]
    document, _json, (final,) = runs["fast"]
    assert document["inputs"]["experiments"]["n_experiments"] == 5 + N_EXTRA
    groups, centres = final[0], final[1]
    assert len(groups) == 15 and len(centres) > 500  # beam centres of 2000+ experiments
