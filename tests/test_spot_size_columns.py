"""Per-experiment spot-size summaries as columns equal the per-group distributions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import data_path

from dials_refl_stats.analysis.spot_size import SpotSizeStatistic
from dials_refl_stats.pipeline.execute import SelectionPlan, read_chunk
from dials_refl_stats.pipeline.inputs import open_files
from dials_refl_stats.selection import FlagSelection


@pytest.mark.parametrize(
    "paths",
    [
        ["sim_twoexp/indexed.refl"],
        ["ssx_CuNiR/strong_5.refl", "ssx_CuNiR/indexed.refl"],
        ["centroid_test_data/integrated.refl", "quartz_processed/integrated.refl"],
    ],
)
def test_summary_columns_equal_each_groups_summary(paths):
    statistic = SpotSizeStatistic()
    files = open_files([str(data_path(p)) for p in paths], "auto", [])
    plan = SelectionPlan(FlagSelection(names=("all",)))
    chunks = [read_chunk(f.info, statistic, plan, "auto")[0] for f in files]
    final = statistic.finalize(statistic.merge_all(statistic.partial(c) for c in chunks))
    columns = final.summary_columns()
    summaries = [d.summary for d in final.result.groups]
    assert len(summaries) == final.groups.size > 1
    assert columns["n"].tolist() == [s.n for s in summaries]
    for key in ("median", "min", "max"):
        expected = [np.nan if s.n == 0 else getattr(s, key) for s in summaries]
        assert np.array_equal(columns[key], expected, equal_nan=True), key
    for key in ("mean", "std"):
        expected = [np.nan if s.n == 0 else getattr(s, key) for s in summaries]
        assert np.allclose(columns[key], expected, rtol=1e-12, equal_nan=True), key
