"""Experiment lists read without DIALS's parser or dxtbx's Python model package.

A DIALS program reads an ``.expt`` file with ``ExperimentListFactory.from_json_file``
behind DIALS's ``ArgumentParser``: importing those costs ~1.5-2.5 s of start-up
(dxtbx.model alone pulls in scikit-learn and scipy), more than reading a 10^6-row table.
Programs that need from the experiments only their identifiers, scans, beams and
detectors (:attr:`~dials_refl_stats.pipeline.program.Program.light_experiments`) read
the file here instead, with the same models:

* the JSON is read as dxtbx reads it (``json.loads`` of the text);
* beams, detectors and scans are made by the very C++ ``from_dict`` that dxtbx's
  ``BeamFactory``, ``DetectorFactory`` and ``ScanFactory`` call (``dxtbx_model_ext``),
  after the same preparation of the dictionary, one model per entry of the file's model
  lists, shared by the experiments that name the same entry, as in dxtbx; beams and
  detectors on first use (a program that needs none never imports dxtbx's models), scans
  as :class:`~dials_refl_stats.pipeline.light_scan.LightScan` (image range and
  oscillation, the same values) when dxtbx is sure to accept them;
* with ``check_format=False`` (how these programs always read experiments) dxtbx
  changes none of these models afterwards: an imageset's ``dx``/``dy`` maps, the only
  thing that would change a detector's px/mm strategy, are not read.

* for programs that use crystals, every crystal entry that is plainly what dxtbx's
  ``CrystalFactory`` accepts is made by dxtbx's C++ ``Crystal`` from its real-space
  vectors and space group (the same unit cell, A, B and U), with the scan-varying
  settings and recalculated cell ``Crystal.from_dict`` sets, by its own calls, at parse
  time, all of them (as dxtbx makes them); files with others (unknown keys, anything
  unusual) are read by DIALS's parser.

Goniometers, profiles and imagesets are not made, nor crystals for programs that use none
(a dictionary of one of them that dxtbx would refuse does not stop a program that does not
use it). Anything this reader is not
sure to read exactly as dxtbx would (not an experiment list, models given by file name,
imagesets dxtbx would refuse (a sequence whose first experiment lacks a beam, detector or
goniometer), identifiers given twice or not as strings, ...) raises :class:`NotLight`,
and the caller reads the file with DIALS instead: its result or its error is then
DIALS's own. (A beam or detector dictionary that dxtbx refuses is only found when a
program uses it: a ``Sorry`` naming the file.)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import importlib
import itertools
import json
import operator
from typing import Any, Iterable, Iterator, Sequence

from dials_refl_stats.pipeline.errors import Sorry
from dials_refl_stats.pipeline.light_scan import LightScan, scan_facts

#: Model lists of an experiment list file, by the key an experiment names them with.
MODEL_KEYS = (
    "beam",
    "detector",
    "goniometer",
    "scan",
    "crystal",
    "profile",
    "imageset",
    "scaling_model",
)
#: Imageset kinds dxtbx makes from a file (``MemImageSet`` makes none).
IMAGESET_KINDS = ("ImageSet", "ImageGrid", "ImageSequence", "ImageSweep", "MemImageSet")


class NotLight(RuntimeError):
    """A file (or list of files) to be read by dxtbx itself."""


class FileModels:
    """One file's beam, detector and scan dictionaries and the dxtbx models made of them:
    every entry of a kind at once, on first use (as dxtbx makes them all), each entry one
    object whichever experiments name it."""

    def __init__(self, path: str, lists: dict[str, list]) -> None:
        self.path = path
        self.lists = lists
        self.made: dict[str, list] = {}

    def dxtbx(self, kind: str, index: int) -> Any:
        """dxtbx's model of entry ``index`` of ``kind`` (raises what dxtbx raises)."""
        made = self.made.get(kind)
        if made is None:
            ext = model_classes()
            made = self.made[kind] = [MAKERS[kind](ext, d) for d in self.lists[kind]]
        return made[index]

    def model(self, kind: str, index: int | None) -> Any:
        """:meth:`dxtbx`, or ``None`` for no entry; a ``Sorry`` when dxtbx refuses it."""
        if index is None:
            return None
        try:
            return self.dxtbx(kind, index)
        except Exception as error:
            raise Sorry(
                f"{self.path}: dxtbx cannot make its {kind} models "
                f"({error.__class__.__name__}: {error})"
            ) from None


