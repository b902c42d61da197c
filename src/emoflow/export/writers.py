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
# what a diarised result writes besides, per format (diarization.rttm: the standard format every
# diarisation tool reads, the same turns as result.json's "diarization")
DIARIZATION_FILES = {"json": ["diarization.rttm"], "csv": ["speakers.csv"]}
# the folder, in a batch's output root, that its reports share plotly.js from (see save_result)
SHARED_ASSETS = "_assets"


def expected_files(formats: set[str], diarized: bool = False) -> list[str]:
    """The files a result saved with ``formats`` has (``diarized``: with the speakers' files)."""
    extra = DIARIZATION_FILES if diarized else {}
    return [f for fmt in formats for f in [*OUTPUT_FILES[fmt], *extra.get(fmt, [])]]


def all_output_files() -> frozenset[str]:
    """Every file name a result folder may hold (diarised or not)."""
    return frozenset(
        n for table in (OUTPUT_FILES, DIARIZATION_FILES) for names in table.values() for n in names
    )


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
    ours = all_output_files()
    foreign = sorted(p.name for p in d.iterdir() if p.name not in ours and not is_temporary(p))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(
            f"{d}: exists and holds files emoflow did not write ({shown}); "
            "move them or choose another --out (emoflow only replaces its own results)"
        )


def save_result(
    result: Result,
    directory: str | os.PathLike,
    formats: Iterable[str],
    *,
    assets_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the outputs into ``directory`` atomically: into an emoflow temporary folder beside
    it, which then replaces ``directory`` in one rename (see :mod:`emoflow.export.files`).
    A folder there that holds anything but emoflow's outputs is refused, never replaced.

    ``assets_dir``: a folder for what many results' reports share (plotly.js, written there
    once as ``plotly-<version>.min.js``); the report then loads it by a relative path instead
    of holding its own 4.8 MB copy. None (the default): the report is one self-contained file.
    Both ways need no network.
    """
    from emoflow.export.files import atomic_dir

    fmts = set(parse_formats(list(formats), allow_empty=True))
    check_replaceable(directory)
    plotly_src = None
    if "html" in fmts and assets_dir is not None:
        plotly_src = shared_plotly_src(assets_dir, directory)
    with atomic_dir(directory) as tmp:
        write_outputs(result, tmp, fmts, plotly_src=plotly_src)
    return Path(directory)


def shared_plotly_src(assets_dir: str | os.PathLike, directory: str | os.PathLike) -> str:
    """Write the shared plotly.js into ``assets_dir`` (once) and return its URL relative to a
    report in ``directory``. Written before the report, so no report points at a missing file."""
    from emoflow.errors import ConfigError
    from emoflow.viz.assets import relative_url, write_shared_plotly_js

    assets, target = Path(os.path.abspath(assets_dir)), Path(os.path.abspath(directory))
    if assets == target or assets.is_relative_to(target):
        raise ConfigError(
            f"{assets_dir}: the shared assets folder is inside the result folder {directory}, "
            "which is replaced when the result is written; choose a folder outside it"
        )
    return relative_url(write_shared_plotly_js(assets), target)


def write_outputs(
    result: Result, directory: Path, formats: set[str], *, plotly_src: str | None = None
) -> None:
    """Write the files of ``formats`` into ``directory`` (no atomicity: see :func:`save_result`).
    ``plotly_src``: where the report loads plotly.js from (None: inlined)."""
    # unknown formats: ConfigError before anything is written
    parse_formats(sorted(formats), allow_empty=True)
    d = Path(directory)
    if "json" in formats:
        (d / "result.json").write_text(result.to_json(), encoding="utf-8")
        if result.diarization is not None:
            (d / "diarization.rttm").write_text(
                result.diarization.to_rttm(rttm_file_id(result)), encoding="utf-8"
            )
    if "npz" in formats:
        np.savez_compressed(d / "embeddings.npz", **result.embeddings())  # type: ignore[arg-type]
    if "csv" in formats:
        from emoflow.export.tables import write_tables

        write_tables(result, d / "sentences.csv", d / "timeline.csv", d / "speakers.csv")
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

        write_report(result, d / "report.html", plotly_src=plotly_src)


def rttm_file_id(result: Result) -> str:
    """The RTTM file id: the recording's stem (whitespace replaced by ``_``), else ``recording``."""
    stem = Path(result.source.path).stem if result.source.path else ""
    return "_".join(stem.split()) or "recording"
