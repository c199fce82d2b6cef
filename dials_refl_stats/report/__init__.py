"""The offline, self-contained, interactive HTML report of program outputs.

``render_report(documents, title)`` -> HTML text; ``write_report(path, documents, title)``.
One section per document, built by the builder registered for its ``program``
(:data:`BUILDERS`, :func:`builder`), else a generic one; :func:`not_computed` makes an
entry for a statistic that was skipped.
"""

from __future__ import annotations

from dials_refl_stats.report.html import MAX_BYTES, ReportTooLarge, render_report, write_report
from dials_refl_stats.report.model import Budget, Content, Table
from dials_refl_stats.report.sections import BUILDERS, builder, not_computed

__all__ = [
    "BUILDERS",
    "MAX_BYTES",
    "Budget",
    "Content",
    "ReportTooLarge",
    "Table",
    "builder",
    "not_computed",
    "render_report",
    "write_report",
]
