"""Resumable corpus batches on one machine.

``emoflow batch INPUT --out DIR``: INPUT is a folder (searched recursively), a glob or a
manifest (CSV/JSONL with an ``audio`` column). Each recording's outputs are written
atomically into ``DIR/<name>/`` (a temporary directory renamed into place), then one line
is appended to ``DIR/index.jsonl`` (status, timings, error). A crash or kill at any point
loses at most the recording in flight: on restart (``--resume``, the default) recordings
whose outputs are complete are skipped, partial ones are redone. One bad file never stops
the batch. At the end the index is compacted (one line per recording, the latest) and
the corpus tables ``DIR/sentences.parquet`` and ``DIR/timeline.parquet`` are rebuilt
from this run's inputs that are complete (analysed now or skipped as already done): an
output folder left from another input list (e.g. under a name a later run gave to another
file) stays in ``DIR`` and in the index, but not in the tables.

Every input gets its own output folder (names never collide, not even by case), the same
one on every run over the same inputs. A run holds a lock on ``DIR`` (``DIR/.emoflow-lock``):
a second batch into the same folder is refused at once. Only emoflow's own temporaries
(``.emoflow-tmp.``...) left by a killed run are removed, and a corpus table with no
recording of this run left to hold; nothing else in ``DIR`` is touched.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emoflow.errors import EmoflowError, InputError, ModelUnavailableError
from emoflow.export.files import atomic_path, remove_stale_temporaries
from emoflow.export.writers import expected_files, save_result
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
LOCK = ".emoflow-lock"
# names in DIR that are emoflow's own: no recording's output folder may take one of them
RESERVED_NAMES = {INDEX, LOCK, "sentences.parquet", "timeline.parquet", "", ".", ".."}
RESERVED_PREFIX = ".emoflow-"


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
    """Audio files from a folder (recursive, following symlinked folders, each real folder once),
    a glob pattern or a manifest, with unique output names."""
    from emoflow.fusion.datasets import find_files

    s = str(source)
    p = Path(s)
    if p.is_dir():
        # find_files follows linked folders and guards against loops; suffix "" lists every file
        files = [f for f in find_files(p, suffix="") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file()]
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


def _clashes(key: str, members: list[int]) -> bool:
    return len(members) > 1 or key in RESERVED_NAMES or key.startswith(RESERVED_PREFIX)


def _named(files: Sequence[Path], base: Path | None) -> list[BatchItem]:
    """Output names, unique within the batch (compared case-insensitively, for file systems that
    ignore case) and the same on every run over the same files.

    Each file gets the first of these that no other file's name clashes with: its stem
    (``talk``); its relative path without the extension (``s1__talk``); with the extension
    (``a.wav`` beside ``a.flac``); that path plus a short hash of it (``x__y-1a2b3c4d`` when
    ``x/y.wav`` and ``x__y.wav`` both exist). Names emoflow uses itself are never given out.
    """
    rels = [
        (f.relative_to(base) if base is not None and f.is_relative_to(base) else f).as_posix().strip("/")
        for f in files
    ]

    def candidate(i: int, level: int) -> str:
        f, rel = files[i], rels[i]
        parts = [p for p in Path(rel).parts if p not in ("/", "")]
        if level == 0:
            return f.stem
        joined = "__".join(parts)
        if level == 1:
            return joined[: -len(f.suffix)] if f.suffix and joined.endswith(f.suffix) else joined
        if level == 2:
            return joined
        return f"{candidate(i, 1)}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"

    levels = [0] * len(files)
    names = [candidate(i, 0) for i in range(len(files))]
    while True:
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            groups.setdefault(n.casefold(), []).append(i)
        clashing = [m for key, m in groups.items() if _clashes(key, m) and min(levels[i] for i in m) < 3]
        if not clashing:
            break
        for members in clashing:  # the whole group moves on together: like inputs get like names
            level = min(3, max(levels[i] for i in members) + 1)
            for i in members:
                levels[i] = level
                names[i] = candidate(i, level)
    for key, members in groups.items():
        if _clashes(key, members):
            which = ", ".join(str(files[i]) for i in members)
            raise InputError(f"{which}: cannot give an output folder of its own; rename the file")
    return [BatchItem(f, n) for f, n in zip(files, names, strict=True)]


def remove_stale_partials(out: Path) -> None:
    """Temporaries that a killed run left in ``out`` (named ``.emoflow-tmp.``..., made by a process
    that is gone). Nothing else is removed: a user's ``.git`` or ``.notes`` stay."""
    for p in remove_stale_temporaries(out):
        log.info("removed %s, left by an interrupted run", p)


_held: dict[Path, tuple[int, int, int]] = {}  # locked folder -> (fd, depth, owning thread)
_held_guard = threading.Lock()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextmanager
def output_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold ``out`` for one batch: a second batch into the same folder (another process, or
    another thread) fails at once with :class:`InputError` naming the folder.

    The lock is an OS file lock on ``out/.emoflow-lock``: the OS releases it when the process
    ends, however it ends, so a killed run never leaves the folder locked. Re-entrant within
    one thread (the CLI may take it before loading models, the runner takes it again).
    """
    out = Path(out)
    key = out.resolve()
    me = threading.get_ident()
    with _held_guard:
        if key in _held:
            fd, depth, owner = _held[key]
            if owner != me:
                raise InputError(f"{out}: another batch in this process is writing into it; wait for it")
            _held[key] = (fd, depth + 1, owner)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                fd, depth, owner = _held[key]
                _held[key] = (fd, depth - 1, owner)
        return
    path = out / LOCK
    for _ in range(20):  # the file may be removed by the holder between our open and our lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            try:
                pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise InputError(
                f"{out}: another emoflow batch (pid {pid}) is writing into this folder; "
                "wait for it to finish or choose another --out"
            )
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise InputError(f"{out}: could not lock {path}; check the folder is writable")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        with _held_guard:
            _held[key] = (fd, 1, me)
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        try:
            # removed while still locked, so nobody can lock a file that is about to go
            with suppress(OSError):  # Windows cannot remove an open file: it stays, unlocked
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def prepare_out(out: str | os.PathLike) -> Path:
    """The output folder, created; :class:`InputError` at once when it cannot be one."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"{out}: cannot create the output folder ({e.strerror or e}); choose another --out"
        ) from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{out}: not writable; choose another --out")
    return out


