"""emotion2vec on a tiny replica loaded through FunASR: shapes, labels, batching, timeline."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoflow.audio.io import Audio
from emoflow.errors import ConfigError, ModelError
from emoflow.speech.emotion2vec import Emotion2vecEncoder, TimelineConfig, english_label, window_spans
from emoflow.types import TimeSpan

LABELS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")


def speechlike(seconds: float, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return Audio((x + 0.02 * rng.standard_normal(t.size)).astype(np.float32))


def test_labels_and_shapes(e2v):
    assert e2v.labels == LABELS
    r = e2v.utterance(speechlike(3.0))
    assert r.embedding.shape == (e2v.dim,) and r.embedding.dtype == np.float32
    assert sum(r.scores.scores) == pytest.approx(1.0, abs=1e-5)
    assert english_label("生气/angry") == "angry" and english_label("<unk>") == "unknown"


def test_matches_funasr_generate(e2v):
    audio = speechlike(2.5, seed=1)
    ref = e2v.automodel.generate(audio.samples, granularity="utterance", extract_embedding=True)[0]
    ours = e2v.utterance(audio)
    np.testing.assert_allclose(ours.scores.scores, ref["scores"], atol=1e-5)
    np.testing.assert_allclose(ours.embedding, ref["feats"], atol=1e-4)


def test_batched_spans_equal_one_by_one(e2v):
    audio = speechlike(12.0, seed=2)
    spans = [
        TimeSpan(0.0, 2.0),
        TimeSpan(1.3, 4.9),
        TimeSpan(5.0, 5.1),
        TimeSpan(6.0, 11.5),
        TimeSpan(3.0, 3.9),
    ]
    batched = e2v.spans(audio, spans)
    single = [e2v.spans(audio, [s])[0] for s in spans]
    for b, s in zip(batched, single):
        np.testing.assert_allclose(b.embedding, s.embedding, atol=1e-4)
        np.testing.assert_allclose(b.scores.scores, s.scores.scores, atol=1e-5)


def test_long_inputs_are_cut(e2v):
    audio = speechlike(9.0, seed=3)
    short = Emotion2vecEncoder(e2v.spec, model=e2v.automodel, max_input_s=4.0)
    r = short.utterance(audio)  # three pieces of 3 s, frames pooled
    assert r.embedding.shape == (e2v.dim,) and sum(r.scores.scores) == pytest.approx(1.0, abs=1e-5)
    pieces = [audio.samples[i * 48000 : (i + 1) * 48000] for i in range(3)]
    sums, counts = e2v._frame_sums(pieces)
    np.testing.assert_allclose(r.embedding, sums.sum(0) / counts.sum(), atol=1e-4)


@pytest.mark.parametrize("mode", ["exact", "pooled"])
def test_timeline_covers_the_whole_file(e2v, mode):
    audio = speechlike(10.06, seed=4)
    tl = e2v.timeline(audio, TimelineConfig(window_s=3, hop_s=1, mode=mode, chunk_s=4.0))
    assert tl.spans[0].start == 0 and tl.spans[-1].end == pytest.approx(audio.duration)
    assert len(tl.spans) == 9 and tl.scores.shape == (9, 9) and tl.embeddings.shape == (9, e2v.dim)
    np.testing.assert_allclose(tl.scores.sum(1), 1.0, atol=1e-5)
    assert tl.to_dict()["labels"] == list(LABELS)


def test_exact_timeline_equals_spans(e2v):
    audio = speechlike(6.5, seed=5)
    tl = e2v.timeline(audio, TimelineConfig(mode="exact"))
    ref = e2v.spans(audio, list(tl.spans))
    np.testing.assert_allclose(tl.embeddings, np.stack([r.embedding for r in ref]), atol=1e-4)


def test_pooled_is_close_to_frames_of_one_pass(e2v):
    """With a chunk as long as the audio, pooled windows are exact means of one pass's frames."""
    audio = speechlike(8.0, seed=6)
    tl = e2v.timeline(audio, TimelineConfig(mode="pooled", chunk_s=10.0))
    src, pad, valid = e2v.preprocess([audio.samples])
    frames = e2v.forward(src, pad, valid).numpy()[0]
    centres = (np.arange(len(frames)) * 320 + 200) / 16000
    for span, emb in zip(tl.spans, tl.embeddings):
        sel = (centres >= span.start) & (centres < span.end)
        np.testing.assert_allclose(emb, frames[sel].mean(0), atol=1e-4)
    utt, _ = e2v.utterance_and_timeline(audio, TimelineConfig(mode="pooled", chunk_s=10.0))
    np.testing.assert_allclose(utt.embedding, e2v.utterance(audio).embedding, atol=1e-4)


def test_short_audio_gives_one_window(e2v):
    tl = e2v.timeline(speechlike(1.2), TimelineConfig(window_s=3, hop_s=1))
    assert [(s.start, s.end) for s in tl.spans] == [(0.0, pytest.approx(1.2))]
    tl = e2v.timeline(speechlike(1.2), TimelineConfig(window_s=3, hop_s=1, mode="pooled"))
    assert len(tl.spans) == 1


@settings(max_examples=300, deadline=None)
@given(st.floats(0.05, 600), st.floats(0.5, 10), st.floats(0.1, 5))
def test_windows_cover_the_file_in_hops(duration, window, hop):
    hop = min(hop, window)
    spans = window_spans(duration, window, hop)
    assert spans[0].start == 0 and spans[-1].end == pytest.approx(duration)
    for k, s in enumerate(spans):
        assert s.start == pytest.approx(k * hop, abs=1e-5) and s.duration <= window + 1e-5
    for a, b in zip(spans, spans[1:]):
        assert b.start <= a.end + 1e-5  # no gaps (times are rounded to the microsecond)


def test_bad_settings_and_inputs(e2v):
    with pytest.raises(ConfigError):
        TimelineConfig(window_s=0)
    with pytest.raises(ConfigError):
        TimelineConfig(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least 400"):
        e2v.embed([np.zeros(100, np.float32)])


def test_base_model_without_head_is_refused(e2v, tmp_path):
    class Headless:
        model = e2v.automodel.model
        kwargs = e2v.automodel.kwargs

    proj = Headless.model.proj
    try:
        Headless.model.proj = None
        with pytest.raises(ModelError, match="no classification head"):
            Emotion2vecEncoder(e2v.spec, model=Headless())
    finally:
        Headless.model.proj = proj
