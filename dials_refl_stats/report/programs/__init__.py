"""Section builders of this package's programs; importing this registers them all."""

from __future__ import annotations

from dials_refl_stats.report.programs import frames, per_image, positions, spot_size

__all__ = ["frames", "per_image", "positions", "spot_size"]