class LightExperiment:
    """An experiment's identifier and its beam, detector and scan (made on first use)."""

    __slots__ = ("identifier", "_models", "_refs", "_scans", "_crystal")

    def __init__(
        self, identifier: str, models: FileModels, refs: dict, scans: list, crystal=None
    ) -> None:
        self.identifier = identifier
        self._models = models
        self._refs = refs  # every model but the crystal (one per still: runs stay long)
        self._scans = scans
        self._crystal = crystal

    @property
    def beam(self) -> Any:
        return self._models.model("beam", self._refs.get("beam"))

    @property
    def detector(self) -> Any:
        return self._models.model("detector", self._refs.get("detector"))

    @property
    def scan(self) -> Any:
        index = self._refs.get("scan")
        return None if index is None else self._scans[index]

    @property
    def crystal(self) -> Any:
        """dxtbx's C++ ``Crystal`` of the entry (its setting: real-space vectors, space
        group, unit cell; not its mosaicity or covariances), or ``None``. Programs that
        use crystals have them made at parse time (:meth:`LightExperimentList.crystals_made`)."""
        return self._models.model("crystal", self._crystal)


class LightExperimentList(list):
    """A list of :class:`LightExperiment` with the ``ExperimentList`` queries the
    programs use: ``identifiers()``, and the distinct ``beams()``, ``detectors()`` and
    ``scans()`` (by object, ``None`` included, in order, as dxtbx's ``OrderedSet``)."""

    def identifiers(self) -> list[str]:
        return list(map(_IDENTIFIER, self))

    def lists_crystals(self) -> bool:
        """Whether a file of these experiments lists crystal models."""
        return any(models.lists.get("crystal") for models in self._files())

    def crystals_made(self) -> bool:
        """Make every crystal its files list, as DIALS's parser would (all of them, used
        or not): ``False`` when one is not plainly what dxtbx accepts (:func:`_crystal`),
        so that DIALS's parser reads the files and says what is wrong."""
        files = [models for models in self._files() if models.lists.get("crystal")]
        try:
            with gc_paused():
                for models in files:
                    models.dxtbx("crystal", 0)
        except Exception:  # noqa: BLE001 - NotLight, or whatever dxtbx's C++ raises
            return False
        for models in files:  # checked, not kept: 81 numbers a crystal (or scan point)
            for d in models.lists["crystal"]:
                if type(d) is dict:
                    for key in COVARIANCE_KEYS:
                        d.pop(key, None)
        return True

    def _files(self) -> Iterable[FileModels]:
        """The distinct files of these experiments (with the file read, when known:
        a file of no experiment lists models too)."""
        files = {id(e._models): e._models for e in run_firsts(self)}
        for models in getattr(self, "file_models", ()):
            files.setdefault(id(models), models)
        return files.values()

    def beams(self) -> list:
        return _distinct(e.beam for e in self)

    def detectors(self) -> list:
        return _distinct(e.detector for e in self)

    def scans(self) -> list:
        return _distinct(e.scan for e in self)


def _distinct(models: Iterable[Any]) -> list:
    return list({id(m): m for m in models}.values())


_IDENTIFIER = operator.attrgetter("identifier")
#: What an experiment's models are a function of (its file's models, refs and scans).
_MODEL_SOURCES = operator.attrgetter("_models", "_refs", "_scans")


