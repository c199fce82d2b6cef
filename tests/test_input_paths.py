"""Many input paths: duplicates found through symbolic links, names relative to their
common directory (the JSON's ``inputs``)."""

from __future__ import annotations

import os
import random
import shutil

import numpy as np
import pytest
from conftest import data_path

from dials_refl_stats.compact import common_directory
from dials_refl_stats.pipeline import inputs
from dials_refl_stats.pipeline.errors import Sorry


@pytest.fixture()
def directory(tmp_path):
    """70 copies of a small table (enough for the directory to be listed once)."""
    folder = tmp_path / "stills"
    folder.mkdir()
    source = data_path("sim_small/strong.refl")
    for i in range(70):
        shutil.copy(source, folder / f"still_{i:03d}.refl")
    return folder


@pytest.mark.parametrize("listed", [True, False])
def test_a_symbolic_link_to_a_file_given_is_refused(directory, monkeypatch, listed):
    if not listed:  # one lstat per path instead of one listing
        monkeypatch.setattr(inputs, "_LIST_DIRECTORY_FROM", 10**9)
    os.symlink(directory / "still_005.refl", directory / "still_999.refl")
    paths = inputs.expand_collection(str(directory))
    with pytest.raises(Sorry, match="still_999.refl: given twice .*still_005.refl"):
        inputs.refuse_duplicates(paths)


@pytest.mark.parametrize("listed", [True, False])
def test_links_to_other_files_and_odd_spellings(directory, tmp_path, monkeypatch, listed):
    if not listed:
        monkeypatch.setattr(inputs, "_LIST_DIRECTORY_FROM", 10**9)
    outside = tmp_path / "outside.refl"
    shutil.copy(data_path("sim_small/strong.refl"), outside)
    os.symlink(outside, directory / "still_999.refl")
    paths = inputs.expand_collection(str(directory))
    inputs.refuse_duplicates(paths)  # a link to a file not given: fine
    with pytest.raises(Sorry, match="given twice"):
        inputs.refuse_duplicates([*paths, str(outside)])
    spelled = str(directory) + "//still_003.refl"  # the same file, spelled otherwise
    with pytest.raises(Sorry, match="given twice"):
        inputs.refuse_duplicates([*paths, spelled])


def test_the_one_directory_shortcut_never_hides_a_duplicate(directory, monkeypatch):
    """Random mixes of spellings of the same names (doubled slashes, ``./``, relative):
    whenever the shortcut finds the paths distinct, resolving each one agrees."""
    monkeypatch.chdir(directory.parent)
    names = sorted(os.listdir(directory))
    spellings = [f"{directory}/", f"{directory}//", f"{directory}/./", "stills/", "./stills/"]
    rng = random.Random(11)
    shortcuts = 0
    for _ in range(300):
        prefix = rng.choice(spellings)
        paths = [prefix + name for name in rng.sample(names, rng.randint(64, 70))]
        if rng.random() < 0.3:  # the same file again, or spelled another way
            paths.append(rng.choice(spellings) + rng.choice(paths).rsplit("/", 1)[1])
        shortcut = inputs._distinct_in_one_directory(paths)
        shortcuts += shortcut
        with monkeypatch.context() as patched:
            patched.setattr(inputs, "_distinct_in_one_directory", lambda paths: False)
            try:
                inputs.refuse_duplicates(paths)
                distinct = True
            except Sorry:
                distinct = False
        assert distinct or not shortcut, paths
    assert shortcuts > 100


def test_names_relative_to_the_common_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = str(tmp_path)
    assert common_directory([]) == ("", [])
    assert common_directory(["a/x.refl"]) == (f"{here}/a", ["x.refl"])
    assert common_directory(["a/x.refl", "a/y.refl"]) == (f"{here}/a", ["x.refl", "y.refl"])
    assert common_directory(["a/b/x.refl", "a/c/y.refl", "a/z.refl"]) == (
        f"{here}/a",
        ["b/x.refl", "c/y.refl", "z.refl"],
    )
    assert common_directory(["/x.refl", "/y/z.refl"]) == ("/", ["x.refl", "y/z.refl"])
    assert common_directory(["a/b/../x.refl", "a/y.refl"]) == (f"{here}/a", ["x.refl", "y.refl"])
    assert common_directory(["a/b/", "a/c"]) == (f"{here}/a", ["b", "c"])


def test_paths_of_one_directory_take_the_short_way_to_the_same_answer(tmp_path, monkeypatch):
    """The common-prefix shortcut for a directory's listing gives what splitting every
    path gives, on random relative, absolute, dotted and doubled-slash paths."""
    from dials_refl_stats import compact

    monkeypatch.chdir(tmp_path)
    rng = random.Random(7)
    parts = ["a", "b", "..", ".", "", "x.refl", "y.refl", "/", "//", "a/", "ab", "n\nl", "\n"]
    for _ in range(3000):
        stem = "".join(rng.choice(parts) for _ in range(rng.randint(0, 3)))
        paths = [stem + "".join(rng.choice(parts) for _ in range(rng.randint(1, 3)))]
        paths += [stem + rng.choice(parts) + rng.choice(["x.refl", "y.refl", ".", ""])]
        expected = common_directory(paths)
        with monkeypatch.context() as patch:
            patch.setattr(compact, "one_directory", lambda paths: None)
            assert common_directory(paths) == expected, paths


