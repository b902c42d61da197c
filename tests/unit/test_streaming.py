"""The live session (emoflow.streaming): its events equal the offline analysis of the same
recording, whatever the chunk sizes; the WebSocket protocol's messages and frames."""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pytest

from emoflow.streaming.protocol import ProtocolError, StreamStart, decode_frame, encode_frame, parse_start


# ---- protocol ----------------------------------------------------------------------------------
def test_start_message_is_checked() -> None:
    s = parse_start('{"type": "start", "sample_rate": 44100, "encoding": "f32le", "channels": 2}')
    assert (s.sample_rate, s.encoding, s.channels, s.frame_bytes) == (44100, "f32le", 2, 8)
    assert parse_start(s.to_json()) == s
    for text, said in [
        ("nope", "JSON start message"),
        ('{"type": "audio"}', '"type": "start"'),
        ('{"type": "start", "sample_rate": 16000, "encoding": "mp3"}', "unknown encoding 'mp3'"),
        ('{"type": "start", "sample_rate": 123}', "sample_rate"),
        ('{"type": "start", "sample_rate": 16000, "channels": 0}', "channels"),
        ('{"type": "start", "sample_rate": 16000, "rate": 1}', "unknown start fields: rate"),
        ('{"type": "start", "sample_rate": 16000, "end_silence_s": 99}', "end_silence_s"),
    ]:
        with pytest.raises(ProtocolError, match=re.escape(said)):
            parse_start(text)


def test_frames_decode_and_refuse_partial_samples() -> None:
    start = StreamStart(16000, "pcm_s16le", 2)
    x = np.array([[0.5, -0.25], [1.0, -1.0], [0.0, 0.125]], np.float32)
    back = decode_frame(encode_frame(x, "pcm_s16le"), start)
    assert back.shape == (3, 2) and np.allclose(back, x, atol=1e-4)
    with pytest.raises(ProtocolError, match="7 bytes is not a whole number of 2-channel pcm_s16le"):
        decode_frame(b"\x00" * 7, start)
    f32 = StreamStart(8000, "f32le", 1)
    assert np.array_equal(decode_frame(encode_frame(x[:, 0], "f32le"), f32)[:, 0], x[:, 0])
    with pytest.raises(ProtocolError, match="NaN"):
        decode_frame(np.array([np.nan], "<f4").tobytes(), f32)


# ---- the session against the offline analysis ----------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(replica_config):  # type: ignore[no-untyped-def]
    from emoflow.pipeline import Pipeline

    return Pipeline(replica_config)


def stream_in_chunks(session, samples: np.ndarray, seed: int, low: int, high: int) -> list:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    events, i = [], 0
    while i < len(samples):
        n = int(rng.integers(low, high))
        events += session.feed(samples[i : i + n])
        i += n
    return events + session.finish()


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", text.lower())


