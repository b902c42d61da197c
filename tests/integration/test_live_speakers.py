"""Live speaker attribution with the REAL GE2E weights (the ``resemblyzer`` wheel) on a shared
conversation, streamed through the stream's own VAD (Endpointer) segment by segment.

Bounds from benchmarks/bench_diarization.py --live (docs/performance.md): on conv1 the final
result gave DER 0.090 (offline GE2E on the whole file: 0.086) and the labels as first shown live
0.205 (pyannote collar 0.25 s). The bounds leave a margin for float differences between
machines, not for regressions.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from emoflow.audio.io import TARGET_RATE, load_audio
from emoflow.diarization import Diarization, SpeakerTurn
from emoflow.types import TimeSpan
from tests.helpers import need_shared

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("resemblyzer") is None,
    reason="live speakers need the offline diarisation backend (pip install 'emoflow[diarization]')",
)


@pytest.fixture(scope="module")
def diarizer():
    from emoflow.diarization.offline import OfflineDiarizer

    return OfflineDiarizer(device="cpu")


def _conversation() -> Path:
    wav = need_shared("data", "conversations") / "conv1.wav"
    if not wav.exists():
        pytest.skip("no conv1.wav in ../shared/data/conversations")
    return wav


def _truth(wav: Path) -> list[SpeakerTurn]:
    d = json.loads(wav.with_name(wav.stem + ".truth.json").read_text())
    return [SpeakerTurn(TimeSpan(t["start"], t["end"]), t["speaker"]) for t in d["turns"]]


def _stream(live, samples: np.ndarray, chunk: int) -> list[SpeakerTurn]:  # type: ignore[no-untyped-def]
    """The conversation in chunks of ``chunk`` samples through the Endpointer; each closed segment
    into ``live`` with the audio a session gives it. Returns the turns as first shown."""
    from emoflow.streaming.vad import Endpointer

    ep = Endpointer(0.6, 28.0)
    shown: list[SpeakerTurn] = []
    pos = 0
    while True:
        last = pos >= len(samples)
        segments = ep.finish() if last else ep.feed(samples[pos : pos + chunk])
        pos += chunk
        for seg in segments:
            a = round(live.audio_start(seg.span) * TARGET_RATE)
            b = min(len(samples), round((seg.span.end + 0.3) * TARGET_RATE))
            shown.extend(live.add(samples[a:b], a / TARGET_RATE, list(seg.regions)))
        if last:
            return shown


def test_live_speakers_on_a_shared_conversation(diarizer):
    pytest.importorskip("pyannote.metrics", reason="DER needs pyannote.metrics (the dev extra)")
    from emoflow.diarization.metrics import DiarizationEvaluator
    from emoflow.streaming.speakers import LiveSpeakers

    wav = _conversation()
    audio = load_audio(wav)
    truth = _truth(wav)
    live = LiveSpeakers(diarizer)
    shown = _stream(live, audio.samples, 3917)
    final = live.result()
    assert isinstance(final, Diarization)
    assert final.num_speakers == 2 and final.backend["live"] is True
    first = DiarizationEvaluator(collar=0.25)(truth, shown, audio.duration).der
    end = DiarizationEvaluator(collar=0.25)(truth, list(final.turns), audio.duration).der
    offline = DiarizationEvaluator(collar=0.25)(truth, list(diarizer(audio).turns), audio.duration).der
    assert end <= 0.15 and end <= offline + 0.05, (end, offline)
    assert first <= 0.30, first
    # the turns shown live never overlap each other and cover what the final result covers
    spans = sorted((t.start, t.end) for t in shown)
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(spans, spans[1:]))
    covered = sum(t.duration for t in final.turns)
    assert sum(t.duration for t in shown) == pytest.approx(covered, abs=1e-3)
    assert live.num_items <= 200 and live.timings["embed"] > 0


def test_live_speakers_from_config_is_ge2e_even_for_pyannote(diarizer):
    from emoflow.config import PipelineConfig
    from emoflow.streaming.speakers import LiveSpeakers

    cfg = PipelineConfig(diarize=True, diarizer="pyannote", max_speakers=3)
    live = LiveSpeakers.from_config(cfg, diarizer)  # a pyannote pipeline is never loaded
    assert live.diarizer is diarizer and live.count.maximum == 3
    wav = _conversation()
    samples = load_audio(wav).samples[: 6 * TARGET_RATE]
    turns = live.add(samples, 0.0, [TimeSpan(0.5, 5.5)])
    assert turns and {t.speaker for t in turns} <= {"SPEAKER_00", "SPEAKER_01", "SPEAKER_02"}
    d = live.result()
    assert d.backend["requested"] == "pyannote" and d.backend["backend"] == "ge2e"


@pytest.mark.slow
def test_a_diarised_stream_names_speakers_live_and_saves_them(replica_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``diarize=True`` through a StreamSession (Whisper tiny.en, replicas, the real GE2E): every
    sentence event names a speaker; the end result holds the final diarisation (two speakers on
    conv1, sentence speakers from it) and saves diarization.rttm and speakers.csv."""
    from dataclasses import replace

    from emoflow.pipeline import Pipeline
    from emoflow.streaming import StreamSession

    wav = _conversation()
    samples = load_audio(wav).samples
    session = StreamSession(Pipeline(replace(replica_config, diarize=True)), TARGET_RATE, background=True)
    events = []
    for i in range(0, len(samples), 3200):
        events += session.feed(samples[i : i + 3200])
    events += session.finish()
    rows = [r for e in events if e.type == "sentence" for r in e.sentences]
    assert rows and all(r.sentence.speaker for r in rows)
    result = events[-1].result
    assert result.diarization is not None and len(result.diarization.speakers) == 2
    assert result.settings["diarize"] is True and "diarization" in result.models
    # each true speaker's sentences (by their middle) carry one label, a different one each
    by_true: dict[str, set[str]] = {}
    for r in result.sentences:
        mid = (r.sentence.start + r.sentence.end) / 2
        for t in _truth(wav):
            if t.span.start <= mid <= t.span.end:
                by_true.setdefault(t.speaker, set()).add(str(r.sentence.speaker))
    assert len(by_true) == 2 and all(len(v) == 1 for v in by_true.values())
    assert len(set().union(*by_true.values())) == 2
    out = result.save(tmp_path / "live")
    assert (out / "diarization.rttm").exists() and (out / "speakers.csv").exists()


def test_a_stream_with_a_speaker_count_keeps_it_for_its_live_speakers(replica_config) -> None:  # type: ignore[no-untyped-def]
    """``diarize`` with ``speakers``/``max_speakers``: the live speakers get the counts (the
    pipeline that recognises each segment diarises nothing, so it must not carry them)."""
    from dataclasses import replace

    from emoflow.pipeline import Pipeline
    from emoflow.streaming import StreamSession

    for counts, want in (({"speakers": 2}, (2, 2)), ({"min_speakers": 2, "max_speakers": 3}, (2, 3))):
        p = Pipeline(replace(replica_config, diarize=True, **counts))
        session = StreamSession(p, TARGET_RATE)
        assert session.live_speakers is not None and session.live_speakers.count.bounds() == want
        assert session.config.speakers is None and not session.config.diarize
        session.close()
