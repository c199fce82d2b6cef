"""Matplotlib figures, Agg backend (never a window); one module per program's plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

PLOT_FORMATS = ("png", "svg", "pdf")


def plot_format(path: str) -> str:
    """The format implied by ``path``'s suffix; ``ValueError`` when unsupported."""
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix not in PLOT_FORMATS:
        raise ValueError(f"{path}: unsupported plot format '{suffix}' (use .png, .svg or .pdf)")
    return suffix


def save(figure, path: str, format_from: str) -> None:
    """Save and close ``figure``; the format comes from ``format_from``'s suffix."""
    figure.savefig(path, format=plot_format(format_from), dpi=150)
    plt.close(figure)
