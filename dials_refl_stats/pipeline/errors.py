"""DIALS's user-error exception, with a stand-in when DIALS is absent (workers, library)."""

from __future__ import annotations

try:
    from dials.util import Sorry
except ImportError:  # pragma: no cover - statistics and workers run without DIALS

    class Sorry(Exception):  # type: ignore[no-redef]
        """Stand-in for ``dials.util.Sorry`` when DIALS is absent."""


__all__ = ["Sorry"]
