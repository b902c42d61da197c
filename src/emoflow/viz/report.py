"""The HTML report: one page that needs no network (styles, scripts, data and audio inside it).

An interactive timeline of the voice's emotions (plotly, :mod:`emoflow.viz.figures`) with the
sentences as bands coloured by their text emotion, the sentence table (times, text, both
modalities' top emotions, the emotion sequence), and an audio player: clicking a sentence (in
the table or on the chart) seeks the player to its start.

The page is the Jinja2 template ``templates/report.html.j2`` (with ``report.css`` and
``report.js`` beside it); this module only prepares what it shows. plotly.js is inlined unless
``plotly_src`` names a shared copy (:mod:`emoflow.viz.assets`).
"""

from __future__ import annotations

import base64
import functools
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emoflow.viz.colors import PALETTE, color

if TYPE_CHECKING:
    import jinja2

    from emoflow.results import Result

TEMPLATE = "report.html.j2"


def _audio_data_uri(samples: np.ndarray | None) -> str | None:
    """The recording as Ogg Vorbis (16 kHz mono, about 5 kB/s) in a data URI."""
    if samples is None or len(samples) == 0:
        return None
    import soundfile as sf

    buf = io.BytesIO()
    # block by block: libsndfile's Vorbis encoder overflows its stack on one large write (segfault)
    with sf.SoundFile(buf, "w", 16000, 1, format="OGG", subtype="VORBIS") as f:
        for i in range(0, len(samples), 1 << 15):
            f.write(np.clip(samples[i : i + (1 << 15)], -1, 1))
    return "data:audio/ogg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# Inside <script> the HTML parser, not JSON, decides where the script ends: "</script>",
# "<!--" and "<script" in a word all change how it reads on. JSON may write any character
# as \uXXXX, so writing <, > and & that way leaves nothing for the HTML parser to see.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (``JSON.parse`` of its text gives ``data``)."""
    return json.dumps(data, ensure_ascii=False).translate(_SCRIPT_ESCAPES)


def report_data(result: Result) -> dict[str, Any]:
    """What the page's script reads (the ``emoflow-data`` element): the sentences, and where the
    chart's play cursor is. The chart's own data is in the figure."""
    from emoflow.viz.figures import cursor_shape_index

    sentences = []
    for s in result.sentences:
        d = s.to_dict()
        sentences.append(
            {k: d[k] for k in ("index", "start", "end", "text", "sequence")}
            | {
                "text_top": s.text_emotion.top,
                "audio_top": s.audio_emotion.top,
                "color": color(s.text_emotion.top),
            }
        )
    return {
        "duration": result.source.duration_s,
        "cursor_shape": cursor_shape_index(result),
        "sentences": sentences,
    }


def _clock(t: float) -> str:
    m, s = divmod(t, 60)
    return f"{int(m)}:{s:05.2f}"


def _chip(label: str, score: float | None = None) -> dict[str, str]:
    return {"label": label, "color": color(label), "score": "" if score is None else f" {score:.0%}"}


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("emoflow.viz", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def report_context(result: Result, *, plotly_src: str | None = None) -> dict[str, Any]:
    """The template's variables. ``plotly_src``: a URL of plotly.js to load (relative to the
    page); None inlines plotly.js."""
    from markupsafe import Markup

    from emoflow.viz.assets import plotly_js
    from emoflow.viz.figures import TIMELINE_DIV, TIMELINE_HEIGHT_PX, figure_html, timeline_figure

    utt = result.utterance.scores
    return {
        "name": Path(result.source.path).name if result.source.path else "recording",
        "duration_s": result.source.duration_s,
        "n_sentences": len(result.sentences),
        "utterance": _chip(utt.top, max(utt.scores)),
        "models": [(name, p.id) for name, p in result.models.items()],
        "audio": _audio_data_uri(result.audio_samples),
        "plotly_src": plotly_src,
        # plotly's own minified source and plotly's export of the figure (its JSON escaped by plotly)
        "plotly_js": None if plotly_src else Markup(plotly_js()),
        "timeline": Markup(figure_html(timeline_figure(result), TIMELINE_DIV, TIMELINE_HEIGHT_PX)),
        "window_s": f"{result.timeline.window_s:g}",
        "legend": [_chip(k) for k in PALETTE],
        "rows": [
            {
                "index": s.sentence.index,
                "start": f"{s.sentence.start:.3f}",
                "start_clock": _clock(s.sentence.start),
                "end_clock": _clock(s.sentence.end),
                "text": s.sentence.text,
                "text_emotion": _chip(s.text_emotion.top, max(s.text_emotion.scores)),
                "audio_emotion": _chip(s.audio_emotion.top, max(s.audio_emotion.scores)),
                "sequence": s.sequence,
            }
            for s in result.sentences
        ],
        "data_json": Markup(_script_json(report_data(result) | {"plotly_src": plotly_src})),
    }


def render_report(result: Result, *, plotly_src: str | None = None) -> str:
    """The report page. ``plotly_src``: load plotly.js from this URL (relative to the page)
    instead of inlining it."""
    return _environment().get_template(TEMPLATE).render(report_context(result, plotly_src=plotly_src))


def write_report(result: Result, path: Path, *, plotly_src: str | None = None) -> None:
    Path(path).write_text(render_report(result, plotly_src=plotly_src), encoding="utf-8")
