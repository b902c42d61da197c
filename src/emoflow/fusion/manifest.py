"""Training manifests: one row per example, read from and written to CSV or JSONL, and
speaker-independent splits.

A manifest is a CSV or JSONL file, one row per example:

``audio`` (path, relative to the manifest), optional ``start``/``end`` (seconds, a segment
of the file), optional ``text`` (or ``transcript``: what was said; ASR fills it in when
absent), ``label`` (single-label) or ``labels`` (multi-label: a JSON list, or ``;``-separated
in CSV), optional ``speaker`` and ``split`` (``train``/``val``/``test``).

Labels must come from the candidate list (default :data:`CANDIDATES`: the text classifier's
7 emotions); :mod:`emoflow.fusion.adapters` maps the standard datasets' labels onto it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emoflow.errors import InputError

log = logging.getLogger(__name__)
CANDIDATES = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
# the manifest's own columns; any other column (or a JSON object in ``extra``) is kept in ``extra``
COLUMNS = ("audio", "start", "end", "text", "labels", "speaker", "split")
_LABEL_SEPARATORS = re.compile(r"[;|]")


@dataclass(frozen=True)
class ManifestRow:
    """One example. Empty ``text``/``speaker``/``split`` mean "absent" (stored as None), as in a
    CSV cell; ``extra`` holds dataset-specific fields (e.g. RAVDESS ``intensity``) and is written
    to and read from manifests like the other fields."""

    audio: str
    labels: tuple[str, ...]
    start: float | None = None
    end: float | None = None
    text: str | None = None
    speaker: str | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("text", "speaker", "split"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)

    @property
    def id(self) -> str:
        seg = "" if self.start is None and self.end is None else f"@{self.start}-{self.end}"
        return f"{self.audio}{seg}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"audio": self.audio, "start": self.start, "end": self.end, "text": self.text}
        d["labels"] = list(self.labels)
        d.update(speaker=self.speaker, split=self.split)
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "manifest row") -> ManifestRow:
        """A row from its :meth:`to_dict` form or a manifest line (``label``/``transcript``
        accepted as aliases; unknown keys go to ``extra``). Audio paths are taken as they are."""
        if not raw.get("audio"):
            raise InputError(f"{where}: no 'audio'")
        text = raw.get("text") or raw.get("transcript") or None
        extra_raw = raw.get("extra")
        if isinstance(extra_raw, str):
            try:
                extra_raw = json.loads(extra_raw) if extra_raw.strip() else {}
            except json.JSONDecodeError:
                raise InputError(f"{where}: 'extra' must be a JSON object, got {extra_raw!r}") from None
        if extra_raw is not None and not isinstance(extra_raw, dict):
            raise InputError(f"{where}: 'extra' must be a JSON object, got {extra_raw!r}")
        extra = {
            str(k): v
            for k, v in raw.items()
            if k not in (*COLUMNS, "label", "transcript", "extra") and k is not None and v not in (None, "")
        }
        extra.update(extra_raw or {})
        return cls(
            str(raw["audio"]),
            _labels(raw, where),
            _float(raw.get("start"), where),
            _float(raw.get("end"), where),
            None if text is None else str(text),
            _str(raw.get("speaker")),
            _str(raw.get("split")),
            extra,
        )


def _str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def _float(v: Any, where: str) -> float | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{where}: not a number: {v!r}") from None
    if not math.isfinite(f) or f < 0:
        raise InputError(f"{where}: times must be finite seconds >= 0, got {v!r}")
    return f


def _labels(raw: dict[str, Any], where: str) -> tuple[str, ...]:
    v = raw.get("labels", raw.get("label"))
    if v is None or v == "":
        raise InputError(f"{where}: no 'label' or 'labels'")
    if isinstance(v, str):
        v = v.strip()
        try:
            v = json.loads(v) if v.startswith("[") else [x for x in _LABEL_SEPARATORS.split(v) if x.strip()]
        except json.JSONDecodeError:
            raise InputError(f"{where}: labels {v!r} are not a JSON list") from None
    if not isinstance(v, list | tuple):
        raise InputError(f"{where}: labels must be a string or a list, got {v!r}")
    labels = tuple(str(x).strip().lower() for x in v)
    if not labels or not all(labels):
        raise InputError(f"{where}: empty label in {v!r}")
    return labels


def _labels_cell(labels: Sequence[str]) -> str:
    """Labels in one CSV cell: ``a;b``, or a JSON list when a label would not survive that."""
    if all(lab and not _LABEL_SEPARATORS.search(lab) and lab == lab.strip() for lab in labels) and not (
        labels and labels[0].startswith("[")
    ):
        return ";".join(labels)
    return json.dumps(list(labels), ensure_ascii=False)


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Rows of a CSV or JSONL manifest; audio paths are resolved against the manifest's folder."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such manifest")
    base = p.parent
    raws: list[dict[str, Any]] = []
    if p.suffix.lower() in (".jsonl", ".json"):
        # lines end at "\n" only: str.splitlines() would also split inside texts at U+0085, U+2028...
        for i, line in enumerate(p.read_text(encoding="utf-8").split("\n"), 1):
            if line.strip():
                try:
                    raws.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"{p}:{i}: invalid JSON ({e.msg})") from e
    else:
        with open(p, encoding="utf-8", newline="") as f:
            raws = list(csv.DictReader(f))
    rows = []
    for i, r in enumerate(raws, 1):
        where = f"{p}:{i}"
        if not isinstance(r, dict):
            raise InputError(f"{where}: a row must be a JSON object")
        row = ManifestRow.from_dict(r, where)
        audio = Path(row.audio)
        rows.append(replace(row, audio=str(audio if audio.is_absolute() else base / audio)))
    return rows


def write_manifest(rows: Iterable[ManifestRow], path: str | os.PathLike) -> int:
    from emoflow.export.files import atomic_path

    p = Path(path)
    rows = list(rows)
    with atomic_path(p) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        if p.suffix.lower() in (".jsonl", ".json"):
            for r in rows:
                f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
        else:
            w = csv.writer(f)
            with_extra = any(r.extra for r in rows)
            w.writerow([*COLUMNS, "extra"] if with_extra else COLUMNS)
            for r in rows:
                w.writerow(
                    [
                        r.audio,
                        "" if r.start is None else repr(r.start),
                        "" if r.end is None else repr(r.end),
                        r.text or "",
                        _labels_cell(r.labels),
                        r.speaker or "",
                        r.split or "",
                    ]
                    + ([json.dumps(r.extra, ensure_ascii=False) if r.extra else ""] if with_extra else [])
                )
    return len(rows)


def check_labels(rows: Sequence[ManifestRow], candidates: Sequence[str]) -> None:
    """Every label must be a candidate: name the ones that are not and where they occur."""
    bad: dict[str, int] = {}
    for r in rows:
        for lab in r.labels:
            if lab not in candidates:
                bad[lab] = bad.get(lab, 0) + 1
    if bad:
        detail = ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(bad.items()))
        raise InputError(
            f"labels outside the candidate list {list(candidates)}: {detail}; "
            "map them in the manifest or pass --labels"
        )


# ---- splits -------------------------------------------------------------------------------------
def _bucket(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def speaker_split(
    rows: Sequence[ManifestRow], val: float = 0.1, test: float = 0.1, keep_existing: bool = True
) -> list[ManifestRow]:
    """Speaker-independent splits: every speaker's rows go to one split, chosen by a stable hash of
    the speaker, so no voice is in both training and test data."""
    speakers = sorted({r.speaker or r.audio for r in rows})
    order = sorted(speakers, key=_bucket)
    n_test = max(1, round(len(order) * test)) if test > 0 and len(order) > 2 else 0
    n_val = max(1, round(len(order) * val)) if val > 0 and len(order) > 2 else 0
    assign = {s: "test" for s in order[:n_test]}
    assign.update({s: "val" for s in order[n_test : n_test + n_val]})
    return [
        r if (keep_existing and r.split) else replace(r, split=assign.get(r.speaker or r.audio, "train"))
        for r in rows
    ]


def leave_speakers_out(rows: Sequence[ManifestRow], folds: int) -> list[list[ManifestRow]]:
    """``folds`` speaker-independent folds: fold k tests on its speakers and trains on the rest."""
    speakers = sorted({r.speaker or r.audio for r in rows}, key=_bucket)
    groups = {s: i % folds for i, s in enumerate(speakers)}
    return [
        [replace(r, split="test" if groups[r.speaker or r.audio] == k else "train") for r in rows]
        for k in range(folds)
    ]
