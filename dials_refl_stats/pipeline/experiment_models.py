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
  lists, shared by the experiments that name the same entry, as in dxtbx;
* with ``check_format=False`` (how these programs always read experiments) dxtbx
  changes none of these models afterwards: an imageset's ``dx``/``dy`` maps, the only
  thing that would change a detector's px/mm strategy, are not read.

Goniometers, crystals, profiles and imagesets are not made. Anything this reader is not
sure to read exactly as dxtbx would (not an experiment list, models given by file name,
scans merged over a shared imageset, identifiers given twice, ...) raises
:class:`NotLight`, and the caller reads the file with DIALS instead: its result or its
error is then DIALS's own.
"""

from __future__ import annotations

import copy
import importlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

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


@dataclass(eq=False)
class LightExperiment:
    """An experiment's identifier and its beam, detector and scan (dxtbx C++ models)."""

    identifier: str
    beam: Any
    detector: Any
    scan: Any


class LightExperimentList(list):
    """A list of :class:`LightExperiment` with the ``ExperimentList`` queries the
    programs use: ``identifiers()``, and the distinct ``beams()``, ``detectors()`` and
    ``scans()`` (by object, ``None`` included, in order, as dxtbx's ``OrderedSet``)."""

    def identifiers(self) -> list[str]:
        return [e.identifier for e in self]

    def beams(self) -> list:
        return _distinct(e.beam for e in self)

    def detectors(self) -> list:
        return _distinct(e.detector for e in self)

    def scans(self) -> list:
        return _distinct(e.scan for e in self)


def _distinct(models: Iterable[Any]) -> list:
    return list({id(m): m for m in models}.values())


def model_classes():
    """dxtbx's C++ model module, with the scitbx converters its ``from_dict`` needs
    (``NotLight`` when this build of dxtbx does not have them where expected)."""
    try:
        importlib.import_module("scitbx_array_family_flex_ext")
        importlib.import_module("scitbx_array_family_shared_ext")
        return importlib.import_module("dxtbx_model_ext")
    except ImportError as error:
        raise NotLight(f"dxtbx's model extension is not importable ({error})") from None


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
    """``ScanFactory.from_dict(d)``."""
    if d is None:
        return None
    joint = dict(d)
    if not isinstance(joint["exposure_time"], list):
        joint["exposure_time"] = [joint["exposure_time"]]
    joint.setdefault("batch_offset", 0)
    joint.setdefault("valid_image_ranges", {})
    return ext.Scan.from_dict(joint)


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
        return _decode(obj, model_classes())
    except NotLight:
        raise
    except Exception as error:  # whatever dxtbx would make of it, dxtbx shall say
        raise NotLight(f"{path}: {error.__class__.__name__}: {error}") from None


def _decode(obj: dict, ext) -> LightExperimentList:
    """``ExperimentListDict(obj, check_format=False).decode()``, for what is read here."""
    entries = obj["experiment"]
    if not isinstance(entries, list):
        raise NotLight("'experiment' is not a list")
    lists = {name: obj.get(name, []) for name in MODEL_KEYS}
    for name, models in lists.items():
        if not isinstance(models, list):
            raise NotLight(f"'{name}' is not a list")
    made = {
        "beam": [_beam(ext, d) for d in lists["beam"]],
        "detector": [_detector(ext, d) for d in lists["detector"]],
        "scan": [_scan(ext, d) for d in lists["scan"]],
    }
    experiments = LightExperimentList()
    imageset_scans: dict[int, Any] = {}
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

        def model(kind: str):
            return made[kind][refs[kind]] if kind in refs else None

        if "imageset" in refs and lists["imageset"][refs["imageset"]] is not None:
            _merge_scans(imageset_scans, refs["imageset"], model("scan"))
        experiments.append(
            LightExperiment(
                identifier=entry.get("identifier", ""),
                beam=model("beam"),
                detector=model("detector"),
                scan=model("scan"),
            )
        )
    for reference, scan in imageset_scans.items():
        _check_imageset(lists["imageset"][reference], scan)
    identifiers = [e.identifier for e in experiments if e.identifier]
    if len(set(identifiers)) != len(identifiers):
        raise NotLight("an identifier is given twice")
    return experiments


def _merge_scans(imageset_scans: dict[int, Any], reference: int, scan: Any) -> None:
    """The scan of an imageset over its experiments, merged as ``decode`` merges them
    (on copies: the experiments' own scans stay as they are); raises where it does."""
    if reference not in imageset_scans:
        imageset_scans[reference] = copy.deepcopy(scan)
        return
    merged = imageset_scans[reference]
    if not scan or scan == merged:
        return
    i, j = merged.get_image_range(), scan.get_image_range()
    if i[1] + 1 == j[0]:
        merged += scan
        imageset_scans[reference] = merged
        return
    o, s = merged.get_oscillation(), scan.get_oscillation()
    if o[1] != s[1]:
        raise NotLight("scans of one imageset with different oscillation widths")
    wider = copy.deepcopy(scan)
    wider.set_image_range((min(i[0], j[0]), max(i[1], j[1])))
    wider.set_oscillation((min(o[0], s[0]), o[1]))
    imageset_scans[reference] = wider


def _check_imageset(data: Any, scan: Any) -> None:
    """``NotLight`` for an imageset dxtbx might refuse to make from its (merged) scan,
    without reading images (``check_format=False``)."""
    kind = data.get("__id__") if isinstance(data, dict) else None
    if kind not in IMAGESET_KINDS:
        raise NotLight(f"imageset kind {kind!r}")
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