@pytest.mark.slow
def test_stream_equals_offline_analysis(pipeline, shared: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from emoflow.audio.io import load_audio
    from emoflow.results import Result
    from emoflow.streaming import StreamSession

    src = shared / "audio" / "speech" / "interview.wav"
    offline = pipeline.analyze(src)
    samples = load_audio(src).samples
    # the recogniser hears each region with the context analyze gives it (the default 8 s is faster)
    session = StreamSession(pipeline, 16000, asr_context_s=30.0)
    events = stream_in_chunks(session, samples, seed=14, low=37, high=7001)
    kinds = [e.type for e in events]
    assert kinds[-1] == "end" and kinds.count("end") == 1

    windows = [e for e in events if e.type == "window"]
    assert [w.index for w in windows] == list(range(len(windows)))
    assert tuple(w.span for w in windows) == offline.timeline.spans
    live = np.stack([w.scores.scores for w in windows])
    assert np.abs(live - offline.timeline.scores).max() < 1e-4

    sentences = [r for e in events if e.type == "sentence" for r in e.sentences]
    want = [r.sentence for r in offline.sentences]
    assert len(sentences) == len(want) == 5
    for got, ref in zip(sentences, want, strict=True):
        assert abs(got.sentence.start - ref.start) <= 0.1 and abs(got.sentence.end - ref.end) <= 0.1
        # Whisper tiny.en may hear a word differently with other context (here the misheard "city")
        assert SequenceMatcher(None, norm(got.sentence.text), norm(ref.text)).ratio() >= 0.75
        assert got.audio_emotion.labels == offline.sentences[0].audio_emotion.labels
    live_text = " ".join(norm(r.sentence.text) for r in sentences)
    off_text = " ".join(norm(s.text) for s in want)
    assert SequenceMatcher(None, live_text, off_text).ratio() >= 0.9
    assert [r.sentence.index for r in sentences] == list(range(5))

    end = events[-1]
    result = end.result
    assert end.summary["windows"] == len(windows) and end.summary["sentences"] == 5
    assert result.timeline.spans == offline.timeline.spans
    # the recording is under two max_input_s: the utterance is analyze's, exactly
    assert np.allclose(result.utterance.scores.scores, offline.utterance.scores.scores, atol=1e-4)
    assert result.audio_samples is not None and len(result.audio_samples) == len(samples)
    out = result.save(tmp_path / "live")
    back = Result.load(out)
    assert len(back.sentences) == 5 and back.timeline.spans == offline.timeline.spans


@pytest.mark.slow
def test_stereo_44k_stream_resamples_like_files(pipeline, shared: Path) -> None:  # type: ignore[no-untyped-def]
    """A 44.1 kHz stereo stream of float chunks: downmixed and resampled exactly as a file is, so
    its windows equal the offline timeline; background recognition gives the same sentences.
    In float32: with bf16 on CPU, how windows are batched together moves scores by ~1e-4."""
    from dataclasses import replace

    import soundfile as sf

    from emoflow.streaming import StreamSession

    pipeline = pipeline.derive(replace(pipeline.config, dtype="float32"))
    src = shared / "audio" / "speech" / "stereo_44k.wav"
    offline = pipeline.analyze(src)
    frames, rate = sf.read(src, dtype="float32")
    session = StreamSession(pipeline, rate, channels=2, background=True)
    events = stream_in_chunks(session, frames, seed=3, low=11, high=20011)
    windows = [e for e in events if e.type == "window"]
    assert tuple(w.span for w in windows) == offline.timeline.spans
    assert np.abs(np.stack([w.scores.scores for w in windows]) - offline.timeline.scores).max() < 1e-4
    sentences = [r.sentence for e in events if e.type == "sentence" for r in e.sentences]
    assert len(sentences) == len(offline.sentences)
    for got, ref in zip(sentences, offline.sentences, strict=True):
        assert abs(got.start - ref.sentence.start) <= 0.1 and abs(got.end - ref.sentence.end) <= 0.1
    assert events[-1].result.source.sample_rate == rate and events[-1].result.source.channels == 2


def test_silence_gives_windows_and_no_sentences(pipeline) -> None:  # type: ignore[no-untyped-def]
    from emoflow.errors import AudioError
    from emoflow.inference.windows import window_spans
    from emoflow.streaming import StreamSession

    session = StreamSession(pipeline, 16000)
    quiet = np.zeros(int(16000 * 4.3), np.float32)
    events = stream_in_chunks(session, quiet, seed=1, low=500, high=3001)
    assert [e.type for e in events].count("sentence") == 0
    assert [e.span for e in events if e.type == "window"] == window_spans(4.3, 3.0, 1.0)
    assert events[-1].summary["sentences"] == 0
    short = StreamSession(pipeline, 16000)
    short.feed(np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="the stream is only 100 samples"):
        short.finish()


@pytest.mark.slow
def test_live_sentences_carry_fused_scores_like_the_result(pipeline, shared: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With a fusion model, every sentence event carries ``fused`` scores, the same the final
    Result gives (and ``analyze`` would: audio ⊕ text embeddings of the sentence)."""
    from emoflow.audio.io import load_audio
    from emoflow.fusion.feature_record import FeatureInfo
    from emoflow.fusion.model import FusionConfig
    from emoflow.fusion.train import FusionClassifier, TrainConfig, save_checkpoint, train_model
    from emoflow.pipeline import Pipeline
    from emoflow.streaming import StreamSession
    from emoflow.testing.synthetic import separable

    da, dt = pipeline.audio_encoder.dim, pipeline.sequence_embedder.dim
    assert da != dt
    a, t, y = separable("joint", 48, 5, da, dt)
    labels = ("anger", "joy", "neutral", "sadness")
    model, _ = train_model(a, t, y, FusionConfig(da, dt, labels, d=24), TrainConfig(epochs=1))
    save_checkpoint(tmp_path / "m", model, FeatureInfo.of(pipeline.config), TrainConfig(), {})
    p = pipeline
    fused_pipeline = Pipeline(
        p.config,
        transcriber=p.transcriber,
        audio_encoder=p.audio_encoder,
        text_classifier=p.text_classifier,
        sequence_embedder=p.sequence_embedder,
        fusion=FusionClassifier.load(tmp_path / "m"),
    )
    samples = load_audio(shared / "audio" / "speech" / "three_moods.wav").samples
    events = stream_in_chunks(StreamSession(fused_pipeline, 16000), samples, seed=5, low=800, high=9000)
    rows = [r for e in events if e.type == "sentence" for r in e.sentences]
    final = events[-1].result.sentences
    assert rows and len(rows) == len(final)
    for live, end in zip(rows, final, strict=True):
        assert live.fused is not None and live.fused.labels == labels
        assert np.allclose(live.fused.scores, end.fused.scores, atol=1e-6)
    first = next(e for e in events if e.type == "sentence").to_dict()["sentences"][0]
    assert sorted(first["fused"]["labels"]) == sorted(labels)  # the JSON event carries them too


@pytest.mark.slow
def test_a_sentence_running_on_over_a_pause_loses_no_words(pipeline, shared: Path) -> None:  # type: ignore[no-untyped-def]
    """JFK's one sentence has pauses longer than the end-of-speech silence: each region closes
    on its own, and the recogniser hears the earlier ones again as context. The sentence it then
    runs on from the context keeps its new words (they were once dropped with the context)."""
    from emoflow.audio.io import load_audio
    from emoflow.streaming import StreamSession

    src = shared / "audio" / "jfk.flac"
    offline = pipeline.analyze(src)
    events = stream_in_chunks(
        StreamSession(pipeline, 16000), load_audio(src).samples, seed=2, low=900, high=5000
    )
    rows = [r for e in events if e.type == "sentence" for r in e.sentences]
    assert len(rows) > 1  # a live sentence ends where its region closes
    live_text = " ".join(norm(r.sentence.text) for r in rows)
    off_text = " ".join(norm(r.sentence.text) for r in offline.sentences)
    assert SequenceMatcher(None, live_text, off_text).ratio() >= 0.9, (live_text, off_text)
    words = events[-1].result.transcript.words
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))


@pytest.mark.slow
def test_a_pooled_live_timeline_equals_analyze_with_its_chunks(pipeline, shared: Path) -> None:  # type: ignore[no-untyped-def]
    """``timeline="pooled"`` live: the chunks of analyze's pooled pass, 3 s long (a window waits
    for its chunk); windows, the timeline and the utterance equal analyze's pooled ones with
    those chunks, and the result's settings say which chunks were used."""
    from dataclasses import replace

    from emoflow import config as cfg
    from emoflow.audio.io import load_audio
    from emoflow.streaming import StreamSession

    c = replace(pipeline.config, dtype="float32", timeline=replace(pipeline.config.timeline, mode="pooled"))
    assert c.timeline.chunk_s != cfg.STREAM_POOLED_CHUNK_S  # analyze's default chunks are longer
    p = pipeline.derive(c)
    audio = load_audio(shared / "audio" / "speech" / "interview.wav")
    live_tl = replace(c.timeline, chunk_s=cfg.STREAM_POOLED_CHUNK_S)
    utt, tl = p.audio_encoder.utterance_and_timeline(audio, live_tl)
    events = stream_in_chunks(
        StreamSession(p, 16000, background=True), audio.samples, seed=9, low=50, high=9000
    )
    windows = [e for e in events if e.type == "window"]
    assert tuple(w.span for w in windows) == tl.spans
    assert np.abs(np.stack([w.embedding for w in windows]) - tl.embeddings).max() < 1e-4
    result = events[-1].result
    assert result.timeline.mode == "pooled" and np.abs(result.timeline.scores - tl.scores).max() < 1e-4
    assert np.abs(result.utterance.embedding - utt.embedding).max() < 1e-4
    assert result.settings["timeline"]["chunk_s"] == cfg.STREAM_POOLED_CHUNK_S
    # a window's lag counts from its own last sample: it includes the wait for its chunk
    assert all(w.lag_s >= 0 for w in windows)


@pytest.mark.slow
def test_recognising_early_gives_the_same_sentences(pipeline, shared: Path) -> None:  # type: ignore[no-untyped-def]
    """With a background recogniser, a region followed by ``early_asr_s`` of silence is
    recognised before it closes; when it closes unchanged that result is used, so the sentences
    are exactly those of a session that waits for the close."""
    from emoflow.audio.io import load_audio
    from emoflow.streaming import StreamSession

    samples = load_audio(shared / "audio" / "speech" / "interview.wav").samples
    runs = {}
    for early in (0.35, None):
        session = StreamSession(pipeline, 16000, background=True, early_asr_s=early)
        events = stream_in_chunks(session, samples, seed=4, low=400, high=2400)
        runs[early] = ([r.sentence for e in events if e.type == "sentence" for r in e.sentences], events[-1])
    (live, end), (waited, end_waited) = runs[0.35], runs[None]
    assert [(s.text, s.span) for s in live] == [(s.text, s.span) for s in waited] and len(live) == 5
    assert end.summary["early_asr"]["used"] >= 3  # the interview's pauses are longer than 0.6 s
    assert end_waited.summary["early_asr"] == {"used": 0, "discarded": 0}
    assert end.result.to_dict()["sentences"] == end_waited.result.to_dict()["sentences"]


def test_odd_samples_and_settings_are_refused_or_read_right(pipeline) -> None:  # type: ignore[no-untyped-def]
    from emoflow.errors import AudioError, ConfigError
    from emoflow.streaming import StreamSession

    s = StreamSession(pipeline, 16000)
    with pytest.raises(AudioError, match="float samples must lie about -1..1, got 1e"):
        s.feed(np.full(1600, 1e30, np.float32))  # finite, but the models would give NaN
    u8 = s._mono(np.array([0, 128, 255], np.uint8))  # offset binary: centred, not 0..1
    assert np.allclose(u8, [-1.0, 0.0, 1.0], atol=0.01)
    for kwargs, said in [
        ({"asr_context_s": float("nan")}, "asr_context_s must be from 0 to 30 s"),
        ({"asr_context_s": -5}, "asr_context_s must be from 0 to 30 s"),
        ({"max_segment_s": 0.01}, "max_segment_s must be from 1 to 30 s"),
        ({"early_asr_s": 0.7}, "early_asr_s must be from 0.3 s up to end_silence_s (0.6 s)"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(said)):
            StreamSession(pipeline, 16000, **kwargs)
