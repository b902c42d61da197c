"""``emoflow analyze --diarize`` end to end (issue 13): the tiny replicas, the real Whisper tiny.en
and the offline backend's REAL GE2E weights on a shared two-speaker conversation and a
one-speaker recording; usage errors (exit 2) and pyannote without its model (exit 4), both
before any work."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import time
from pathlib import Path

import pytest

from emoflow.diarization import Diarization
from emoflow.results import validate_result
from tests.helpers import need_shared, run_cli_in_process

needs_ge2e = pytest.mark.skipif(
    importlib.util.find_spec("resemblyzer") is None,
    reason="the offline diarisation backend needs resemblyzer (pip install 'emoflow[diarization]')",
)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


@pytest.fixture(scope="module")
def diarised(tmp_path_factory: pytest.TempPathFactory, replica_args: list[str]) -> Path:
    """One run over a two-speaker conversation and a one-speaker recording."""
    conv = need_shared("data", "conversations", "conv1.wav")
    solo = need_shared("audio", "speech", "three_moods.wav")
    out = tmp_path_factory.mktemp("diarize") / "out"
    r = run_cli_in_process(
        "analyze",
        str(conv),
        str(solo),
        "--out",
        str(out),
        "--diarize",
        "--format",
        "json,csv,srt,npz",
        *replica_args,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.slow
@needs_ge2e
def test_a_conversation_gets_speakers_everywhere(diarised: Path) -> None:
    out = diarised / "conv1"
    truth = json.loads(need_shared("data", "conversations", "conv1.truth.json").read_text())
    d = json.loads((out / "result.json").read_text(encoding="utf-8"))
    validate_result(d)
    speakers = d["diarization"]["speakers"]
    assert len(speakers) == len(truth["speakers"]) == 2
    assert d["models"]["diarization"]["backend"] == "ge2e"
    assert d["models"]["diarization"]["revision"].startswith("resemblyzer==")
    said = {s["speaker"] for s in d["sentences"]}
    assert said == set(speakers) and all(w["speaker"] in speakers for s in d["sentences"] for w in s["words"])
    assert [s["speaker"] for s in d["speakers"]] == speakers
    assert sum(s["num_sentences"] for s in d["speakers"]) == len(d["sentences"])
    assert sum(s["share"] for s in d["speakers"]) == pytest.approx(1.0)
    # a sentence lies inside its speaker's turns for most of its span
    for s in d["sentences"]:
        own = [t for t in d["diarization"]["turns"] if t["speaker"] == s["speaker"]]
        covered = sum(max(0.0, min(t["end"], s["end"]) - max(t["start"], s["start"])) for t in own)
        assert covered >= 0.5 * (s["end"] - s["start"]), s
    # the RTTM reads back as the same turns, under the recording's name
    rttm = Diarization.from_rttm((out / "diarization.rttm").read_text(), file_id="conv1")
    assert [t.speaker for t in rttm.turns] == [t["speaker"] for t in d["diarization"]["turns"]]
    assert [round(t.start, 3) for t in rttm.turns] == [
        round(t["start"], 3) for t in d["diarization"]["turns"]
    ]
    rows = read_csv(out / "sentences.csv")
    assert [r["speaker"] for r in rows] == [s["speaker"] for s in d["sentences"]]
    table = read_csv(out / "speakers.csv")
    assert [r["speaker"] for r in table] == speakers
    assert all(float(r["talk_time_s"]) > 1 and r["dominant_voice"] and r["dominant_text"] for r in table)
    cues = [b.splitlines()[2] for b in (out / "transcript.srt").read_text().strip().split("\n\n")]
    assert len(cues) == len(d["sentences"])
    assert all(c == f"[{s['speaker']}] {s['text']}" for c, s in zip(cues, d["sentences"], strict=True))


@pytest.mark.slow
@needs_ge2e
def test_one_speaker_comes_back_as_one_speaker(diarised: Path) -> None:
    d = json.loads((diarised / "three_moods" / "result.json").read_text(encoding="utf-8"))
    assert d["diarization"]["speakers"] == ["SPEAKER_00"]
    assert {s["speaker"] for s in d["sentences"]} == {"SPEAKER_00"}
    assert len(read_csv(diarised / "three_moods" / "speakers.csv")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--diarize", "--speakers", "0"], "speakers must be at least 1"),
        (["--diarize", "--speakers", "-1"], "speakers must be at least 1"),
        (["--diarize", "--min-speakers", "3", "--max-speakers", "2"], "min_speakers (3) is more than"),
        (["--speakers", "2"], "--speakers needs --diarize"),
    ],
)
def test_bad_speaker_counts_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    wav = need_shared("data", "conversations", "conv2.wav")
    r = run_cli_in_process("analyze", str(wav), "--out", str(tmp_path / "out"), *args)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_pyannote_without_its_model_fails_fast_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyannote.audio missing, or its gated model absent offline: exit 4 in under 5 s, before any
    other model loads and before anything is written."""
    from emoflow.diarization import pyannote_backend as pb

    for k in pb.TOKEN_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    wav = need_shared("data", "conversations", "conv3.wav")
    t0 = time.perf_counter()
    r = run_cli_in_process(
        "analyze",
        str(wav),
        "--out",
        str(tmp_path / "out"),
        "--diarize",
        "--diarizer",
        "pyannote",
        "--offline",
    )
    assert r.returncode == 4, r.stderr
    assert time.perf_counter() - t0 < 5
    assert "pip install" in r.stderr or "HF_TOKEN" in r.stderr or "offline" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "conv3").exists()
