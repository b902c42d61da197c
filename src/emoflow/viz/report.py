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
from emoflow.viz.scores import NO_VOICE_SCORES, NO_VOICE_SCORES_SHORT, has_voice_scores, top, top_score
from emoflow.viz.speakers import SpeakerView, speaker_view

if TYPE_CHECKING:
    import jinja2

    from emoflow.results import Result
    from emoflow.types import EmotionScores

TEMPLATE = "report.html.j2"
NO_SCORES_COLOR = "#E5E5E5"
CHANGE_SHOWN = 0.05  # a speaker's mean score moving less than this is not listed as a change


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
    """What the page's script reads (the ``emoflow-data`` element): the sentences (with their
    speaker when diarised), and where the chart's play cursor is. The chart's own data is in the
    figure."""
    from emoflow.viz.figures import cursor_shape_index

    view = speaker_view(result)
    sentences = []
    for i, s in enumerate(result.sentences):
        d = s.to_dict()
        sentences.append(
            {k: d[k] for k in ("index", "start", "end", "text", "sequence")}
            | {
                "text_top": s.text_emotion.top,
                "audio_top": top(s.audio_emotion),  # null: no voice scores
                "color": color(s.text_emotion.top),
            }
            | ({} if view is None else {"speaker": view.sentence_speakers[i]})
        )
    data: dict[str, Any] = {
        "duration": result.source.duration_s,
        "cursor_shape": cursor_shape_index(result),
        "sentences": sentences,
    }
    if view is not None:
        data["speakers"] = list(view.speakers)
    return data


def _clock(t: float) -> str:
    m, s = divmod(t, 60)
    return f"{int(m)}:{s:05.2f}"


def _chip(label: str | None, score: float | None = None) -> dict[str, str]:
    """A coloured label; ``None``: no scores (a voice model without a classification head)."""
    if label is None:
        return {"label": NO_VOICE_SCORES_SHORT, "color": NO_SCORES_COLOR, "score": ""}
    return {"label": label, "color": color(label), "score": "" if score is None else f" {score:.0%}"}


def _scores_chip(scores: EmotionScores) -> dict[str, str]:
    return _chip(top(scores), top_score(scores))


def _pct(x: float) -> str:
    return f"{x:+.0%}".replace("+0%", "±0%").replace("-0%", "±0%")


def _change(change: dict[str, float]) -> str:
    """The largest rises and falls of a speaker's mean scores from the first to the last stretch
    of the recording they spoke in (``+40% joy, -35% neutral``); empty when nothing moved 5%."""
    moved = sorted(((v, k) for k, v in change.items() if abs(v) >= CHANGE_SHOWN), key=lambda p: -abs(p[0]))
    return ", ".join(f"{_pct(v)} {k}" for v, k in moved[:3])


_DASH = {"label": "—", "color": "transparent", "score": ""}


def _dominant(label: str | None, num_sentences: int) -> dict[str, str]:
    if label is None and num_sentences == 0:
        return _DASH
    return _chip(label)


def _trend(labels: list[str | None]) -> list[dict[str, str]]:
    """The dominant emotion in each stretch of the recording (``—`` where the speaker was silent)."""
    return [_chip(x) if x is not None else _DASH for x in labels]


def speaker_rows(view: SpeakerView) -> list[dict[str, Any]]:
    """The speakers summary table: one row per speaker from ``SpeakerSummary.to_dict()``."""
    colors = view.colors
    rows = []
    for d in view.summary_rows():
        trend = d["dominant_trend"]
        rows.append(
            {
                "speaker": d["speaker"],
                "color": colors.get(d["speaker"], "#444444"),
                "talk_time": _clock(float(d["talk_time_s"])),
                "talk_time_s": f"{float(d['talk_time_s']):.1f}",
                "share": f"{float(d['share']):.0%}",
                "sentences": int(d["num_sentences"]),
                # no dominant voice emotion: silent in the sentences, or a voice model without scores
                "voice": _dominant(d["dominant_voice"], d["num_sentences"]),
                "text": _dominant(d["dominant_text"], d["num_sentences"]),
                "voice_trend": _trend(trend["voice"]) if any(trend["voice"]) else [],
                "text_trend": _trend(trend["text"]) if any(trend["text"]) else [],
                "voice_change": _change(d["voice_change"]),
                "text_change": _change(d["text_change"]),
            }
        )
    return rows


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
    from emoflow.viz.figures import TIMELINE_DIV, figure_height_px, figure_html, timeline_figure

    view = speaker_view(result)
    voice = has_voice_scores(result)
    colors = view.colors if view is not None else {}
    return {
        "name": Path(result.source.path).name if result.source.path else "recording",
        "duration_s": result.source.duration_s,
        "n_sentences": len(result.sentences),
        "utterance": _scores_chip(result.utterance.scores),
        "voice_scores": voice,
        "no_voice_scores": NO_VOICE_SCORES,
        "models": [(name, p.id) for name, p in result.models.items()],
        "audio": _audio_data_uri(result.audio_samples),
        "plotly_src": plotly_src,
        # plotly's own minified source and plotly's export of the figure (its JSON escaped by plotly)
        "plotly_js": None if plotly_src else Markup(plotly_js()),
        "timeline": Markup(figure_html(timeline_figure(result), TIMELINE_DIV, figure_height_px(result))),
        "window_s": f"{result.timeline.window_s:g}",
        "legend": [_chip(k) for k in PALETTE],
        "rows": [
            {
                "index": s.sentence.index,
                "start": f"{s.sentence.start:.3f}",
                "start_clock": _clock(s.sentence.start),
                "end_clock": _clock(s.sentence.end),
                "text": s.sentence.text,
                "text_emotion": _scores_chip(s.text_emotion),
                "audio_emotion": _scores_chip(s.audio_emotion),
                "sequence": s.sequence,
                "speaker": view.sentence_speakers[i] if view is not None else None,
                "speaker_color": colors.get(view.sentence_speakers[i] or "", "#444444") if view else "",
            }
            for i, s in enumerate(result.sentences)
        ],
        # diarised: the speakers (lanes in the chart, a summary table, a filter over the sentences)
        "speakers": [] if view is None else [{"name": k, "color": colors[k]} for k in view.speakers],
        "speaker_rows": [] if view is None else speaker_rows(view),
        "change_shown": f"{CHANGE_SHOWN:.0%}",
        "data_json": Markup(_script_json(report_data(result) | {"plotly_src": plotly_src})),
    }


def render_report(result: Result, *, plotly_src: str | None = None) -> str:
    """The report page. ``plotly_src``: load plotly.js from this URL (relative to the page)
    instead of inlining it."""
    return _environment().get_template(TEMPLATE).render(report_context(result, plotly_src=plotly_src))


def write_report(result: Result, path: Path, *, plotly_src: str | None = None) -> None:
    Path(path).write_text(render_report(result, plotly_src=plotly_src), encoding="utf-8")
