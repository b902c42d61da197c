"""The transcription stage's contract and settings."""

from __future__ import annotations

from collections.abc import Sequence

from emoflow.types import TimeSpan


def group_regions(
    speech: Sequence[TimeSpan],
    max_segment_s: float,
    max_gap_s: float,
    pad_s: float = 0.2,
    duration: float | None = None,
) -> list[TimeSpan]:
    """Speech regions merged into pieces for the recogniser: neighbours closer than
    ``max_gap_s`` join while the piece stays under ``max_segment_s``; each piece gets
    ``pad_s`` of context on both sides (a lead-in or tail shorter than ``max_gap_s`` is kept
    whole, like a pause inside a piece). A single region longer than the limit stays one
    piece (the recogniser cuts it into 30 s windows itself)."""
    groups: list[list[float]] = []
    for r in speech:
        if groups and r.start - groups[-1][1] < max_gap_s and r.end - groups[-1][0] <= max_segment_s:
            groups[-1][1] = r.end
        else:
            groups.append([r.start, r.end])
    end = duration if duration is not None else float("inf")
    if groups and groups[0][0] < max_gap_s:  # a short lead-in stays, as a short pause inside would
        groups[0][0] = 0.0
    if groups and end - groups[-1][1] < max_gap_s:
        groups[-1][1] = end
    return [TimeSpan(max(0.0, a - pad_s), min(end, b + pad_s)) for a, b in groups]
