"""Every program gives the same results with the fast reader and with DIALS's loader."""

from __future__ import annotations

import pytest
from conftest import data_path, needs_dials

pytestmark = needs_dials

CASES = [
    ("spot_size_histogram", ["sim_twoexp/indexed.refl"]),
    ("spot_size_histogram", ["centroid_test_data/integrated.refl"]),
    ("spot_size_histogram", ["quartz_processed/integrated.refl", "selection.flags=all"]),
    ("spot_size_histogram", ["sim_small/strong.refl"]),  # falls back to 'strong'
    ("intensity_per_frame", ["sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"]),
    ("intensity_per_frame", ["ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"]),
    ("strong_reflection_positions", ["sim_small/integrated.expt", "sim_small/integrated.refl"]),
    ("strong_reflection_positions", ["quartz_processed/strong.refl"]),  # falls back
]


@pytest.mark.parametrize("program,inputs", CASES)
def test_fast_reader_and_dials_loader_agree(run_inprocess, program, inputs):
    args = [data_path(a) if "=" not in a else a for a in inputs]
    documents = {}
    for reader in ("fast", "dials"):
        result = run_inprocess(
            program,
            *args,
            f"reader={reader}",
            f"json={reader}.json",
            "plot=None",
            f"log={reader}.log",
        )
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        documents[reader] = result.document
    fast, dials = documents["fast"], documents["dials"]
    assert fast["inputs"]["reflections"]["reader"] == ["fast"]
    assert dials["inputs"]["reflections"]["reader"] == ["dials"]
    for key in ("paths", "size_bytes", "rows", "n_identifiers", "total_rows"):
        assert fast["inputs"]["reflections"][key] == dials["inputs"]["reflections"][key], key
    assert fast["inputs"]["experiments"] == dials["inputs"]["experiments"]
    assert fast["results"] == dials["results"]
    assert fast["selection"] == dials["selection"]
