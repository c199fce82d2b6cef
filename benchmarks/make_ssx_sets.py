"""Serial-crystallography (SSX) benchmark data, made with DIALS from the bundled stills.

``tests/data/ssx_CuNiR`` holds 5 stills (``strong_5.refl`` with shoeboxes, ~152 spots per
still; ``integrated.refl``). With DIALS itself:

* ``ssx_strong_N/``: N single-still files. The 5 stills are split with ``table.select``
  (``id`` set to 0, ``experiment_identifiers()`` reduced to the still's own identifier,
  a fixed-width one, and ``imageset_id`` 0) and written with ``as_file``; the N files are
  byte copies of these 5, each with its identifier string rewritten in place (same
  length, so still a valid DIALS file) to a unique one, ``ssx-<k:012d>``.
* ``ssx_links_N/`` (N > 10^5): N hard links to the files of ``ssx_strong_100000/``.
* ``ssx_joint_N.refl``: one table of N stills: copies of ``strong_5.refl`` concatenated
  with remapped ``id``/``imageset_id`` and new identifiers.
* ``ssx_integrated_F_x_S/``: F files of S integrated stills each (S/5 copies of
  ``integrated.refl`` concatenated with remapped ids and new identifiers).

Everything goes under ``benchmarks/work/`` (git-ignored) and is reused when present.

    /usr/bin/python3 benchmarks/make_ssx_sets.py                 # 10^4 files, joint, 200x50
    /usr/bin/python3 benchmarks/make_ssx_sets.py --files 100000  # also 10^5 files
    /usr/bin/python3 benchmarks/make_ssx_sets.py --files 1000000 # 10^6 (hard links)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / "work"
SOURCE = REPO / "tests" / "data" / "ssx_CuNiR"
#: Identifier template: every identifier written has this length.
IDENT = "ssx-{:012d}"


def _flex():
    from dials.array_family import flex

    return flex


def still_table(table, k: int, identifier: str):
    """Rows of experiment ``k`` of ``table`` as a one-still table (id 0, one identifier)."""
    flex = _flex()
    sub = table.select(table["id"] == k)
    ids = sub.experiment_identifiers()
    for key in list(ids.keys()):
        del ids[key]
    sub["id"] = flex.int(sub.size(), 0)
    if "imageset_id" in sub:
        sub["imageset_id"] = flex.int(sub.size(), 0)
    sub.experiment_identifiers()[0] = identifier
    return sub


def joint_table(source, n_copies: int, first_ident: int = 0):
    """``n_copies`` copies of ``source`` in one table, ids remapped, identifiers new."""
    n_exp = len(source.experiment_identifiers())
    base_ids = source["id"]
    parts = []
    for c in range(n_copies):
        t = source.copy()
        ids = t.experiment_identifiers()
        for key in list(ids.keys()):
            del ids[key]
        t["id"] = base_ids + c * n_exp
        if "imageset_id" in t:
            t["imageset_id"] = t["imageset_id"] + c * n_exp
        for j in range(n_exp):
            t.experiment_identifiers()[c * n_exp + j] = IDENT.format(first_ident + c * n_exp + j)
        parts.append(t)
    # pairwise concatenation keeps extend() from copying one growing table n times
    while len(parts) > 1:
        merged = []
        for i in range(0, len(parts) - 1, 2):
            parts[i].extend(parts[i + 1])
            merged.append(parts[i])
        if len(parts) % 2:
            merged.append(parts[-1])
        parts = merged
    return parts[0]


def _replicate(templates: list[tuple[bytes, bytes]], directory: Path, n_files: int) -> None:
    """Files ``still_<k>.refl``: template ``k % len`` with identifier ``k`` patched in."""
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    width = len(str(n_files - 1))
    for k in range(n_files):
        data, old = templates[k % len(templates)]
        new = IDENT.format(k).encode()
        assert data.count(old) == 1 and len(new) == len(old)
        (tmp / f"still_{k:0{width}d}.refl").write_bytes(data.replace(old, new))
    tmp.rename(directory)


def ensure_still_files(n_files: int) -> Path:
    """``benchmarks/work/ssx_strong_<n_files>/`` (made when missing)."""
    directory = WORK / f"ssx_strong_{n_files}"
    if directory.is_dir():
        return directory
    flex = _flex()
    table = flex.reflection_table.from_file(str(SOURCE / "strong_5.refl"))
    templates = []
    WORK.mkdir(parents=True, exist_ok=True)
    for k in sorted(set(table["id"])):
        ident = IDENT.format(10**11 + k)  # a placeholder, patched in every copy
        path = WORK / f"ssx_still_{k}.refl"
        still_table(table, k, ident).as_file(str(path))
        templates.append((path.read_bytes(), ident.encode()))
    _replicate(templates, directory, n_files)
    return directory


#: Sets of more files than this are hard links to the files of the set of this many.
LINK_FROM = 100000


def ensure_linked_files(n_files: int) -> Path:
    """``benchmarks/work/ssx_links_<n_files>/``: ``still_<k>.refl`` a hard link to file
    ``k % LINK_FROM`` of :func:`ensure_still_files` (distinct paths over the same inodes:
    10^6 paths hold 3.1 GB of page cache instead of 31 GB; identifiers repeat, so such a
    set has no experiments)."""
    directory = WORK / f"ssx_links_{n_files}"
    if directory.is_dir():
        return directory
    source = ensure_still_files(LINK_FROM)
    names = sorted(os.listdir(source))
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    width = len(str(n_files - 1))
    for k in range(n_files):
        os.link(source / names[k % len(names)], tmp / f"still_{k:0{width}d}.refl")
    tmp.rename(directory)
    return directory


def ensure_still_experiments(n_files: int) -> Path:
    """``benchmarks/work/ssx_strong_<n_files>.expt``: one experiment per file of
    :func:`ensure_still_files` (identifier ``k``, the beam and detector of the stills of
    ``imported_no_ref_5.expt``, shared), for programs that use the geometry."""
    path = WORK / f"ssx_strong_{n_files}.expt"
    if path.exists():
        return path
    from dxtbx.model import Experiment
    from dxtbx.model.experiment_list import ExperimentList, ExperimentListFactory

    source = ExperimentListFactory.from_json_file(
        str(SOURCE / "imported_no_ref_5.expt"), check_format=False
    )
    experiments = ExperimentList()
    for k in range(n_files):
        still = source[k % len(source)]
        experiments.append(
            Experiment(beam=still.beam, detector=still.detector, identifier=IDENT.format(k))
        )
    tmp = path.with_suffix(".partial.expt")
    experiments.as_file(str(tmp))
    os.replace(tmp, path)
    return path


def ensure_indexed_experiments(n_files: int) -> Path:
    """``benchmarks/work/ssx_indexed_<n_files>.expt``: the experiments of
    :func:`ensure_still_experiments`, each with a crystal entry of its own (as
    ``dials.ssx_index`` writes them), copied from the crystals DIALS indexed in
    ``ssx_CuNiR/indexed.expt`` (Sauter 2014 mosaicity, covariance of B: ~3.3 kB each).

    Written by editing the JSON: dxtbx's ``as_file`` looks each crystal up in the list
    of those already written, so 10^5 distinct crystals would take it hours."""
    path = WORK / f"ssx_indexed_{n_files}.expt"
    if path.exists():
        return path
    obj = json.loads(ensure_still_experiments(n_files).read_text())
    crystals = json.loads((SOURCE / "indexed.expt").read_text())["crystal"]
    obj["crystal"] = [crystals[k % len(crystals)] for k in range(n_files)]
    for k, entry in enumerate(obj["experiment"]):
        entry["crystal"] = k
    tmp = path.with_suffix(".partial.expt")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
    return path


def ensure_joint_table(n_stills: int) -> Path:
    """``benchmarks/work/ssx_joint_<n_stills>.refl`` (made when missing)."""
    path = WORK / f"ssx_joint_{n_stills}.refl"
    if path.exists():
        return path
    flex = _flex()
    source = flex.reflection_table.from_file(str(SOURCE / "strong_5.refl"))
    n_exp = len(source.experiment_identifiers())
    joint = joint_table(source, n_stills // n_exp)
    tmp = path.with_suffix(".partial.refl")
    joint.as_file(str(tmp))
    os.replace(tmp, path)
    return path


def ensure_integrated_files(n_files: int, stills_per_file: int) -> Path:
    """``benchmarks/work/ssx_integrated_<F>_x_<S>/``: F files of S integrated stills."""
    directory = WORK / f"ssx_integrated_{n_files}_x_{stills_per_file}"
    if directory.is_dir():
        return directory
    flex = _flex()
    source = flex.reflection_table.from_file(str(SOURCE / "integrated.refl"))
    n_exp = len(source.experiment_identifiers())
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    copies = stills_per_file // n_exp
    for f in range(n_files):
        table = joint_table(source, copies, first_ident=f * copies * n_exp)
        table.as_file(str(tmp / f"integrated_{f:04d}.refl"))
    tmp.rename(directory)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, action="append", help="single-still file counts")
    parser.add_argument("--joint", type=int, default=10000, help="stills in the joint table")
    parser.add_argument("--integrated", type=int, nargs=2, default=(200, 50), metavar=("F", "S"))
    args = parser.parse_args()
    for n in args.files or [10000]:
        start = time.perf_counter()
        if n > LINK_FROM:
            print(ensure_linked_files(n), f"{time.perf_counter() - start:.1f} s")
            continue
        print(ensure_still_files(n), f"{time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        print(ensure_still_experiments(n), f"{time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        print(ensure_indexed_experiments(n), f"{time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    print(ensure_joint_table(args.joint), f"{time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    print(ensure_integrated_files(*args.integrated), f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
