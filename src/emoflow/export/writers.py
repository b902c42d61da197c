"""Write a :class:`~emoflow.results.Result`'s files into a directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emoflow.export.sentences import sentences_srt

if TYPE_CHECKING:
    from emoflow.results import Result

OUTPUT_FILES = {
    "json": ["result.json"],
    "npz": ["embeddings.npz"],
    "csv": ["sentences.csv", "timeline.csv"],
    "srt": ["transcript.srt"],
    "png": ["timeline.png", "flow.png"],
    "html": ["report.html"],
}


def expected_files(formats: set[str]) -> list[str]:
    return [f for fmt in formats for f in OUTPUT_FILES[fmt]]


def write_outputs(result: Result, directory: Path, formats: set[str]) -> None:
    unknown = formats - set(OUTPUT_FILES)
    if unknown:
        from emoflow.errors import ConfigError

        raise ConfigError(
            f"unknown output format(s) {', '.join(sorted(unknown))}; choose from {', '.join(OUTPUT_FILES)}"
        )
    d = Path(directory)
    if "json" in formats:
        (d / "result.json").write_text(result.to_json(), encoding="utf-8")
    if "npz" in formats:
        np.savez_compressed(d / "embeddings.npz", **result.embeddings())  # type: ignore[arg-type]
    if "csv" in formats:
        result.sentences_frame().to_csv(d / "sentences.csv", index=False, float_format="%.4f")
        result.timeline_frame().to_csv(d / "timeline.csv", index=False, float_format="%.4f")
    if "srt" in formats:
        (d / "transcript.srt").write_text(
            sentences_srt([s.sentence for s in result.sentences]), encoding="utf-8"
        )
    if "png" in formats:
        from emoflow.viz.plots import plot_flow, plot_timeline

        plot_timeline(result, d / "timeline.png")
        plot_flow(result, d / "flow.png")
    if "html" in formats:
        from emoflow.viz.report import write_report

        write_report(result, d / "report.html")
