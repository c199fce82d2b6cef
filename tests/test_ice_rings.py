"""The ice rings of DIALS's per-image analysis, made without DIALS, against DIALS's
``PowderRingFilter`` (as ``stats_for_reflection_table`` makes it), and the shipped table."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import data_path, needs_dials

from dials_refl_stats.analysis import ice_rings
from dials_refl_stats.analysis.per_image_analysis import ICE_HALF_WIDTH, ice_ring_bound

pytestmark = needs_dials


def dials_rings(d_min: float) -> np.ndarray:
    from cctbx import sgtbx, uctbx
    from dials.algorithms.integration.filtering import PowderRingFilter

    unit_cell = uctbx.unit_cell((4.498, 4.498, 7.338, 90, 90, 120))
    space_group = sgtbx.space_group_info(number=194).group()
    return np.array(PowderRingFilter(unit_cell, space_group, d_min, 2 * ICE_HALF_WIDTH).d_star_sq)


@pytest.mark.parametrize("d_min", [0.05, 0.0731, 0.1, 0.2, 0.37, 1.0, 2.5, 3.9])
def test_rings_equal_dials_filter(d_min):
    assert np.array_equal(ice_rings.powder_ring_d_star_sq(d_min), dials_rings(d_min))


def test_shipped_table_is_the_rings_down_to_its_d_min(tmp_path):
    shipped = np.load(ice_rings.TABLE_PATH)
    assert shipped.dtype == np.float64 and shipped.size > 3000
    assert np.array_equal(shipped, dials_rings(ice_rings.TABLE_D_MIN))
    ice_rings.write_table(tmp_path / "table.npy")  # what regenerating it would write
    assert (tmp_path / "table.npy").read_bytes() == ice_rings.TABLE_PATH.read_bytes()


def test_rings_served_for_any_d_min_cut_at_its_bound_are_dials_rings(monkeypatch):
    """Whatever superset is at hand (the table, or rings made further than asked), the
    rings up to an image's bound are those DIALS makes for that image's smallest d."""
    monkeypatch.setattr(ice_rings, "_RINGS", [np.inf, None])
    for d_min in [3.0, 0.2, 1.7, 0.15, 0.8, 0.06, 0.5, 0.05, 12.0]:
        rings = ice_rings.ice_rings(d_min)
        ours = rings[: np.searchsorted(rings, ice_ring_bound(d_min), "right")]
        assert np.array_equal(ours, dials_rings(d_min)), d_min


@pytest.mark.parametrize("d_min", [0.0499, 1e-300, 0.0, float("nan")])
def test_no_rings_below_the_lowest_d(d_min):
    with pytest.raises(ValueError, match="ice rings are made down to 0.05"):
        ice_rings.ice_rings(d_min)


def test_a_per_image_run_imports_neither_dials_flex_nor_its_filter(tmp_path):
    """The analysis runs without DIALS's flex (~0.3 s of imports) when every image is in
    the port's domain; the rings come from the shipped table, without cctbx.miller."""
    code = (
        "import sys\n"
        "from dials_refl_stats.command_line.per_image_statistics import run\n"
        f"run([{str(data_path('sim_small/imported.expt'))!r}, "
        f"{str(data_path('sim_small/strong.refl'))!r}, 'output.plot=None'])\n"
        "print(sorted(m for m in ('dials.array_family.flex', 'pandas', 'cctbx.miller',\n"
        "    'dials.algorithms.integration.filtering') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
    per_image = json.loads((tmp_path / "per_image_statistics.json").read_text())["results"][
        "per_image"
    ]
    assert max(per_image["estimated_d_min"]) > 0  # the analysis ran
    assert sum(per_image["n_spots_no_ice"]) < sum(per_image["n_selected"])  # spots on rings
