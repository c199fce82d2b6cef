"""One self-contained HTML file: plotly.js inlined once, figures as JSON, no network.

The page records its own health on ``<body>`` for tests and users alike:
``data-plots-expected``, ``data-plots-rendered``, ``data-js-errors`` (and a visible list
of errors), ``data-report-ready`` once every plot has rendered or failed.
"""

from __future__ import annotations

import functools
import json
import os
import pkgutil
import secrets
from dataclasses import dataclass, replace
from typing import Sequence

import jinja2
from markupsafe import Markup

from dials_refl_stats import __version__
from dials_refl_stats.output import atomic_path
from dials_refl_stats.report import programs  # noqa: F401 - registers the builders
from dials_refl_stats.report.model import Budget
from dials_refl_stats.report.sections import Section, build_section

#: Upper bound of a report's size in bytes, plotly.js included.
MAX_BYTES = 6_000_000

#: Most renderings tried with smaller budgets before giving up.
MAX_ATTEMPTS = 5


class ReportTooLarge(ValueError):
    """Even the smallest budget gives a report above ``MAX_BYTES`` (too many documents)."""


#: Where the ``plotly`` package keeps its minified plotly.js (``get_plotlyjs`` reads it).
PLOTLY_JS_DATA = "package_data/plotly.min.js"


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """The minified plotly.js bundled with the PyPI ``plotly`` package (MIT licence):
    the file ``plotly.offline.get_plotlyjs`` reads, read without importing
    ``plotly.offline`` (~0.2 s), or through it where the file is elsewhere."""
    try:
        data = pkgutil.get_data("plotly", PLOTLY_JS_DATA)
    except ImportError as error:  # pragma: no cover
        raise RuntimeError(
            "the HTML report needs the 'plotly' package (pip install plotly)"
        ) from error
    except OSError:  # pragma: no cover - another layout: plotly's own reader
        data = None
    if data is not None:
        js = data.decode("utf-8")
    else:  # pragma: no cover
        from plotly.offline import get_plotlyjs

        js = get_plotlyjs()
    if "</script" in js.lower():  # pragma: no cover - would end the inline <script> early
        raise RuntimeError("plotly.js contains '</script' and cannot be inlined")
    return js


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("dials_refl_stats.report", "."),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("template.html.j2")


def script_json(value) -> Markup:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&``."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


@dataclass
class Rendered:
    html: str
    budget: Budget
    sections: list[Section]


def _render(documents: Sequence[dict], title: str, budget: Budget) -> Rendered:
    sections = [build_section(d, i, budget) for i, d in enumerate(documents)]
    figures, placed = [], []
    for section in sections:
        ids = []
        for figure in section.content.figures:
            ids.append(len(figures))
            figures.append(figure.spec())
        placed.append(ids)
    html = _template().render(
        title=title,
        version=__version__,
        sections=list(zip(sections, placed)),
        n_figures=len(figures),
        figures_json=script_json(figures),
        plotly_js=Markup(plotly_js()),
        nonce=secrets.token_urlsafe(16),
    )
    return Rendered(html, budget, sections)


def render_report(
    documents: Sequence[dict],
    title: str = "DIALS reflection statistics",
    *,
    budget: Budget | None = None,
    max_bytes: int = MAX_BYTES,
) -> str:
    """The report of ``documents`` (program outputs, or :func:`not_computed` entries) as
    one self-contained HTML page of at most ``max_bytes`` bytes (UTF-8).

    Plots and tables are built from the documents' pre-binned results; when the page
    would be too big, the budget shrinks (more bins merged, fewer rows) and says so.
    """
    budget = budget or Budget()
    fixed = len(plotly_js().encode("utf-8"))
    fraction, size = 1.0, 0
    for attempt in range(MAX_ATTEMPTS):
        trial = budget.scaled(fraction)
        if attempt == MAX_ATTEMPTS - 1:
            trial = replace(trial, compact=True)
        html = _render(documents, title, trial).html
        size = len(html.encode("utf-8"))
        if size <= max_bytes:
            return html
        # The data part scales about linearly with the budget: aim 10 % below the limit.
        fraction *= max(0.01, min(0.7, 0.9 * (max_bytes - fixed) / max(1, size - fixed)))
    raise ReportTooLarge(
        f"the report of {len(documents)} documents is {size} bytes, above {max_bytes}"
    )


def write_report(
    path: str | os.PathLike,
    documents: Sequence[dict],
    title: str = "DIALS reflection statistics",
    **kwargs,
) -> None:
    """Write :func:`render_report` to ``path`` atomically (temporary file, then rename)."""
    html = render_report(documents, title, **kwargs)
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(html)
