"""Write a :class:`~emoflow.results.Result`'s files into a directory."""

from __future__ import annotations

import os
from collections.abc import Iterable
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


def parse_formats(formats: str | Iterable[str], *, allow_empty: bool = False) -> list[str]:
    """Output formats from ``"json,csv"`` or a list, checked: :class:`ConfigError` names unknown ones."""
    from emoflow.errors import ConfigError

    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for f in (str(x).strip() for x in items):
        if f and f not in out:
            out.append(f)
    unknown = [f for f in out if f not in OUTPUT_FILES]
    if unknown:
        raise ConfigError(
            f"unknown output format(s) {', '.join(unknown)}; choose from {', '.join(OUTPUT_FILES)}"
        )
    if not out and not allow_empty:
        raise ConfigError(f"no output format given; choose from {', '.join(OUTPUT_FILES)}")
    return out


def check_replaceable(directory: str | os.PathLike) -> None:
    """:class:`InputError` when ``directory`` exists and holds anything emoflow's outputs do not
    (a user's own folder that happens to share a recording's name): only a previous result, or
    an empty folder, is ever replaced."""
    from emoflow.errors import InputError
    from emoflow.export.files import is_temporary

    d = Path(directory)
    if not d.is_dir():
        return
    ours = {name for names in OUTPUT_FILES.values() for name in names}
    foreign = sorted(p.name for p in d.iterdir() if p.name not in ours and not is_temporary(p))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(
            f"{d}: exists and holds files emoflow did not write ({shown}); "
            "move them or choose another --out (emoflow only replaces its own results)"
        )


def save_result(result: Result, directory: str | os.PathLike, formats: Iterable[str]) -> Path:
    """Write the outputs into ``directory`` atomically: into an emoflow temporary folder beside
    it, which then replaces ``directory`` in one rename (see :mod:`emoflow.export.files`).
    A folder there that holds anything but emoflow's outputs is refused, never replaced."""
    from emoflow.export.files import atomic_dir

    fmts = set(parse_formats(list(formats), allow_empty=True))
    check_replaceable(directory)
    with atomic_dir(directory) as tmp:
        write_outputs(result, tmp, fmts)
    return Path(directory)


def write_outputs(result: Result, directory: Path, formats: set[str]) -> None:
    # unknown formats: ConfigError before anything is written
    parse_formats(sorted(formats), allow_empty=True)
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
