"""What a batch analyses: the inputs, each with an output folder name of its own, and which of
them a resumed run still has to do.

INPUT is a folder (searched recursively, following symlinked folders, each real folder once),
a glob or a manifest (CSV/JSONL with an ``audio`` column, or a .txt list). Every input gets
its own output folder (names never collide, not even by case, and never take a name emoflow
uses itself), the same one on every run over the same inputs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emoflow.audio.io import AUDIO_EXTENSIONS
from emoflow.batch.index import INDEX, TABLES, Record, is_complete, read_index, record_for
from emoflow.batch.lock import LOCK
from emoflow.errors import InputError
from emoflow.export.writers import SHARED_ASSETS

# names in DIR that are emoflow's own: no recording's output folder may take one of them
RESERVED_NAMES = {INDEX, LOCK, *TABLES, SHARED_ASSETS, "", ".", ".."}
RESERVED_PREFIX = ".emoflow-"


@dataclass(frozen=True)
class BatchItem:
    path: Path
    name: str  # output folder name, unique within the batch


def discover(source: str | os.PathLike[str]) -> list[BatchItem]:
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


def _source_of(directory: Path) -> Record:
    """The ``source`` block of a finished output's ``result.json`` ({} when there is none)."""
    try:
        data = json.loads((directory / "result.json").read_text(encoding="utf-8"))
        src = data.get("source") if isinstance(data, dict) else None
        return src if isinstance(src, dict) else {}
    except (OSError, ValueError):
        return {}


Skipped = list[tuple[BatchItem, Record | None]]  # items already complete, each with a record to add


def plan(
    items: Sequence[BatchItem], out: Path, formats: Iterable[str], resume: bool, diarized: bool = False
) -> tuple[list[BatchItem], Skipped]:
    """Split ``items`` into those to analyse and those already complete, before any work.

    A complete folder is only taken as this input's when the index (or its ``result.json``)
    says it came from the same file (same path, or same content when the corpus moved);
    a folder holding another recording's analysis refuses the run with :class:`InputError`
    instead of being reported as done. Returns ``(todo, skipped)``; each skipped item comes
    with the record to append when the index lacks its ``ok`` line (a kill between the rename
    and the index line), else ``None``. ``diarized``: this run diarises, so a folder without the
    speakers' files (analysed without diarisation) is not complete.
    """
    from emoflow.pipeline import file_sha256

    formats = list(formats)
    recorded = read_index(out)
    todo: list[BatchItem] = []
    skipped: Skipped = []
    for item in items:
        target = out / item.name
        if not (resume and is_complete(target, formats, diarized)):
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
