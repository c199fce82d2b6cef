"""DIALS's user-error exception, with a stand-in when DIALS is absent (workers, library)."""

from __future__ import annotations

try:
    from dials.util import Sorry
except ImportError:  # pragma: no cover - statistics and workers run without DIALS

    class Sorry(Exception):  # type: ignore[no-redef]
        """Stand-in for ``dials.util.Sorry`` when DIALS is absent."""


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters written as escapes (a
    message quoting a corrupt file's strings stays one line)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


__all__ = ["Sorry", "one_line"]
