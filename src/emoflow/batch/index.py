"""What a batch writes into its output folder ``DIR``, and how it reads it back.

``DIR/<name>/``: one recording's outputs, written atomically (an emoflow temporary folder
renamed into place); their reports load plotly.js from ``DIR/_assets/`` (written there once)
instead of holding a 4.8 MB copy each. ``DIR/index.jsonl``: one line appended (and flushed to disk) per
recording as it finishes — status, timings, error; compacted to the latest line per recording
at the end of a run. ``DIR/sentences.parquet`` and ``DIR/timeline.parquet``: the corpus
tables over this run's complete inputs (the sentences with their ``speaker``, empty for
recordings not diarised); ``DIR/speakers.parquet``: one row per speaker of each diarised
recording. Both engines (local and Ray) write through these functions, so their folders are
the same.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoflow.export.files import atomic_path, remove_stale_temporaries
from emoflow.export.writers import SHARED_ASSETS, expected_files, save_result

if TYPE_CHECKING:
    from emoflow.batch.planning import BatchItem
    from emoflow.results import Result

log = logging.getLogger(__name__)

INDEX = "index.jsonl"
TABLES = ("sentences.parquet", "timeline.parquet", "speakers.parquet")
Record = dict[str, Any]  # one line of the index


def remove_stale_partials(out: Path) -> None:
    """Temporaries that a killed run left in ``out`` (named ``.emoflow-tmp.``..., made by a process
    that is gone). Nothing else is removed: a user's ``.git`` or ``.notes`` stay."""
    for p in remove_stale_temporaries(out):
        log.info("removed %s, left by an interrupted run", p)


def save_output(result: Result, out: Path, name: str, formats: Sequence[str]) -> Path:
    """Write one recording's outputs into ``out/name`` atomically (an emoflow temporary folder
    renamed into place). A file of the user's at that path is never replaced. Reports share
    plotly.js from ``out/_assets`` (still offline: loaded by a relative path)."""
    return save_result(result, out / name, formats, assets_dir=out / SHARED_ASSETS)


def is_complete(directory: Path, formats: Iterable[str], diarized: bool = False) -> bool:
    """Whether ``directory`` holds every file of ``formats`` (``diarized``: and the speakers'
    files, so a folder analysed without diarisation is redone by a run that diarises)."""
    files = expected_files(set(formats), diarized)
    return directory.is_dir() and all((directory / f).is_file() for f in files)


def record_for(
    item: BatchItem,
    status: str,
    seconds: float,
    timings: dict[str, float] | None = None,
    error: str | None = None,
    result: Result | None = None,
) -> Record:
    """The index line for ``item``; with ``result``, its :func:`result_summary`."""
    rec: Record = {
        "name": item.name,
        "audio": str(item.path),
        "status": status,
        "seconds": round(seconds, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if timings:
        rec["timings_s"] = {k: round(v, 4) for k, v in timings.items()}
    if result is not None:
        rec.update(result_summary(result))
    if error:
        rec["error"] = error
    return rec


def result_summary(result: Result) -> Record:
    """What the index records of a finished result: duration, sentence count, hash and, when
    diarised, the number of speakers (the Ray engine's writer sends it with the timings)."""
    rec: Record = {
        "duration_s": result.source.duration_s,
        "sentences": len(result.sentences),
        "sha256": result.source.sha256,
    }
    diarization = getattr(result, "diarization", None)  # stand-ins for a Result may lack it
    if diarization is not None:
        rec["speakers"] = diarization.num_speakers
    return rec


def append_record(index: Path, record: Record) -> None:
    """Append one line to the index and flush it to disk: a kill loses no finished recording."""
    with open(index, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_index(out: Path) -> dict[str, Record]:
    """The latest record per recording (a torn last line from a kill is ignored)."""
    latest: dict[str, Record] = {}
    path = out / INDEX
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            latest[rec["name"]] = rec
    return latest


def compact_index(out: Path) -> None:
    """Rewrite the index (atomically) with the latest line per recording."""
    latest = read_index(out)
    with atomic_path(out / INDEX) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in latest.values():
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_corpus_tables(out: Path, names: Iterable[str]) -> list[Path]:
    """The corpus tables (see :data:`TABLES`) over the recordings ``names`` (the output folders
    of this run's complete inputs, see :func:`current_ok_names`), each row led by its
    ``recording``: ``sentences.parquet`` (with a ``speaker`` column, null where a recording was
    not diarised), ``timeline.parquet``, and ``speakers.parquet`` (the diarised recordings'
    ``speakers.csv``). A table with no recording to hold is removed, so that no table describes
    another run's inputs."""
    import pandas as pd

    frames: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}

    def read(path: Path, name: str, **kw: Any) -> pd.DataFrame:
        df = pd.read_csv(path, **kw)
        df.insert(0, "recording", name)
        return df

    text = {"speaker": pd.StringDtype()}  # "SPEAKER_00" stays text; empty cells are null
    for name in names:
        d = out / name
        if not (d / "sentences.csv").exists():
            continue
        s = read(d / "sentences.csv", name, dtype=text)
        if "speaker" not in s.columns:  # written before sentences carried speakers
            s.insert(s.columns.get_loc("end") + 1 if "end" in s.columns else 1, "speaker", None)
        s["speaker"] = s["speaker"].astype(pd.StringDtype())
        frames["sentences.parquet"].append(s)
        frames["timeline.parquet"].append(read(d / "timeline.csv", name))
        if (d / "speakers.csv").exists():
            frames["speakers.parquet"].append(read(d / "speakers.csv", name, dtype=text))
    written = []
    for fname, parts in frames.items():
        if not parts:
            (out / fname).unlink(missing_ok=True)  # emoflow's own name (planning.RESERVED_NAMES)
            continue
        df = pd.concat(parts, ignore_index=True)
        with atomic_path(out / fname, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
        written.append(out / fname)
    return written


def current_ok_names(skipped: Iterable[tuple[BatchItem, Record | None]], done: Iterable[str]) -> list[str]:
    """The output folders that the corpus tables are built from: this run's inputs that are
    complete, skipped as already done or analysed now. Never every ``ok`` line of the index:
    that also names folders of earlier runs over other inputs (an input renamed when files
    that clash with it were added keeps its old folder and index line)."""
    return sorted({item.name for item, _ in skipped} | set(done))
