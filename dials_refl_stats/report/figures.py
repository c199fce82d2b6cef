"""Plotly figures as plain dicts (``{"data": [...], "layout": {...}}``), from results only.

Text that may come from files (labels, paths) goes through :func:`ptext`: plotly renders a
subset of HTML in titles, legends and hover labels, so ``<``, ``>`` and ``&`` are escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

#: Colours for series, groups and statistics (colour-blind friendly, Okabe-Ito).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
)


def ptext(text: Any) -> str:
    """``text`` safe for plotly's HTML-like labels."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass
class Figure:
    """One interactive plot: plotly traces and layout; ``note`` says how data were thinned."""

    data: list[dict]
    layout: dict
    note: str = ""
    height: int = 380
    extra: dict = field(default_factory=dict)

    def spec(self) -> dict:
        """The JSON given to ``Plotly.newPlot``."""
        layout = dict(self.layout)
        layout.setdefault("height", self.height)
        if self.note:
            title = layout.get("title", {}).get("text", "")
            layout["title"] = {
                "text": f"{title}<br><span style='font-size:11px;color:#a04000'>"
                f"{ptext(self.note)}</span>",
                "x": 0.01,
                "xanchor": "left",
            }
        return {"data": self.data, "layout": layout}


def layout(title: str, xtitle: str, ytitle: str, **extra) -> dict:
    """A plain layout: left-aligned title, labelled axes, legend above the plot area."""
    base = {
        "title": {"text": ptext(title), "x": 0.01, "xanchor": "left"},
        "xaxis": {"title": {"text": ptext(xtitle)}, "zeroline": False},
        "yaxis": {"title": {"text": ptext(ytitle)}, "zeroline": False},
        "margin": {"l": 70, "r": 30, "t": 80, "b": 50},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.3, "x": 0},
        "hovermode": "closest",
        "plot_bgcolor": "#fafafa",
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def empty_note(text: str) -> dict:
    """A layout ``annotations`` entry centred on an empty plot."""
    return {
        "text": ptext(text),
        "xref": "paper",
        "yref": "paper",
        "x": 0.5,
        "y": 0.5,
        "showarrow": False,
        "font": {"size": 15, "color": "#8a4b00"},
    }


def scale_buttons(initial: str = "linear", axis: str = "yaxis") -> list[dict]:
    """An ``updatemenus`` entry switching ``axis`` between linear and log scale."""
    order = ["linear", "log"] if initial == "linear" else ["log", "linear"]
    return [
        {
            "type": "buttons",
            "direction": "left",
            "x": 1.0,
            "xanchor": "right",
            "y": 1.12,
            "yanchor": "bottom",
            "showactive": True,
            "buttons": [
                {"label": f"{s} {axis[0]}", "method": "relayout", "args": [{f"{axis}.type": s}]}
                for s in order
            ],
        }
    ]


def bars(x: Sequence, y: Sequence, name: str, index: int = 0, **extra) -> dict:
    trace = {
        "type": "bar",
        "x": list(x),
        "y": list(y),
        "name": ptext(name),
        "marker": {"color": colour(index)},
    }
    trace.update(extra)
    return trace


def lines(x: Sequence, y: Sequence, name: str, index: int = 0, **extra) -> dict:
    """A line trace; ``None`` in ``y`` breaks the line (``connectgaps`` off)."""
    n = len(x)
    trace = {
        "type": "scatter",
        "mode": "lines+markers" if n <= 200 else "lines",
        "x": list(x),
        "y": list(y),
        "name": ptext(name),
        "connectgaps": False,
        "line": {"color": colour(index), "width": 1.5},
        "marker": {"size": 4},
    }
    trace.update(extra)
    return trace


def heatmap(x: Sequence, y: Sequence, z: Sequence, name: str, **extra) -> dict:
    trace = {
        "type": "heatmap",
        "x": list(x),
        "y": list(y),
        "z": z,
        "name": ptext(name),
        "colorscale": "Viridis",
        "zmin": 0,
        "colorbar": {"title": {"text": "count"}},
        "hovertemplate": "x %{x} px<br>y %{y} px<br>count %{z}<extra></extra>",
    }
    trace.update(extra)
    return trace


def vertical_lines(xs) -> list[dict]:
    """Dashed grey vertical lines across the plot at ``xs`` (plotly layout shapes)."""
    return [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": x,
            "x1": x,
            "y0": 0,
            "y1": 1,
            "line": {"dash": "dash", "color": "#888", "width": 1},
        }
        for x in xs
    ]