def model_runs(experiments: Any) -> list[tuple[LightExperiment, int]] | None:
    """A :class:`LightExperimentList` of :class:`LightExperiment` as runs of consecutive
    experiments with the same beam, detector and scan (the same file's models, entries
    and scans): the first experiment of each run and its length (10^5 stills of one
    file: one run). ``None`` for anything else (dxtbx's ``ExperimentList``, other lists,
    other experiments)."""
    if not isinstance(experiments, LightExperimentList):
        return None
    if any(t is not LightExperiment for t in set(map(type, experiments))):
        return None
    runs = []
    for _sources, run in itertools.groupby(experiments, _MODEL_SOURCES):
        run = list(run)
        runs.append((run[0], len(run)))
    return runs


def run_firsts(experiments: Any) -> list:
    """The first experiment of each run of :func:`model_runs` (every experiment of any
    other list): those that stand for all in a question about their models."""
    runs = model_runs(experiments)
    return list(experiments) if runs is None else [first for first, _n in runs]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (10^5 small objects made at once, none of them
    in a cycle: the collections their allocations trigger only traverse live objects)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


#: Where dxtbx's C++ model module is: top-level in DIALS 3.12's builds, inside the
#: package in newer ones (``dxtbx.model`` itself tries both, in the other order).
MODEL_MODULES = ("dxtbx_model_ext", "dxtbx.dxtbx_model_ext")


def model_classes():
    """dxtbx's C++ model module, with the scitbx converters its ``from_dict`` needs
    (``NotLight`` when this build of dxtbx does not have them where expected)."""
    try:
        importlib.import_module("scitbx_array_family_flex_ext")
        importlib.import_module("scitbx_array_family_shared_ext")
    except ImportError as error:
        raise NotLight(f"scitbx's array extensions are not importable ({error})") from None
    for name in MODEL_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise NotLight(f"dxtbx's model extension is not importable as any of {MODEL_MODULES}")


def _beam(ext, d):
    """``BeamFactory.from_dict(d)``."""
    if d is None:
        return None
    return ext.Beam.from_dict(dict(d))


def _detector(ext, d):
    """``DetectorFactory.from_dict(d)``."""
    if d is None:
        return None
    if isinstance(d, list):
        d = {"panels": d}
    return ext.Detector.from_dict(dict(d))


def _scan(ext, d):
    """``ScanFactory.from_dict(d)`` (DIALS 3.12's: scans before dxtbx 3.17's per-image
    ``properties`` table, which newer ``ScanFactory`` code expands first: such files
    are read by DIALS's parser)."""
    if d is None:
        return None
    if "properties" in d:
        raise NotLight("a scan with a properties table (dxtbx 3.17+) read by DIALS's parser")
    joint = dict(d)
    if not isinstance(joint["exposure_time"], list):
        joint["exposure_time"] = [joint["exposure_time"]]
    joint.setdefault("batch_offset", 0)
    joint.setdefault("valid_image_ranges", {})
    return ext.Scan.from_dict(joint)


#: What ``Crystal.from_dict`` sets beyond the setting, if present (scan-varying
#: refinement's settings and covariances at scan points; dials.two_theta_refine's
#: recalculated cell): set here by the same calls on the same values.
SCAN_POINT_KEYS = (
    "A_at_scan_points",
    "B_covariance_at_scan_points",
    "recalculated_unit_cell",
    "recalculated_cell_parameter_sd",
    "recalculated_cell_volume_sd",
)
#: Keys of a crystal dictionary made here (any other, and DIALS's parser makes it).
CRYSTAL_KEYS = frozenset(
    (
        "__id__",
        "real_space_a",
        "real_space_b",
        "real_space_c",
        "space_group_hall_symbol",
        "B_covariance",
        "ML_half_mosaicity_deg",
        "ML_domain_size_ang",
        "mosaicity",
        "identified_isoform",
        *SCAN_POINT_KEYS,
    )
)
#: Checked when the crystal is made, then dropped from the parsed file (never used).
COVARIANCE_KEYS = ("B_covariance", "B_covariance_at_scan_points")


