"""Static plots (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emoflow.viz.colors import CANONICAL, color
from emoflow.viz.scores import NO_VOICE_SCORES, has_voice_scores, top
from emoflow.viz.speakers import SpeakerView, speaker_view

if TYPE_CHECKING:
    from emoflow.results import Result
    from emoflow.types import TimeSpan

NO_SCORES_COLOR = "#E5E5E5"


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.subplots(figsize=(width, height), dpi=110)


def plot_timeline(result: Result, path: Path) -> None:
    """Audio emotion probabilities over time (window centres), sentence spans shaded."""
    tl = result.timeline
    plt, (fig, ax) = _figure(12, 4.2)
    centres = np.array([(s.start + s.end) / 2 for s in tl.spans])
    for s in result.sentences:
        ax.axvspan(s.sentence.start, s.sentence.end, color=color(s.text_emotion.top), alpha=0.12, lw=0)
        ax.axvline(s.sentence.start, color="#555555", lw=0.6, ls=":")
        ax.axvline(s.sentence.end, color="#555555", lw=0.6, ls=":")
    for j, label in enumerate(tl.labels):
        if label == "unknown" and tl.scores[:, j].max() < 0.05:
            continue
        style = "-o" if len(centres) < 40 else "-"
        ax.plot(centres, tl.scores[:, j], style, ms=3, lw=1.6, color=color(label), label=label)
    ax.set_xlim(0, result.source.duration_s)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("audio emotion probability")
    ax.set_title(
        f"Voice emotion over time ({tl.window_s:g} s windows every {tl.hop_s:g} s; "
        "shaded: sentences, coloured by their text emotion)",
        fontsize=10,
    )
    if tl.labels:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    else:
        note = NO_VOICE_SCORES.replace(" (", "\n(", 1)
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_flow(result: Result, path: Path) -> None:
    """The emotion flow: each sentence's dominant text emotion over time, and its voice emotion.
    A diarised result gets one lane per speaker (:func:`_plot_speaker_lanes`)."""
    view = speaker_view(result)
    if view is not None:
        _plot_speaker_lanes(result, view, path)
        return
    plt, (fig, ax) = _figure(12, 3.2)
    rows = {"words (text)": 1.0, "voice (audio)": 0.0}
    seen: dict[str, str] = {}
    for s in result.sentences:
        for y, scores in ((1.0, s.text_emotion), (0.0, s.audio_emotion)):
            _sentence_bar(ax, result, s.sentence.span, y, 0.6, top(scores), seen)
    ax.set_yticks(list(rows.values()), list(rows.keys()))
    ax.set_ylim(-0.6, 1.6)
    _finish_flow(plt, fig, ax, result, seen, path, "Emotion flow: dominant emotion per sentence")


def _sentence_bar(
    ax: Any, result: Result, span: TimeSpan, y: float, height: float, label: str | None, seen: dict[str, str]
) -> None:
    """One sentence's bar in the flow, coloured and (when wide enough) named by ``label``;
    ``None``: no scores (grey, "no scores")."""
    a, b = span.start, span.end
    c = color(label) if label is not None else NO_SCORES_COLOR
    ax.barh(y, b - a, left=a, height=height, color=c, edgecolor="white")
    if b - a > result.source.duration_s / 40:
        name = label if label is not None else "no scores"
        ax.text((a + b) / 2, y, name, ha="center", va="center", fontsize=7 if height < 0.5 else 8)
    if label is not None:
        seen.setdefault(CANONICAL.get(label, label), c)


def _finish_flow(
    plt: Any, fig: Any, ax: Any, result: Result, seen: dict[str, str], path: Path, title: str
) -> None:
    """Axis, title (with the no-voice-scores note), legend of the emotions shown; saved."""
    ax.set_xlim(0, result.source.duration_s)
    ax.set_xlabel("time (s)")
    if not has_voice_scores(result):
        title += f"\n{NO_VOICE_SCORES}"
    ax.set_title(title, fontsize=9)
    if seen:
        from matplotlib.patches import Patch

        ax.legend(
            handles=[Patch(color=c, label=k) for k, c in seen.items()],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            fontsize=8,
            frameon=False,
        )
    if not result.sentences:
        ymid = sum(ax.get_ylim()) / 2
        ax.text(result.source.duration_s / 2, ymid, "no sentences (no speech transcribed)", ha="center")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_speaker_lanes(result: Result, view: SpeakerView, path: Path) -> None:
    """One lane per speaker, top to bottom in order of first appearance: their turns as a bar in
    the speaker's colour, each of their sentences' text emotion above it and voice emotion below."""
    n = len(view.speakers)
    plt, (fig, ax) = _figure(12, 1.6 + 1.1 * n)
    colors = view.colors
    seen: dict[str, str] = {}
    for k, spk in enumerate(view.speakers):
        y = -float(k)
        spans = [t.span for t in view.turns if t.speaker == spk] or [
            result.sentences[i].sentence.span for i in view.sentences_of(spk)
        ]
        for sp in spans:
            ax.barh(y, sp.duration, left=sp.start, height=0.22, color=colors[spk], edgecolor="none")
        for i in view.sentences_of(spk):
            s = result.sentences[i]
            _sentence_bar(ax, result, s.sentence.span, y + 0.27, 0.3, top(s.text_emotion), seen)
            _sentence_bar(ax, result, s.sentence.span, y - 0.27, 0.3, top(s.audio_emotion), seen)
    ax.set_yticks([-float(k) for k in range(n)], list(view.speakers))
    for tick, spk in zip(ax.get_yticklabels(), view.speakers, strict=True):
        tick.set_color(colors[spk])
        tick.set_fontweight("bold")
    ax.set_ylim(-(n - 1) - 0.6, 0.6)
    _finish_flow(
        plt,
        fig,
        ax,
        result,
        seen,
        path,
        "Speakers: turns (bar in the speaker's colour); each sentence's text emotion above, "
        "its voice emotion below",
    )
