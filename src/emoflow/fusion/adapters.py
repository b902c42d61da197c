"""Adapters that build manifests from the layouts of the standard emotion datasets users have
locally (RAVDESS, CREMA-D, IEMOCAP, MELD), mapping each dataset's labels to the candidate list
(:data:`~emoflow.fusion.manifest.CANDIDATES`; ``excited`` → joy for IEMOCAP's usual 4 classes).

Each dataset's file *names* are what identify its clips; the audio may be in any format emoflow
reads (corpora are often converted, e.g. to FLAC): ``03-01-05-02-01-01-13.flac`` is as good as
the distributed ``.wav``. When one clip is there in several formats (a converted copy beside the
original), it is listed once, lossless formats first (:data:`FORMAT_PREFERENCE`).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from emoflow.errors import InputError
from emoflow.fusion.manifest import CANDIDATES, ManifestRow, speaker_split

log = logging.getLogger(__name__)

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_MAP = {
    "neutral": "neutral",
    "calm": "neutral",
    "happy": "joy",
    "sad": "sadness",
    "angry": "anger",
    "fearful": "fear",
    "disgust": "disgust",
    "surprised": "surprise",
}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
CREMAD_MAP = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "joy",
    "NEU": "neutral",
    "SAD": "sadness",
}
CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
IEMOCAP_MAP = {"neu": "neutral", "hap": "joy", "exc": "joy", "ang": "anger", "sad": "sadness"}
MELD_MAP = {e: e for e in CANDIDATES}
RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
IEMOCAP_LINE = re.compile(r"^\[(\d+\.\d+) - (\d+\.\d+)\]\t(\S+)\t(\w+)\t")
IEMOCAP_TEXT = re.compile(r"^(\S+) \[[\d.]+-[\d.]+\]: (.*)$")
# which copy of a clip found in several formats is listed: lossless first, then by this order
FORMAT_PREFERENCE = (".wav", ".flac", ".aiff", ".aif", ".ogg", ".opus", ".mp3", ".m4a", ".aac")


def audio_extensions() -> frozenset[str]:
    """The file extensions emoflow reads audio from (lower case, with the dot)."""
    from emoflow.audio.io import AUDIO_EXTENSIONS

    return frozenset(AUDIO_EXTENSIONS)


def _preference(p: Path) -> tuple[int, str]:
    ext = p.suffix.lower()
    return (FORMAT_PREFERENCE.index(ext) if ext in FORMAT_PREFERENCE else len(FORMAT_PREFERENCE), str(p))


def find_audio(root: str | os.PathLike) -> list[Path]:
    """Audio files under ``root`` (sorted), in any format emoflow reads."""
    exts = audio_extensions()
    return [p for p in find_files(root, suffixes=exts) if p.suffix.lower() in exts]


def one_per_clip(files: Iterable[tuple[object, Path]], dataset: str) -> list[Path]:
    """One file per clip identity: the first of its copies in ``files`` (give them in order of
    preference); says how many copies it skipped."""
    best: dict[object, Path] = {}
    skipped = 0
    for key, p in files:
        if key in best:
            skipped += 1
        else:
            best[key] = p
    if skipped:
        log.warning(
            "%s: skipped %d more copies of clips (other formats or folders): each clip is "
            "listed once, in the first format of %s",
            dataset,
            skipped,
            ", ".join(FORMAT_PREFERENCE[:3]),
        )
    return list(best.values())


def audio_named(folder: Path, stem: str, default_ext: str) -> Path:
    """``folder/stem`` in whichever format emoflow reads is there (the preferred one when
    several are), else ``folder/stem + default_ext`` (reported missing when features are made)."""
    exts = audio_extensions()
    try:
        found = [p for p in folder.glob(f"{glob_escape(stem)}.*") if p.suffix.lower() in exts]
    except OSError:
        found = []
    return min(found, key=_preference) if found else folder / f"{stem}{default_ext}"


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def find_files(
    root: str | os.PathLike,
    *,
    suffix: str | None = None,
    name: str | None = None,
    suffixes: Iterable[str] = (),
) -> list[Path]:
    """Files under ``root`` (sorted) whose name ends with ``suffix`` or one of ``suffixes``
    (any case) or equals ``name``.

    Symlinked folders are followed (datasets are often assembled from links), each real folder
    once: a link back to an ancestor, or two links to one folder, cannot list a file twice or loop.
    """
    ends = tuple(x.lower() for x in (*([suffix] if suffix is not None else []), *suffixes))
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(os.fspath(root), followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []  # reached again through a link: already listed
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()  # walk in a stable order, so the first path to a linked folder is stable
        for f in filenames:
            if (ends and f.lower().endswith(ends)) or f == name:
                found.append(Path(dirpath) / f)
    return sorted(found)


def build_ravdess(root: str | os.PathLike) -> list[ManifestRow]:
    """RAVDESS speech: ``Actor_XX/03-01-EE-II-SS-RR-AA.wav`` (modality 03 = audio only, channel
    01 = speech), in any audio format emoflow reads; the full-AV videos (modality 01, ``.mp4``)
    are read too when a performance has no audio-only file, video-only ones (02) never.
    ``calm`` maps to neutral."""
    clips = []
    for p in find_audio(root):
        m = RAVDESS_RE.match(p.stem)
        if not m or m.group(1) not in ("01", "03") or m.group(2) != "01":  # channel 02 is song
            continue
        if m.group(3) not in RAVDESS_EMOTIONS:
            continue
        # one performance: emotion, intensity, statement, repetition, actor (audio-only first)
        clips.append((m.groups()[2:], p, m.group(1) != "03"))
    clips.sort(key=lambda c: (c[2], _preference(c[1])))
    rows = []
    for p in sorted(one_per_clip([(key, p) for key, p, _ in clips], "RAVDESS")):
        m = RAVDESS_RE.match(p.stem)
        assert m is not None
        emotion = RAVDESS_EMOTIONS[m.group(3)]
        rows.append(
            ManifestRow(
                str(p),
                (RAVDESS_MAP[emotion],),
                text=RAVDESS_STATEMENTS.get(m.group(5)),
                speaker=f"ravdess_{m.group(7)}",
                extra={"intensity": m.group(4)},
            )
        )
    return rows


def build_cremad(root: str | os.PathLike) -> list[ManifestRow]:
    """CREMA-D: ``AudioWAV/1001_DFA_ANG_XX.wav`` (actor, sentence, emotion, level), in any
    audio format emoflow reads (``AudioMP3/`` too; one file per clip, lossless first)."""
    clips = [(p.stem, p) for p in find_audio(root) if CREMAD_RE.match(p.stem)]
    clips.sort(key=lambda c: _preference(c[1]))
    rows = []
    for p in sorted(one_per_clip(clips, "CREMA-D")):
        m = CREMAD_RE.match(p.stem)
        if not m or m.group(3) not in CREMAD_MAP:
            continue
        rows.append(
            ManifestRow(
                str(p),
                (CREMAD_MAP[m.group(3)],),
                text=CREMAD_SENTENCES.get(m.group(2)),
                speaker=f"cremad_{m.group(1)}",
            )
        )
    return rows


def build_iemocap(root: str | os.PathLike) -> list[ManifestRow]:
    """IEMOCAP: ``SessionN/dialog/EmoEvaluation/*.txt`` labels, ``SessionN/sentences/wav/<dialog>/<utt>.wav``
    audio (or ``<utt>`` in another format emoflow reads), ``SessionN/dialog/transcriptions/<dialog>.txt``
    text. The usual 4 classes (neutral, happy+excited → joy, anger, sadness); other labels are
    skipped. Session 5 is the test split."""
    rows = []
    for session in sorted(Path(root).glob("Session*")):
        texts: dict[str, str] = {}
        for t in sorted((session / "dialog" / "transcriptions").glob("*.txt")):
            for line in t.read_text(encoding="utf-8", errors="replace").splitlines():
                m = IEMOCAP_TEXT.match(line.strip())
                if m:
                    texts[m.group(1)] = m.group(2)
        for ev in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            for line in ev.read_text(encoding="utf-8", errors="replace").splitlines():
                m = IEMOCAP_LINE.match(line)
                if not m or m.group(4) not in IEMOCAP_MAP:
                    continue
                utt = m.group(3)
                dialog = utt.rsplit("_", 1)[0]
                wav = audio_named(session / "sentences" / "wav" / dialog, utt, ".wav")
                speaker = utt[:5] + utt.rsplit("_", 1)[1][0]  # e.g. Ses01F
                rows.append(
                    ManifestRow(
                        str(wav),
                        (IEMOCAP_MAP[m.group(4)],),
                        text=texts.get(utt),
                        speaker=speaker,
                        split="test" if session.name.endswith("5") else "train",
                    )
                )
    return rows


def build_meld(root: str | os.PathLike) -> list[ManifestRow]:
    """MELD.Raw: ``{train,dev,test}_sent_emo.csv`` plus the clips (``train_splits/``,
    ``dev_splits_complete/``, ``output_repeated_splits_test/``; ``dia{D}_utt{U}.mp4``, or that
    name in another format emoflow reads, e.g. audio extracted to ``.wav``).
    Note: the default text classifier was trained on MELD — do not evaluate its text branch here."""
    root = Path(root)
    splits = {
        "train": ("train_sent_emo.csv", "train_splits", "train"),
        "dev": ("dev_sent_emo.csv", "dev_splits_complete", "val"),
        "test": ("test_sent_emo.csv", "output_repeated_splits_test", "test"),
    }
    rows = []
    for csv_name, clip_dir, split in splits.values():
        path = next(iter(find_files(root, name=csv_name)), None)
        if path is None:
            continue
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            for r in csv.DictReader(f):
                emotion = (r.get("Emotion") or "").strip().lower()
                if emotion not in MELD_MAP:
                    continue
                clip = audio_named(root / clip_dir, f"dia{r['Dialogue_ID']}_utt{r['Utterance_ID']}", ".mp4")
                rows.append(
                    ManifestRow(
                        str(clip),
                        (MELD_MAP[emotion],),
                        text=r.get("Utterance"),
                        speaker=f"meld_{r.get('Speaker', '')}",
                        split=split,
                    )
                )
    return rows


LAYOUTS: dict[str, Callable[[str | os.PathLike], list[ManifestRow]]] = {
    "ravdess": build_ravdess,
    "cremad": build_cremad,
    "iemocap": build_iemocap,
    "meld": build_meld,
}


def build_manifest(layout: str, root: str | os.PathLike, split: bool = True) -> list[ManifestRow]:
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; use {', '.join(LAYOUTS)}")
    if not Path(root).is_dir():
        raise InputError(f"{root}: no such directory")
    rows = LAYOUTS[layout](root)
    if not rows:
        raise InputError(f"{root}: no {layout} files found (is it the dataset's root folder?)")
    return speaker_split(rows) if split else rows
