"""Any split of the input into chunks, merged in any order, gives identical results.

For every registered statistic and every shipped table it can read: one pass over each
file versus random row-range chunks whose partials are merged in a random tree.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from conftest import data_path

from dials_refl_stats.output import to_plain
from dials_refl_stats.pipeline.execute import SelectionPlan, read_chunk
from dials_refl_stats.pipeline.inputs import open_files
from dials_refl_stats.selection import FlagSelection
from dials_refl_stats.statistics import registered_statistics

FILES = [
    "sim_small/indexed.refl",
    "sim_small/integrated.refl",
    "sim_twoexp/indexed.refl",
    "sim_twoexp/integrated.refl",
    "centroid_test_data/indexed.refl",
    "centroid_test_data/integrated.refl",
    "quartz_processed/indexed.refl",
    "ssx_CuNiR/indexed.refl",
    "ssx_CuNiR/strong_5.refl",
    "ssx_CuNiR/integrated.refl",
]

PLAN = SelectionPlan(FlagSelection(names=("all",)))


def chunks_of(statistic, paths):
    files = open_files([str(data_path(p)) for p in paths], "auto", [])
    usable = [f for f in files if statistic.can_read(f.columns)]
    return [read_chunk(f.info, statistic, PLAN, "auto")[0] for f in usable]


def random_split(chunk, rng: random.Random):
    n = chunk.n_rows
    cuts = sorted(rng.sample(range(1, n), min(n - 1, rng.randint(0, 6)))) if n > 1 else []
    bounds = [0, *cuts, n]
    return [chunk.rows(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def merge_randomly(statistic, partials, rng: random.Random):
    partials = list(partials)
    while len(partials) > 1:
        rng.shuffle(partials)
        first, second = partials.pop(), partials.pop()
        partials.append(statistic.merge(first, second))
    return partials[0] if partials else None


def as_json(statistic, partial) -> str:
    return json.dumps(to_plain(statistic.describe(statistic.finalize(partial))), sort_keys=True)


@pytest.mark.parametrize("name", sorted(registered_statistics()))
def test_random_splits_give_identical_results(name):
    statistic = registered_statistics()[name]()
    chunks = chunks_of(statistic, FILES)
    assert chunks, f"no shipped table has the columns {name} needs"
    whole = as_json(statistic, statistic.merge_all(statistic.partial(c) for c in chunks))
    rng = random.Random(1234)
    for _ in range(8):
        pieces = [piece for chunk in chunks for piece in random_split(chunk, rng)]
        partials = [statistic.partial(piece) for piece in pieces]
        assert as_json(statistic, merge_randomly(statistic, partials, rng)) == whole


@pytest.mark.parametrize("name", sorted(registered_statistics()))
def test_empty_chunks_merge_as_identity(name):
    statistic = registered_statistics()[name]()
    chunk = chunks_of(statistic, FILES)[0]
    empty = chunk.rows(0, 0)
    assert not empty.n_rows and np.asarray(empty.selected).size == 0
    one = statistic.partial(chunk)
    merged = statistic.merge(statistic.partial(empty), one)
    assert as_json(statistic, merged) == as_json(statistic, one)