def _numbers(values: list) -> bool:
    """JSON numbers dxtbx's C++ takes as doubles (no bool, no huge integer)."""
    types = set(map(type, values))
    if types <= {float}:
        return True
    return types <= {float, int} and all(abs(v) < 1 << 53 for v in values if type(v) is int)


def _crystal(ext, d):
    """``CrystalFactory.from_dict(d)``'s setting, for the dictionaries it plainly
    accepts: dxtbx's C++ ``Crystal`` of the same real-space vectors (the same unit cell,
    A, B and U) and space group; its mosaicity and covariances are checked, not kept.
    ``NotLight`` for anything else (DIALS's parser then makes it, or says what is wrong)."""
    if d is None:
        return None
    if type(d) is not dict or d.get("__id__") != "crystal" or not d.keys() <= CRYSTAL_KEYS:
        raise NotLight("a crystal dictionary read by DIALS's parser")
    vectors = [d.get(f"real_space_{axis}") for axis in "abc"]
    if not all(type(v) is list and len(v) == 3 and _numbers(v) for v in vectors):
        raise NotLight("crystal vectors read by DIALS's parser")
    covariance = d.get("B_covariance")
    if "B_covariance" in d and not (
        type(covariance) is list and len(covariance) == 81 and _numbers(covariance)
    ):
        raise NotLight("a covariance of B read by DIALS's parser")
    if "ML_half_mosaicity_deg" in d or "ML_domain_size_ang" in d:
        # both (dxtbx asserts it), both numbers or both None, and no second mosaicity
        # (dxtbx prints a warning for it)
        mosaic = (d.get("ML_half_mosaicity_deg", ""), d.get("ML_domain_size_ang", ""))
        if "mosaicity" in d or not (_numbers(list(mosaic)) or mosaic == (None, None)):
            raise NotLight("mosaicity read by DIALS's parser")
    elif "mosaicity" in d and not _numbers([d["mosaicity"]]):
        raise NotLight("mosaicity read by DIALS's parser")
    symbol = d.get("space_group_hall_symbol")
    if type(symbol) is not str:
        raise NotLight("a space group read by DIALS's parser")
    try:
        crystal = ext.Crystal(*vectors, _space_group(symbol))
        _set_scan_points(crystal, d)
    except Exception as error:  # noqa: BLE001 - the same C++ refuses it in dxtbx too
        raise NotLight(f"a crystal dxtbx refuses ({error.__class__.__name__})") from None
    return crystal


def _set_scan_points(crystal: Any, d: dict) -> None:
    """What ``Crystal.from_dict`` sets after the setting (:data:`SCAN_POINT_KEYS`), by
    its calls on the same values: whatever they raise, they raise in dxtbx too."""
    if "A_at_scan_points" in d:
        crystal.set_A_at_scan_points(d["A_at_scan_points"])
    covariances = d.get("B_covariance_at_scan_points")
    if covariances is not None:
        from scitbx.array_family import flex

        values = flex.double(covariances).as_1d()
        values.reshape(flex.grid(crystal.num_scan_points, 9, 9))
        crystal.set_B_covariance_at_scan_points(values)
    cell = d.get("recalculated_unit_cell")
    if cell is not None:
        from cctbx import uctbx

        crystal.set_recalculated_unit_cell(uctbx.unit_cell(cell))
    if d.get("recalculated_cell_parameter_sd") is not None:
        crystal.set_recalculated_cell_parameter_sd(d["recalculated_cell_parameter_sd"])
    if d.get("recalculated_cell_volume_sd") is not None:
        crystal.set_recalculated_cell_volume_sd(d["recalculated_cell_volume_sd"])


