"""Every statistic of the suite by name, with default parameters (for tests and reports)."""

from __future__ import annotations

from typing import Callable

from dials_refl_stats.analysis.rows import SelectedRows
from dials_refl_stats.analysis.spot_size import SpotSizeStatistic
from dials_refl_stats.analysis.statistic import Statistic


def registered_statistics() -> dict[str, Callable[[], Statistic]]:
    """Statistic name -> factory giving it with default parameters."""
    from dials_refl_stats.analysis.intensity_frames import (
        IntensityColumns,
        IntensityFramesStatistic,
    )
    from dials_refl_stats.analysis.per_image import PerImageStatistic
    from dials_refl_stats.selection import FlagSelection

    def intensity_per_frame() -> Statistic:
        every = FlagSelection(names=("all",))
        columns = IntensityColumns("sum", "intensity.sum.value", "intensity.sum.variance", every)
        return IntensityFramesStatistic([columns], "xyzobs.px.value", 1, points=True)

    return {
        "spot_size": SpotSizeStatistic,
        "selected_rows": lambda: SelectedRows(("xyzobs.px.value", "intensity.sum.value")),
        "per_image": PerImageStatistic,
        "intensity_per_frame": intensity_per_frame,
    }
