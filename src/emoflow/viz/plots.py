"""Static plots (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emoflow.viz.colors import CANONICAL, color

if TYPE_CHECKING:
    from emoflow.results import Result


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
        f"Voice emotion over time (emotion2vec, {tl.window_s:g} s windows every {tl.hop_s:g} s; "
        "shaded: sentences, coloured by their text emotion)",
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_flow(result: Result, path: Path) -> None:
    """The text emotion flow: each sentence's dominant text emotion over time, and its voice emotion."""
    plt, (fig, ax) = _figure(12, 3.2)
    rows = {"words (text)": 1.0, "voice (audio)": 0.0}
    seen: dict[str, str] = {}
    for s in result.sentences:
        a, b = s.sentence.start, s.sentence.end
        for y, scores in ((1.0, s.text_emotion), (0.0, s.audio_emotion)):
            top = scores.top
            ax.barh(y, b - a, left=a, height=0.6, color=color(top), edgecolor="white")
            if b - a > result.source.duration_s / 40:
                ax.text((a + b) / 2, y, top, ha="center", va="center", fontsize=8, color="black")
            seen.setdefault(CANONICAL.get(top, top), color(top))
    ax.set_yticks(list(rows.values()), list(rows.keys()))
    ax.set_xlim(0, result.source.duration_s)
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("time (s)")
    ax.set_title("Emotion flow: dominant emotion per sentence", fontsize=10)
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
        ax.text(result.source.duration_s / 2, 0.5, "no sentences (no speech transcribed)", ha="center")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