def _source_of(directory: Path) -> dict[str, Any]:
    """The ``source`` block of a finished output's ``result.json`` ({} when there is none)."""
    try:
        data = json.loads((directory / "result.json").read_text(encoding="utf-8"))
        src = data.get("source") if isinstance(data, dict) else None
        return src if isinstance(src, dict) else {}
    except (OSError, ValueError):
        return {}


def plan(
    items: Sequence[BatchItem], out: Path, formats: Iterable[str], resume: bool
) -> tuple[list[BatchItem], list[tuple[BatchItem, dict[str, Any] | None]]]:
    """Split ``items`` into those to analyse and those already complete, before any work.

    A complete folder is only taken as this input's when the index (or its ``result.json``)
    says it came from the same file (same path, or same content when the corpus moved);
    a folder holding another recording's analysis refuses the run with :class:`InputError`
    instead of being reported as done. Returns ``(todo, skipped)``; each skipped item comes
    with the record to append when the index lacks its ``ok`` line (a kill between the rename
    and the index line), else ``None``.
    """
    from emoflow.pipeline import file_sha256

    formats = list(formats)
    recorded = read_index(out)
    todo: list[BatchItem] = []
    skipped: list[tuple[BatchItem, dict[str, Any] | None]] = []
    for item in items:
        target = out / item.name
        if not (resume and is_complete(target, formats)):
            todo.append(item)
            continue
        rec = recorded.get(item.name, {})
        ok = rec.get("status") == "ok"
        src = {} if ok else _source_of(target)
        their_path = rec.get("audio") if ok else src.get("path")
        their_sha = rec.get("sha256") if ok else src.get("sha256")
        if their_path is not None and str(their_path) != str(item.path) and their_sha:
            try:
                mine = file_sha256(item.path)
            except OSError:
                mine = None
            if mine != their_sha:
                raise InputError(
                    f"{target} holds the analysis of {their_path}, not of {item.path}; "
                    "choose another --out (or --no-resume to replace it)"
                )
        if ok:
            skipped.append((item, None))
        else:
            recovered = record_for(item, "ok", 0.0) | {"recovered": True}
            for key in ("duration_s", "sha256"):
                if src.get(key) is not None:
                    recovered[key] = src[key]
            skipped.append((item, recovered))
    return todo, skipped


def save_output(result: Any, out: Path, name: str, formats: Sequence[str]) -> Path:
    """Write one recording's outputs into ``out/name`` atomically (an emoflow temporary folder
    renamed into place). A file of the user's at that path is never replaced."""
    return save_result(result, out / name, formats)


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
    """``sentences.parquet`` and ``timeline.parquet`` over the recordings ``names`` (the output
    folders of this run's complete inputs, see :func:`current_ok_names`). A table with no
    recording to hold is removed, so that no table describes another run's inputs."""
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
            (out / fname).unlink(missing_ok=True)  # emoflow's own name (RESERVED_NAMES)
            continue
        df = pd.concat(frames, ignore_index=True)
        with atomic_path(out / fname, suffix=".parquet") as tmp:
            df.to_parquet(tmp, index=False)
        written.append(out / fname)
    return written


def current_ok_names(
    skipped: Iterable[tuple[BatchItem, dict[str, Any] | None]], done: Iterable[str]
) -> list[str]:
    """The output folders that the corpus tables are built from: this run's inputs that are
    complete, skipped as already done or analysed now. Never every ``ok`` line of the index:
    that also names folders of earlier runs over other inputs (an input renamed when files
    that clash with it were added keeps its old folder and index line)."""
    return sorted({item.name for item, _ in skipped} | set(done))


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
    out = prepare_out(out)
    with output_lock(out):
        return _run_locked(items, out, pipeline, resume=resume, formats=formats, on_item=on_item)


def _run_locked(
    items: Sequence[BatchItem],
    out: Path,
    pipeline: Any,
    *,
    resume: bool,
    formats: Sequence[str],
    on_item: Callable[[BatchItem, str], None] | None,
) -> BatchSummary:
    index = out / INDEX
    summary = BatchSummary(total=len(items))
    t_start = time.perf_counter()
    remove_stale_partials(out)
    todo, skipped = plan(items, out, formats, resume)
    for item, recovered in skipped:
        summary.skipped += 1
        if recovered is not None:  # killed between rename and index line
            _append(index, recovered)
        if on_item:
            on_item(item, "skipped")
    done: list[str] = []
    for item in todo:
        if on_item:
            on_item(item, "running")
        t0 = time.perf_counter()
        try:
            result = pipeline.analyze(item.path)
            save_output(result, out, item.name, formats)
            _append(index, record_for(item, "ok", time.perf_counter() - t0, result.timings, result=result))
            summary.done += 1
            done.append(item.name)
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
    if "csv" in formats:
        write_corpus_tables(out, current_ok_names(skipped, done))
    summary.seconds = time.perf_counter() - t_start
    return summary
