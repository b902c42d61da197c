"""Interactive figures (plotly) for the HTML report.

Figures are built with plotly's graph objects (property names are checked when the figure is
built) and written by plotly's own HTML export (:func:`plotly.io.to_html`): a ``<div>`` and the
``Plotly.newPlot`` call, with the figure's JSON escaped so that no text in it (a sentence, a
label) can end the ``<script>``. plotly.js itself is loaded by the page (see
:mod:`emoflow.viz.assets`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emoflow.viz.colors import color

if TYPE_CHECKING:
    from emoflow.results import Result

TIMELINE_DIV = "timeline"
TIMELINE_HEIGHT_PX = 340
# plotly.js's own defaults (a white plot, no template): the look the report has always had
_CONFIG = {"displaylogo": False, "responsive": True}


def timeline_figure(result: Result) -> Any:
    """The voice's emotions over time (one line per label, at window centres) with the sentences
    as bands coloured by their text emotion, and a dotted play cursor (the last shape)."""
    import plotly.graph_objects as go

    tl = result.timeline
    t = [round(s.middle, 3) for s in tl.spans]
    fig = go.Figure()
    for j, label in enumerate(tl.labels):
        fig.add_trace(
            go.Scatter(
                x=t,
                y=[round(float(x), 4) for x in tl.scores[:, j]],
                name=label,
                mode="lines",
                line={"color": color(label), "width": 2},
                hovertemplate=f"{label} %{{y:.0%}} at %{{x:.1f}} s<extra></extra>",
            )
        )
    bands = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": s.sentence.start,
            "x1": s.sentence.end,
            "y0": 0,
            "y1": 1,
            "fillcolor": color(s.text_emotion.top),
            "opacity": 0.18,
            "line": {"width": 0},
            "layer": "below",
        }
        for s in result.sentences
    ]
    cursor = {
        "type": "line",
        "xref": "x",
        "yref": "paper",
        "x0": 0,
        "x1": 0,
        "y0": 0,
        "y1": 1,
        "line": {"color": "#111", "width": 1, "dash": "dot"},
    }
    fig.update_layout(
        template="none",
        margin={"l": 50, "r": 10, "t": 30, "b": 40},
        xaxis={"title": {"text": "time (s)"}, "range": [0, result.source.duration_s]},
        yaxis={"title": {"text": "voice emotion probability"}, "range": [0, 1], "tickformat": ".0%"},
        shapes=[*bands, cursor],
        # above the plot: below it, the legend ran into the axis title
        legend={"orientation": "h", "x": 0, "y": 1.01, "xanchor": "left", "yanchor": "bottom"},
        hovermode="x unified",
    )
    return fig


def cursor_shape_index(result: Result) -> int:
    """The index of the play cursor in :func:`timeline_figure`'s shapes (after the bands)."""
    return len(result.sentences)


def figure_html(fig: Any, div_id: str, height_px: int) -> str:
    """The figure as an HTML fragment (plotly's export): the plot's ``<div id=div_id>`` and the
    script that draws it; plotly.js must be loaded before it."""
    import plotly.io as pio

    html: str = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=_CONFIG,
        default_width="100%",
        default_height=f"{height_px}px",
        validate=True,
    )
    return html