def test_a_directory_lists_what_glob_would(tmp_path):
    """``*.refl`` of a directory from one listing: the names glob matches, no more."""
    import glob

    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("b.refl", "a.refl", ".hidden.refl", "c.refl.bak", "d.REFL", "e.expt"):
        (folder / name).write_bytes(b"")
    (folder / "sub.refl").mkdir()  # glob matches directories too: they fail when opened
    expected = sorted(glob.glob(os.path.join(glob.escape(str(folder)), "*.refl")))
    assert inputs.expand_collection(str(folder)) == expected
    assert [os.path.basename(p) for p in expected] == ["a.refl", "b.refl", "sub.refl"]
    odd = tmp_path / "we[ir]d*dir"  # glob characters in the directory name
    odd.mkdir()
    (odd / "x.refl").write_bytes(b"")
    assert inputs.expand_collection(str(odd)) == [str(odd / "x.refl")]


def test_files_only_listed_are_batched_by_count():
    from dials_refl_stats.pipeline.execute import BATCH_FILES, make_batches

    files = list(range(10000))
    batches = make_batches(files, [-1] * len(files), n_workers=2)
    assert [f for b in batches for f in b] == files
    assert max(len(b) for b in batches) <= BATCH_FILES and len(batches) >= 8
    assert list(make_batches([1, 2, 3], [-1] * 3, n_workers=4)) == [[1], [2], [3]]


@pytest.mark.parametrize("n_workers", [1, 2, 8])
@pytest.mark.parametrize("sized", [False, True])
def test_the_last_batches_are_smaller_on_several_workers(n_workers, sized):
    """Files in order, each once; on several workers the last batch per worker's worth
    goes in batches a TAIL_SPLIT-th that size, so that no worker is left with a whole
    batch when the others are done; serially, none."""
    from dials_refl_stats.pipeline.execute import TAIL_SPLIT, make_batches

    rng = np.random.default_rng(n_workers)
    files = list(range(20_000))
    sizes = rng.integers(10_000, 60_000, len(files)).tolist() if sized else [-1] * len(files)
    batches = make_batches(files, sizes, n_workers)
    assert [f for b in batches for f in b] == files
    weight = (lambda b: sum(sizes[f] for f in b)) if sized else len
    amounts = [weight(b) for b in batches]
    head = max(amounts[: len(amounts) // 2])
    small = [a <= head // TAIL_SPLIT + (60_000 if sized else 1) for a in amounts]
    if n_workers == 1:
        assert not any(small[:-1])  # at most a last short batch
        return
    first_small = small.index(True)
    assert all(small[first_small:])  # the small ones come last, together
    tail = amounts[first_small:]
    assert len(tail) >= n_workers * (TAIL_SPLIT - 1)
    assert sum(tail) >= (n_workers - 1) * head  # at least a batch per other worker


def test_listed_files_and_their_batches_are_made_when_asked_for():
    """10^6 listed stills: no object per file before the run, and a task's batch goes
    to a worker as its first index and paths, arriving as the same files."""
    import pickle

    from dials_refl_stats.pipeline.execute import ListedBatch, make_batches

    paths = [f"/data/still_{i:03d}.refl" for i in range(101)]
    listed = inputs.ListedFiles(paths)
    assert len(listed) == 101 and listed[5].info.path == paths[5] and listed[5].info.index == 5
    assert listed[-1].info.index == 100 and listed[-1].size_bytes == -1
    assert [f.info.index for f in listed[10:13]] == [10, 11, 12]
    assert [f.info.path for f in listed] == paths
    assert all(isinstance(f.info, inputs.DeferredFileInfo) for f in listed)
    batches = make_batches(listed.infos, [-1] * len(listed), n_workers=2)
    assert all(isinstance(b, ListedBatch) for b in batches)
    assert [len(b) for b in batches] == [13] * 5 + [5] * 7 + [1]  # the last 36 cut smaller
    arrived = [f for b in batches for f in pickle.loads(pickle.dumps(b)).files()]
    assert arrived == list(listed.infos) == [f.info for f in listed]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
@pytest.mark.parametrize("many", [True, False])
def test_a_fifo_is_refused_not_waited_for(directory, tmp_path, many):
    """A FIFO named like a table, in a directory (headers left to the tasks, or read
    first) or given itself: a one-line Sorry, no output; skipped with on_error=skip."""
    import json

    from test_programs_common import assert_sorry, run_inprocess

    if not many:
        for path in sorted(directory.glob("*.refl"))[3:]:
            path.unlink()
    fifo = directory / "still_500.refl"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    for args in ([directory], [fifo, directory / "still_001.refl"]):
        code, _out, err = run_inprocess("spot_size_histogram", [*args, "output.plot=None"], out)
        assert_sorry(code, err, str(fifo), "not a regular file")
        assert not list(out.iterdir())
    code, _out, err = run_inprocess(
        "spot_size_histogram", [directory, "output.plot=None", "input.on_error=skip"], out
    )
    assert code == 0, err
    skipped = json.loads((out / "spot_size_histogram.json").read_text())["selection"]["skipped"]
    assert [(s["path"], s["reason"].split(": ")[-1]) for s in skipped] == [
        (str(fifo), "not a regular file")
    ]
