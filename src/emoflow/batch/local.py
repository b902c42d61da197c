"""Resumable corpus batches on one machine.

``emoflow batch INPUT --out DIR``: INPUT is a folder (searched recursively), a glob or a
manifest (CSV/JSONL with an ``audio`` column). Each recording's outputs are written
atomically into ``DIR/<name>/`` (a temporary directory renamed into place), then one line
is appended to ``DIR/index.jsonl`` (status, timings, error). A crash or kill at any point
loses at most the recording in flight: on restart (``--resume``, the default) recordings
whose outputs are complete are skipped, partial ones are redone. One bad file never stops
the batch. At the end the index is compacted (one line per recording, the latest) and
the corpus tables ``DIR/sentences.parquet`` and ``DIR/timeline.parquet`` are rebuilt
from every successful recording.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoflow.errors import EmoflowError, InputError, ModelUnavailableError
from emoflow.export.files import atomic_path
from emoflow.export.writers import expected_files
from emoflow.results import ALL_FORMATS

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = {
    ".wav",
    ".flac",
    ".ogg",
    ".mp3",
    ".m4a",
    ".mp4",
    ".webm",
    ".opus",
    ".aac",
    ".wma",
    ".aiff",
    ".aif",
    ".mkv",
    ".mov",
}
INDEX = "index.jsonl"


@dataclass(frozen=True)
class BatchItem:
    path: Path
    name: str  # output folder name, unique within the batch


@dataclass
class BatchSummary:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def discover(source: str | os.PathLike) -> list[BatchItem]:
    """Audio files from a folder (recursive), a glob pattern or a manifest, with unique output names."""
    s = str(source)
    p = Path(s)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        base: Path | None = p
    elif p.is_file() and p.suffix.lower() in (".csv", ".jsonl", ".json", ".txt"):
        files, base = manifest_audio(p), None
    elif any(ch in s for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(s, recursive=True) if Path(f).is_file())
        base = None
    elif p.is_file():
        files, base = [p], None
    else:
        raise InputError(f"{s}: no such folder, file or matching files")
    if not files:
        raise InputError(f"{s}: no audio files found")
    return _named(files, base)


def manifest_audio(path: Path) -> list[Path]:
    """The distinct audio files of a manifest (CSV/JSONL with an ``audio`` column, or a .txt list);
    relative paths are taken from the manifest's folder. Labels are not needed here."""
    import csv

    if path.suffix.lower() == ".txt":
        raw = [
            {"audio": line.strip()} for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    elif path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            raw = list(csv.DictReader(f))
    else:
        try:
            raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: invalid JSON line ({e.msg})") from e
    files = []
    for i, r in enumerate(raw, 1):
        if not isinstance(r, dict) or not r.get("audio"):
            raise InputError(f"{path}:{i}: no 'audio'")
        a = Path(str(r["audio"]))
        files.append(a if a.is_absolute() else path.parent / a)
    return list(dict.fromkeys(files))


def _named(files: Sequence[Path], base: Path | None) -> list[BatchItem]:
    """Output names: the file's stem, made unique with its relative folder when stems repeat."""
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    items = []
    for f in files:
        if stems[f.stem] == 1:
            name = f.stem
        else:
            rel = f.relative_to(base) if base is not None and f.is_relative_to(base) else f
            name = "__".join(part for part in rel.with_suffix("").parts if part not in ("/", ""))
        items.append(BatchItem(f, name))
    return items


def remove_stale_partials(out: Path) -> None:
    """Temporary output folders left by a killed run (``.<name>.<random>``): never complete, never read."""
    import shutil

    for p in out.iterdir():
        if p.name.startswith(".") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def is_complete(directory: Path, formats: Iterable[str]) -> bool:
    return directory.is_dir() and all((directory / f).is_file() for f in expected_files(set(formats)))


def _append(index: Path, record: dict[str, Any]) -> None:
    with open(index, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_index(out: Path) -> dict[str, dict[str, Any]]:
    """The latest record per recording (a torn last line from a kill is ignored)."""
    latest: dict[str, dict[str, Any]] = {}
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
    latest = read_index(out)
    with atomic_path(out / INDEX) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in latest.values():
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_corpus_tables(out: Path, names: Iterable[str]) -> list[Path]:
    """``sentences.parquet`` and ``timeline.parquet`` over every successful recording."""
    import pandas as pd

    sent_frames, tl_frames = [], []
    for name in names:
        d = out / name
        if not (d / "sentences.csv").exists():
            continue
        s = pd.read_csv(d / "sentences.csv")
        s.insert(0, "recording", name)
        sent_frames.append(s)
        t = pd.read_csv(d / "timeline.csv")
        t.insert(0, "recording", name)
        tl_frames.append(t)
    written = []
    for fname, frames in (("sentences.parquet", sent_frames), ("timeline.parquet", tl_frames)):
        if not frames:
            continue
        df = pd.concat(frames, ignore_index=True)
        with atomic_path(out / fname, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
        written.append(out / fname)
    return written


def record_for(
    item: BatchItem,
    status: str,
    seconds: float,
    timings: dict[str, float] | None = None,
    error: str | None = None,
    result: Any = None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "name": item.name,
        "audio": str(item.path),
        "status": status,
        "seconds": round(seconds, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if timings:
        rec["timings_s"] = {k: round(v, 4) for k, v in timings.items()}
    if result is not None:
        rec.update(
            duration_s=result.source.duration_s, sentences=len(result.sentences), sha256=result.source.sha256
        )
    if error:
        rec["error"] = error
    return rec


def run_batch(
    items: Sequence[BatchItem],
    out: str | os.PathLike,
    pipeline: Any,
    *,
    resume: bool = True,
    formats: Sequence[str] = ALL_FORMATS,
    on_item: Callable[[BatchItem, str], None] | None = None,
) -> BatchSummary:
    """Analyse every item with one pipeline (models loaded once); see the module doc."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    summary = BatchSummary(total=len(items))
    t_start = time.perf_counter()
    remove_stale_partials(out)
    recorded = read_index(out)
    for item in items:
        target = out / item.name
        if resume and is_complete(target, formats):
            summary.skipped += 1
            if recorded.get(item.name, {}).get("status") != "ok":  # killed between rename and index line
                _append(index, record_for(item, "ok", 0.0, error=None) | {"recovered": True})
            if on_item:
                on_item(item, "skipped")
            continue
        if on_item:
            on_item(item, "running")
        t0 = time.perf_counter()
        try:
            result = pipeline.analyze(item.path)
            result.save(target, formats)
            _append(index, record_for(item, "ok", time.perf_counter() - t0, result.timings, result=result))
            summary.done += 1
            if on_item:
                on_item(item, "ok")
        except ModelUnavailableError:
            raise
        except Exception as e:  # one bad file never stops the batch
            msg = str(e) if isinstance(e, EmoflowError) else f"internal error: {type(e).__name__}: {e}"
            if not isinstance(e, EmoflowError):
                log.debug("%s", traceback.format_exc())
            _append(index, record_for(item, "failed", time.perf_counter() - t0, error=msg))
            summary.failed.append((str(item.path), msg))
            if on_item:
                on_item(item, "failed")
    compact_index(out)
    ok_names = [n for n, r in read_index(out).items() if r.get("status") == "ok"]
    if set(formats) >= {"csv"}:
        write_corpus_tables(out, sorted(ok_names))
    summary.seconds = time.perf_counter() - t_start
    return summary
