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
from emoflow.viz.scores import NO_VOICE_SCORES, NO_VOICE_SCORES_SHORT, has_voice_scores, top, top_score
from emoflow.viz.speakers import SpeakerView, speaker_view

if TYPE_CHECKING:
    from emoflow.results import Result

TIMELINE_DIV = "timeline"
TIMELINE_HEIGHT_PX = 340
LANE_HEIGHT_PX = 64  # one speaker's lane
LANE_TURN_WIDTH = 0.3  # in lanes (the lane pitch is 1): the turn bar, and the emotion strips
LANE_STRIP_WIDTH = 0.22
LANE_STRIP_OFFSET = 0.28
# plotly.js's own defaults (a white plot, no template): the look the report has always had
_CONFIG = {"displaylogo": False, "responsive": True}


def timeline_figure(result: Result) -> Any:
    """The voice's emotions over time (one line per label, at window centres) with the sentences
    as bands coloured by their text emotion, and a dotted play cursor (the last shape).

    A diarised result gets a second panel on the same time axis: one lane per speaker (see
    :func:`_add_speaker_lanes`). Without voice scores the chart says so (:data:`NO_VOICE_SCORES`)."""
    import plotly.graph_objects as go

    view = speaker_view(result)
    if view is None:
        fig = go.Figure()
        band_y: tuple[float, float] = (0.0, 1.0)
    else:
        from plotly.subplots import make_subplots

        fig = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.08,
            row_heights=[TIMELINE_HEIGHT_PX, lanes_height_px(len(view.speakers))],
        )
        lo, hi = fig.layout.yaxis.domain
        band_y = (float(lo), float(hi))
    tl = result.timeline
    t = [round(s.middle, 3) for s in tl.spans]
    for j, label in enumerate(tl.labels):
        fig.add_trace(
            go.Scatter(
                x=t,
                y=[round(float(x), 4) for x in tl.scores[:, j]],
                name=label,
                mode="lines",
                line={"color": color(label), "width": 2},
                hovertemplate=f"{label} %{{y:.0%}} at %{{x:.1f}} s<extra></extra>",
            ),
            **({} if view is None else {"row": 1, "col": 1}),
        )
    bands = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": s.sentence.start,
            "x1": s.sentence.end,
            "y0": band_y[0],
            "y1": band_y[1],
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
        margin={"l": 50 if view is None else 100, "r": 10, "t": 30, "b": 40},
        xaxis={"range": [0, result.source.duration_s]},
        yaxis={"title": {"text": "voice emotion probability"}, "range": [0, 1], "tickformat": ".0%"},
        shapes=[*bands, cursor],
        # above the plot: below it, the legend ran into the axis title
        legend={"orientation": "h", "x": 0, "y": 1.01, "xanchor": "left", "yanchor": "bottom"},
        hovermode="x unified",
    )
    if not has_voice_scores(result):
        fig.add_annotation(
            text=NO_VOICE_SCORES,
            xref="paper",
            yref="paper",
            x=0.5,
            y=(band_y[0] + band_y[1]) / 2,
            showarrow=False,
            font={"color": "#555", "size": 13},
        )
    if view is None:
        fig.update_layout(xaxis={"title": {"text": "time (s)"}})
    else:
        _add_speaker_lanes(fig, result, view)
    return fig


def lanes_height_px(n_speakers: int) -> int:
    """The speaker panel's height: a lane of ``LANE_HEIGHT_PX`` per speaker and room for the axis."""
    return LANE_HEIGHT_PX * max(1, n_speakers) + 50


def figure_height_px(result: Result) -> int:
    """The timeline figure's height: the emotion panel, and the speaker lanes when diarised."""
    view = speaker_view(result)
    return TIMELINE_HEIGHT_PX + (0 if view is None else lanes_height_px(len(view.speakers)) + 20)


def _add_speaker_lanes(fig: Any, result: Result, view: SpeakerView) -> None:
    """One lane per speaker in the second panel, top to bottom in order of first appearance: the
    speaker's turns as a bar in the speaker's colour, with a strip above it coloured by the text
    emotion of each of their sentences and one below by its voice emotion (hover: the sentence).
    Every bar's ``customdata`` starts with its start time (a click seeks there)."""
    import plotly.graph_objects as go

    colors = view.colors
    for k, spk in enumerate(view.speakers):
        y = -k
        turns = [t for t in view.turns if t.speaker == spk]
        if not turns:  # speakers known only from their sentences: their sentences' spans
            turns_spans = [result.sentences[i].sentence.span for i in view.sentences_of(spk)]
        else:
            turns_spans = [t.span for t in turns]
        fig.add_trace(
            go.Bar(
                orientation="h",
                y=[y] * len(turns_spans),
                base=[round(sp.start, 3) for sp in turns_spans],
                x=[round(sp.duration, 3) for sp in turns_spans],
                customdata=[[round(sp.start, 3), round(sp.end, 3)] for sp in turns_spans],
                width=LANE_TURN_WIDTH,
                marker={"color": colors[spk], "line": {"width": 0}},
                name=spk,
                meta="turns",
                showlegend=False,
                hovertemplate=f"{spk} speaks %{{customdata[0]:.1f}}–%{{customdata[1]:.1f}} s<extra></extra>",
            ),
            row=2,
            col=1,
        )
        idx = view.sentences_of(spk)
        for offset, what in ((LANE_STRIP_OFFSET, "text"), (-LANE_STRIP_OFFSET, "voice")):
            colours, hover = [], []
            for i in idx:
                s = result.sentences[i]
                scores = s.text_emotion if what == "text" else s.audio_emotion
                label = top(scores)
                colours.append(color(label) if label else "#E5E5E5")
                score = top_score(scores)
                known = label is not None and score is not None
                hover.append(f"{label} {score:.0%}" if known else NO_VOICE_SCORES_SHORT)
            fig.add_trace(
                go.Bar(
                    orientation="h",
                    y=[y + offset] * len(idx),
                    base=[round(result.sentences[i].sentence.start, 3) for i in idx],
                    x=[round(result.sentences[i].sentence.span.duration, 3) for i in idx],
                    customdata=[
                        [
                            round(result.sentences[i].sentence.start, 3),
                            round(result.sentences[i].sentence.end, 3),
                            result.sentences[i].sentence.index + 1,
                            h,
                            _short(result.sentences[i].sentence.text),
                        ]
                        for i, h in zip(idx, hover, strict=True)
                    ],
                    width=LANE_STRIP_WIDTH,
                    marker={"color": colours, "line": {"width": 0.5, "color": "white"}},
                    name=f"{spk} {what}",
                    meta=what,
                    showlegend=False,
                    hovertemplate=(
                        f"{spk} #%{{customdata[2]}} {what}: %{{customdata[3]}}"
                        "<br>%{customdata[4]}<extra></extra>"
                    ),
                ),
                row=2,
                col=1,
            )
    n = len(view.speakers)
    fig.update_layout(barmode="overlay", bargap=0)
    fig.update_xaxes(title={"text": "time (s)"}, range=[0, result.source.duration_s], row=2, col=1)
    fig.update_yaxes(
        tickvals=[-k for k in range(n)],
        ticktext=[f"<b style='color:{colors[s]}'>{s}</b>" for s in view.speakers],
        range=[-(n - 1) - 0.5, 0.5],
        showgrid=False,
        zeroline=False,
        fixedrange=True,
        row=2,
        col=1,
    )


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


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
