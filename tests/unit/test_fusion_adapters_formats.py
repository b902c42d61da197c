"""Dataset adapters read each dataset's naming in any audio format emoflow reads (issue 15):
corpora are often converted (the shared RAVDESS sample is FLAC)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from emoflow.fusion.adapters import audio_extensions, build_manifest, find_audio


def touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_every_format_emoflow_reads_is_an_audio_extension():
    from emoflow.audio.io import AUDIO_EXTENSIONS

    assert audio_extensions() == frozenset(AUDIO_EXTENSIONS)
    assert {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4"} <= audio_extensions()


def test_ravdess_in_any_format_one_row_per_clip(tmp_path, caplog):
    a = tmp_path / "Actor_07"
    touch(a / "03-01-03-01-01-01-07.flac")  # happy
    touch(a / "03-01-04-02-01-02-07.MP3")  # sad, upper-case extension
    touch(a / "03-01-05-01-02-01-07.ogg")  # angry
    touch(a / "03-01-05-01-02-01-07.wav")  # the same clip as the .ogg: listed once, the .wav
    touch(a / "03-01-06-01-01-01-07.txt")  # not audio
    touch(a / "03-02-03-01-01-01-07.flac")  # song: skipped
    touch(a / "02-01-07-01-01-01-07.mp4")  # video only (no sound): skipped
    touch(a / "01-01-08-01-01-01-07.mp4")  # full AV, no audio-only copy: read
    touch(a / "01-01-03-01-01-01-07.mp4")  # full AV of the happy clip: the .flac is kept
    with caplog.at_level(logging.WARNING, logger="emoflow.fusion.adapters"):
        rows = build_manifest("ravdess", tmp_path, split=False)
    names = sorted(Path(r.audio).name for r in rows)
    assert names == [
        "01-01-08-01-01-01-07.mp4",
        "03-01-03-01-01-01-07.flac",
        "03-01-04-02-01-02-07.MP3",
        "03-01-05-01-02-01-07.wav",
    ]
    by_name = {Path(r.audio).name: r for r in rows}
    assert by_name["03-01-03-01-01-01-07.flac"].labels == ("joy",)
    assert by_name["03-01-04-02-01-02-07.MP3"].labels == ("sadness",)
    assert by_name["01-01-08-01-01-01-07.mp4"].labels == ("surprise",)
    assert {r.speaker for r in rows} == {"ravdess_07"}
    assert "skipped 2 more copies of clips" in caplog.text


def test_cremad_in_any_format(tmp_path):
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.flac")
    touch(tmp_path / "AudioMP3" / "1001_DFA_ANG_XX.mp3")  # the same clip: the lossless copy is kept
    touch(tmp_path / "AudioMP3" / "1002_IEO_HAP_HI.mp3")
    rows = build_manifest("cremad", tmp_path, split=False)
    assert sorted(Path(r.audio).name for r in rows) == ["1001_DFA_ANG_XX.flac", "1002_IEO_HAP_HI.mp3"]
    assert [r.labels for r in sorted(rows, key=lambda r: Path(r.audio).name)] == [("anger",), ("joy",)]


def test_iemocap_clips_in_another_format(tmp_path):
    s = tmp_path / "Session1"
    (s / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]\n"
        "[10.0 - 11.5]\tSes01F_impro01_M001\tang\t[2.5, 2.5, 2.5]\n"
    )
    touch(s / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_F000.flac")
    rows = build_manifest("iemocap", tmp_path, split=False)
    audio = {Path(r.audio).name for r in rows}
    # the converted clip is found; a clip not there keeps the distributed name (reported missing later)
    assert audio == {"Ses01F_impro01_F000.flac", "Ses01F_impro01_M001.wav"}


def test_meld_clips_converted_to_audio(tmp_path):
    with open(tmp_path / "train_sent_emo.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"])
        w.writerow([1, "Oh my God!", "Rachel", "surprise", "positive", 3, 0])
        w.writerow([2, "Whatever.", "Ross", "neutral", "neutral", 3, 1])
    touch(tmp_path / "train_splits" / "dia3_utt0.wav")
    touch(tmp_path / "train_splits" / "dia3_utt0.mp4")  # the original video beside it
    rows = build_manifest("meld", tmp_path, split=False)
    assert [Path(r.audio).name for r in rows] == ["dia3_utt0.wav", "dia3_utt1.mp4"]


def test_find_audio_ignores_other_files(tmp_path):
    touch(tmp_path / "a.FLAC")
    touch(tmp_path / "b.opus")
    touch(tmp_path / "c.txt")
    touch(tmp_path / "d.flac.json")
    assert [p.name for p in find_audio(tmp_path)] == ["a.FLAC", "b.opus"]


@pytest.mark.parametrize("stem", ["dia[1]_utt0", "dia*_utt?"])
def test_meld_names_with_glob_characters_are_taken_literally(tmp_path, stem):
    from emoflow.fusion.adapters import audio_named

    touch(tmp_path / f"{stem}.wav")
    touch(tmp_path / "dia1_utt0.flac")
    assert audio_named(tmp_path, stem, ".mp4").name == f"{stem}.wav"