@functools.lru_cache(maxsize=64)
def _space_group(hall_symbol: str) -> Any:
    """The space group of ``"Hall:" + hall_symbol``, as dxtbx's ``Crystal`` makes it
    from that symbol (made once per symbol: parsing it costs ~40 us a crystal)."""
    from cctbx import sgtbx

    return sgtbx.space_group(sgtbx.space_group_symbols("Hall:" + hall_symbol).hall())


#: ``from_dict`` of each kind read here.
MAKERS = {"beam": _beam, "detector": _detector, "scan": _scan, "crystal": _crystal}


def read_experiments(path: str) -> LightExperimentList:
    """The experiments of the ``.expt`` file ``path`` (``NotLight``: let dxtbx read it)."""
    try:
        with open(path) as handle:
            obj = json.loads(handle.read())
    except (OSError, ValueError) as error:
        raise NotLight(f"{path}: {error}") from None
    if not isinstance(obj, dict) or obj.get("__id__") != "ExperimentList":
        raise NotLight(f"{path}: not an ExperimentList")
    try:
        return _decode(obj, path)
    except NotLight:
        raise
    except Exception as error:  # whatever dxtbx would make of it, dxtbx shall say
        raise NotLight(f"{path}: {error.__class__.__name__}: {error}") from None


def _decode(obj: dict, path: str) -> LightExperimentList:
    """``ExperimentListDict(obj, check_format=False).decode()``, for what is read here."""
    entries = obj["experiment"]
    if not isinstance(entries, list):
        raise NotLight("'experiment' is not a list")
    lists = {name: obj.get(name, []) for name in MODEL_KEYS}
    for name, models in lists.items():
        if not isinstance(models, list):
            raise NotLight(f"'{name}' is not a list")
    for kind, shapes in (("beam", (dict,)), ("detector", (dict, list))):
        if not all(d is None or type(d) in shapes for d in lists[kind]):
            raise NotLight(f"a {kind} that is not a dictionary")  # e.g. a file name
    if any(d is not None and d.get("__id__") == "polychromatic" for d in lists["beam"]):
        raise NotLight("a polychromatic beam (dxtbx 3.16+ makes its own class of it)")
    models = FileModels(path, lists)
    scans = _scans(models)
    try:
        experiments, imageset_scans = _by_columns(entries, models, scans)
    except Exception:  # something unusual: the loop says what, at the entry dxtbx would
        experiments, imageset_scans = _by_entries(entries, models, scans)
    firsts = _first_refs_of_imagesets(experiments)
    for reference, (scan, _own) in imageset_scans.items():
        _check_imageset(lists["imageset"][reference], scan)
        _check_sequence_models(lists, reference, firsts[reference])
    if not set(map(type, map(_IDENTIFIER, experiments))) <= {str}:
        raise NotLight("an identifier that is not a string")  # dxtbx refuses the file
    identifiers = list(filter(None, map(_IDENTIFIER, experiments)))
    if len(set(identifiers)) != len(identifiers):
        raise NotLight("an identifier is given twice")
    experiments.file_models = (models,)
    return experiments


