"""Every program gives the same results with the fast reader and with DIALS's loader."""

from __future__ import annotations

import json

import pytest
from conftest import data_path, needs_dials, run_program

pytestmark = needs_dials

CASES = [
    ("spot_size_histogram", ["sim_twoexp/indexed.refl"]),
    ("spot_size_histogram", ["centroid_test_data/integrated.refl"]),
    ("spot_size_histogram", ["quartz_processed/integrated.refl", "selection.flags=all"]),
    ("intensity_per_frame", ["sim_twoexp/integrated.expt", "sim_twoexp/integrated.refl"]),
    ("intensity_per_frame", ["ssx_CuNiR/integrated.expt", "ssx_CuNiR/integrated.refl"]),
    ("strong_reflection_positions", ["sim_small/integrated.expt", "sim_small/integrated.refl"]),
    ("strong_reflection_positions", ["quartz_processed/strong.refl"]),
]


@pytest.mark.parametrize("program,inputs", CASES)
def test_fast_reader_and_dials_loader_agree(tmp_path, program, inputs):
    args = [data_path(a) if "=" not in a else a for a in inputs]
    documents = {}
    for reader in ("fast", "dials"):
        result = run_program(
            program,
            *args,
            f"reader={reader}",
            f"json={reader}.json",
            "plot=None",
            f"log={reader}.log",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        documents[reader] = json.loads((tmp_path / f"{reader}.json").read_text())
    fast, dials = documents["fast"], documents["dials"]
    assert [r["reader"] for r in fast["inputs"]["reflections"]] == ["fast"]
    assert [r["reader"] for r in dials["inputs"]["reflections"]] == ["dials"]
    assert fast["results"] == dials["results"]
    assert fast["selection"] == dials["selection"]