def _by_entries(entries: list, models: FileModels, scans: list) -> tuple[LightExperimentList, dict]:
    """The experiments of ``entries`` and their imagesets' merged scans, entry by entry,
    raising what (and where) ``decode`` raises."""
    lists = models.lists
    experiments = LightExperimentList()
    imageset_scans: dict[int, tuple[Any, bool]] = {}
    for entry in entries:
        refs = {}
        for name in MODEL_KEYS:
            value = entry.get(name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise NotLight(f"experiment names its {name} by {type(value).__name__}")
            lists[name][value]  # IndexError as in dxtbx's lookup
            refs[name] = value
        scan = scans[refs["scan"]] if "scan" in refs else None
        if "imageset" in refs and lists["imageset"][refs["imageset"]] is not None:
            _merge_scans(imageset_scans, refs["imageset"], scan)
        crystal = refs.pop("crystal", None)
        experiments.append(
            LightExperiment(entry.get("identifier", ""), models, refs, scans, crystal)
        )
    return experiments, imageset_scans


_GET = dict.get
_NONE_OR_INT = {type(None), int}


def _by_columns(entries: list, models: FileModels, scans: list) -> tuple[LightExperimentList, dict]:
    """:func:`_by_entries`, one column of references at a time (one ``refs`` dictionary
    per distinct combination, shared): raises (anything) where that would raise, or give
    something else; then :func:`_by_entries` says what."""
    named = set().union(*entries)  # every key of every entry (not dictionaries: raises)
    kinds = [name for name in MODEL_KEYS if name in named]
    columns = [list(map(_GET, entries, itertools.repeat(name))) for name in kinds]
    for name, column in zip(kinds, columns):
        if not set(map(type, column)) <= _NONE_OR_INT:  # exactly int: no bool, no float
            raise NotLight(f"experiment names its {name} otherwise")
        for value in set(column).difference([None]):
            models.lists[name][value]  # IndexError
    identifiers = map(_GET, entries, itertools.repeat("identifier"), itertools.repeat(""))
    crystals = itertools.repeat(None)
    if "crystal" in kinds:  # not in refs: one crystal per still would split every run
        crystals = columns.pop(kinds.index("crystal"))
        kinds = [name for name in kinds if name != "crystal"]
    with gc_paused():
        experiments = LightExperimentList(
            map(
                LightExperiment,
                identifiers,
                itertools.repeat(models),
                _refs_of_entries(kinds, columns, len(entries)),
                itertools.repeat(scans),
                crystals,
            )
        )
    imageset_scans: dict[int, tuple[Any, bool]] = {}
    if "imageset" in kinds:
        column = columns[kinds.index("imageset")]
        scan_of = columns[kinds.index("scan")] if "scan" in kinds else itertools.repeat(None)
        _merge_imageset_scans(imageset_scans, models.lists["imageset"], column, scan_of, scans)
    return experiments, imageset_scans


def _refs_of_entries(kinds: list[str], columns: list[list], n: int) -> Iterable[dict]:
    """Each entry's references by kind (without ``None``), one dictionary per distinct
    combination (10^5 stills naming one beam and one detector: one)."""
    if all(column.count(column[0]) == n for column in columns):
        return itertools.repeat(_refs(kinds, tuple(column[0] for column in columns)), n)
    rows = list(zip(*columns))
    refs = {row: _refs(kinds, row) for row in dict.fromkeys(rows)}
    return map(refs.__getitem__, rows)


def _refs(kinds: list[str], row: tuple) -> dict[str, int]:
    return {name: value for name, value in zip(kinds, row) if value is not None}


def _merge_imageset_scans(
    imageset_scans: dict, imagesets: list, references: Iterable, scan_of: Iterable, scans: list
) -> None:
    """:func:`_merge_scans` of every experiment with an imageset, in order (an experiment
    without a scan changes nothing of an imageset already seen)."""
    for reference, index in zip(references, scan_of):
        if reference is None or imagesets[reference] is None:
            continue
        scan = None if index is None else scans[index]
        if scan is not None or reference not in imageset_scans:
            _merge_scans(imageset_scans, reference, scan)


def _scans(models: FileModels) -> list:
    """The file's scans: :class:`LightScan` when dxtbx is sure to read every one of them
    (no import of dxtbx's models), else dxtbx's own (its errors: ``NotLight``)."""
    entries = models.lists["scan"]
    light = [
        None if d is None else scan_facts(d, functools.partial(models.dxtbx, "scan", i))
        for i, d in enumerate(entries)
    ]
    if all(s is not None or d is None for s, d in zip(light, entries)):
        return light
    return [models.dxtbx("scan", i) for i in range(len(entries))]


def _as_dxtbx(scan: Any) -> Any:
    return scan.dxtbx() if isinstance(scan, LightScan) else scan


def _merge_scans(imageset_scans: dict, reference: int, scan: Any) -> None:
    """The scan of an imageset over its experiments, merged as ``decode`` merges them,
    raising where it does. Merges work on copies (``(scan, own copy?)``): the
    experiments' own scans stay as they are."""
    if reference not in imageset_scans:
        imageset_scans[reference] = (scan, False)
        return
    merged, own = imageset_scans[reference]
    if scan is merged or not scan:
        return
    scan, merged = _as_dxtbx(scan), _as_dxtbx(merged)
    if scan == merged:
        return
    i, j = merged.get_image_range(), scan.get_image_range()
    if i[1] + 1 == j[0]:
        merged = merged if own else copy.deepcopy(merged)
        merged += scan
        imageset_scans[reference] = (merged, True)
        return
    o, s = merged.get_oscillation(), scan.get_oscillation()
    if o[1] != s[1]:
        raise NotLight("scans of one imageset with different oscillation widths")
    wider = copy.deepcopy(scan)
    wider.set_image_range((min(i[0], j[0]), max(i[1], j[1])))
    wider.set_oscillation((min(o[0], s[0]), o[1]))
    imageset_scans[reference] = (wider, True)


def _first_refs_of_imagesets(experiments: LightExperimentList) -> dict[int, dict]:
    """Each imageset's first experiment's references: dxtbx makes the imageset with that
    experiment's models."""
    firsts: dict[int, dict] = {}
    for first in run_firsts(experiments):
        reference = first._refs.get("imageset")
        if reference is not None:
            firsts.setdefault(reference, first._refs)
    return firsts


def _check_sequence_models(lists: dict[str, list], reference: int, refs: dict) -> None:
    """``NotLight`` for a sequence whose first experiment lacks a beam, a detector or a
    goniometer: ``ImageSetFactory.make_sequence`` refuses it (``check_format=False``
    gives it no image to read them from)."""
    if lists["imageset"][reference].get("__id__") not in ("ImageSequence", "ImageSweep"):
        return
    for kind in ("beam", "detector", "goniometer"):
        if refs.get(kind) is None or lists[kind][refs[kind]] is None:
            raise NotLight(f"a sequence whose first experiment has no {kind}")


def _check_imageset(data: Any, scan: Any) -> None:
    """``NotLight`` for an imageset dxtbx might refuse to make from its (merged) scan,
    without reading images (``check_format=False``)."""
    kind = data.get("__id__") if isinstance(data, dict) else None
    if kind not in IMAGESET_KINDS:
        raise NotLight(f"imageset kind {kind!r}")
    if data.get("dx") or data.get("dy"):
        # dxtbx 3.22+ reads them even with check_format=False: the detector's px/mm
        # strategy then corrects positions by them (or refuses missing maps)
        raise NotLight("an imageset with dx/dy correction maps")
    if kind in ("ImageSequence", "ImageSweep") and (scan is None or "template" not in data):
        raise NotLight("a sequence without a scan or template (dxtbx looks for its images)")
    if kind in ("ImageSet", "ImageGrid"):
        images = data.get("images")
        if not isinstance(images, list) or not images:
            raise NotLight("an imageset without image names")
        if scan is not None and scan.get_num_images() != 1:
            raise NotLight("stills with a scan of several images")
        indices = data.get("single_file_indices")
        if indices is not None and len(indices) != len(images):
            raise NotLight("an imageset with single_file_indices for other images")
        if kind == "ImageGrid" and "grid_size" not in data:
            raise NotLight("an image grid without its size")


def read_experiment_files(paths: Sequence[str]) -> LightExperimentList:
    """The experiments of several files, in order (``flatten_experiments``): ``NotLight``
    when one needs dxtbx, or when an identifier appears twice (dxtbx's error then)."""
    experiments = LightExperimentList()
    for path in paths:
        experiments.extend(read_experiments(path))
    identifiers = [e.identifier for e in experiments if e.identifier]
    if len(set(identifiers)) != len(identifiers):
        raise NotLight("an identifier is given twice")
    return experiments
