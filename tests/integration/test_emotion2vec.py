"""emotion2vec on a tiny replica loaded through FunASR: shapes, labels, batching, timeline,
thread safety, the bfloat16 default and sentence spans from the pooled pass."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoflow.audio.io import Audio
from emoflow.config import TimelineConfig
from emoflow.errors import ConfigError, ModelError
from emoflow.inference import FrameEncoder, window_spans
from emoflow.models import ModelSpec
from emoflow.protocols import AudioEmotionModel
from emoflow.speech.emotion2vec import Emotion2vecEncoder, english_label
from emoflow.types import TimeSpan

LABELS = ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown")


@pytest.fixture(scope="module")
def e2v(replicas):
    """float32 explicitly (dtype ``auto`` is bfloat16 on CPUs with native bf16): these tests
    compare with FunASR's own float32 code and between batchings at tight tolerances."""
    return Emotion2vecEncoder(ModelSpec(str(replicas["emotion2vec"]), dtype="float32"), batch_size=4)


@pytest.fixture(scope="module")
def e2v_bf16(replicas):
    return Emotion2vecEncoder(ModelSpec(str(replicas["emotion2vec"]), dtype="bfloat16"), batch_size=4)


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


def test_conforms_to_the_stage_protocols(e2v):
    """The pipeline's seam (AudioEmotionModel) and the inference component's (FrameEncoder);
    provenance comes from the spec (never loads) and is what results record."""
    assert isinstance(e2v, AudioEmotionModel) and isinstance(e2v, FrameEncoder)
    assert e2v.inference.encoder is e2v
    assert e2v.provenance().to_dict() == e2v.spec.record().to_dict()
    frames, counts = e2v.frames([speechlike(1.0).samples, speechlike(0.5).samples])
    assert frames.shape == (2, 49, e2v.dim) and frames.dtype == np.float32 and list(counts) == [49, 24]


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
    sums, counts = e2v.inference.frame_sums(pieces)
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
    frames = e2v.frames([audio.samples])[0][0]
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


# ---- issue 10.4: padding hooks once per model, the mask per call ----------------------------
def _position_convs(enc):
    import torch

    encoder = enc.net.modality_encoders["AUDIO"].relative_positional_encoder
    return [m for m in encoder.modules() if isinstance(m, torch.nn.Conv1d)]


def test_padding_hooks_are_registered_once_per_model(e2v):
    convs = _position_convs(e2v)
    assert convs and all(len(m._forward_pre_hooks) == 1 for m in convs)
    for batch in (2, 3, 5):  # the pipeline, the service's workers, the fusion features ...
        Emotion2vecEncoder(e2v.spec, model=e2v.automodel, batch_size=batch)
    assert all(len(m._forward_pre_hooks) == 1 for m in convs)


def test_two_threads_at_once_give_the_sequential_results(e2v):
    """Two requests sharing one encoder (``serve --workers 2``) inside forward at the same time:
    each must use its own padding mask. A barrier holds both threads inside their first
    forward (after the mask is set, before the positional encoder reads it)."""
    jobs = {
        "a": (speechlike(7.0, seed=11), [TimeSpan(0.0, 1.1), TimeSpan(1.5, 4.4), TimeSpan(4.6, 6.9)]),
        "b": (speechlike(5.3, seed=12), [TimeSpan(0.2, 2.9), TimeSpan(3.0, 3.7)]),
    }
    sequential = {k: e2v.spans(a, s) for k, (a, s) in jobs.items()}
    barrier = threading.Barrier(2, timeout=60)
    waited: set[int] = set()

    def hold(module, args):
        me = threading.get_ident()
        if me not in waited:
            waited.add(me)
            barrier.wait()  # raises BrokenBarrierError after 60 s instead of hanging

    results: dict[str, object] = {}

    def run(key):
        audio, spans = jobs[key]
        try:
            results[key] = e2v.spans(audio, spans)
        except BaseException as e:  # reported below, in the test's thread
            results[key] = e

    handle = e2v.net.modality_encoders["AUDIO"].local_encoder.register_forward_pre_hook(hold)
    try:
        threads = [threading.Thread(target=run, args=(k,)) for k in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        handle.remove()
    assert not any(t.is_alive() for t in threads)
    for key, ref in sequential.items():
        got = results[key]
        assert not isinstance(got, BaseException), f"thread {key}: {got!r}"
        for g, r in zip(got, ref, strict=True):  # type: ignore[call-overload]
            np.testing.assert_array_equal(g.embedding, r.embedding)
            assert g.scores == r.scores


# ---- issue 16.1: dtype auto = bfloat16 on CPUs with native bf16 -----------------------------
def test_dtype_auto_follows_the_cpu(e2v, monkeypatch):
    import torch

    import emoflow.models

    spec = ModelSpec(e2v.spec.id, device="cpu")
    monkeypatch.setattr(emoflow.models, "cpu_has_native_bf16", lambda: True)
    assert Emotion2vecEncoder(spec, model=e2v.automodel).dtype == torch.bfloat16
    opt_out = ModelSpec(e2v.spec.id, device="cpu", dtype="float32")
    assert Emotion2vecEncoder(opt_out, model=e2v.automodel).dtype == torch.float32
    monkeypatch.setattr(emoflow.models, "cpu_has_native_bf16", lambda: False)
    assert Emotion2vecEncoder(spec, model=e2v.automodel).dtype == torch.float32


def test_bfloat16_stays_close_to_float32(e2v, e2v_bf16):
    """The bound the README quotes: scores, top labels and embeddings against float32."""
    audio = speechlike(9.3, seed=13)
    spans = [TimeSpan(0.0, 2.2), TimeSpan(2.5, 6.1), TimeSpan(6.4, 9.3)]
    c = TimelineConfig(mode="pooled", chunk_s=4.0)
    ref, got = e2v.analyze(audio, spans, c), e2v_bf16.analyze(audio, spans, c)
    assert (ref.dtype, got.dtype) == ("float32", "bfloat16")
    s32 = np.vstack([ref.timeline.scores, [r.scores.scores for r in (*ref.spans, ref.utterance)]])
    s16 = np.vstack([got.timeline.scores, [r.scores.scores for r in (*got.spans, got.utterance)]])
    assert np.abs(s32 - s16).max() < 5e-3  # 8e-4 here
    assert np.mean(s32.argmax(1) == s16.argmax(1)) >= 0.9  # 100% here
    e32 = np.vstack([ref.timeline.embeddings, [r.embedding for r in (*ref.spans, ref.utterance)]])
    e16 = np.vstack([got.timeline.embeddings, [r.embedding for r in (*got.spans, got.utterance)]])
    cos = (e32 * e16).sum(1) / np.linalg.norm(e32, axis=1) / np.linalg.norm(e16, axis=1)
    assert cos.min() > 0.9995  # 0.99999 here
    assert e16.dtype == np.float32


# ---- issue 16.2: sentence spans from the pooled pass ----------------------------------------
SENTENCES = [TimeSpan(0.3, 2.9), TimeSpan(3.1, 3.2), TimeSpan(3.4, 7.65), TimeSpan(7.7, 8.4)]


def test_pooled_spans_are_means_of_the_one_pass(e2v):
    audio = speechlike(8.45, seed=14)
    c = TimelineConfig(mode="pooled", chunk_s=10.0)  # one chunk: frames of one forward pass
    voice = e2v.analyze(audio, SENTENCES, c)
    assert voice.span_method == "pooled" and voice.describe() == {"span_method": "pooled", "dtype": "float32"}
    frames = e2v.frames([audio.samples])[0][0]
    centres = (np.arange(len(frames)) * 320 + 200) / 16000
    for span, r in zip(SENTENCES, voice.spans, strict=True):
        w = e2v.inference.widen(audio, span)  # 3.1-3.2 is widened to 0.25 s, as in exact mode
        sel = (centres >= w.start) & (centres < w.end)
        np.testing.assert_allclose(r.embedding, frames[sel].mean(0), atol=1e-4)
        np.testing.assert_allclose(r.scores.scores, e2v.head(r.embedding[None])[0], atol=1e-6)
    utt, tl = e2v.utterance_and_timeline(audio, c)
    np.testing.assert_array_equal(voice.timeline.embeddings, tl.embeddings)
    np.testing.assert_array_equal(voice.utterance.embedding, utt.embedding)


def test_pooled_voice_side_is_one_pass(e2v, monkeypatch):
    """Spans add no forward pass: the chunks of the timeline are all the model runs."""
    audio = speechlike(9.5, seed=15)
    calls = []
    frames = e2v.frames
    monkeypatch.setattr(e2v, "frames", lambda waves: calls.append(len(waves)) or frames(waves))
    voice = e2v.analyze(audio, SENTENCES, TimelineConfig(mode="pooled", chunk_s=4.0))
    assert len(calls) == 3 and len(voice.spans) == len(SENTENCES)  # chunks at 0, 4 and 8 s
    calls.clear()
    e2v.analyze(audio, SENTENCES, TimelineConfig(mode="pooled", chunk_s=4.0), span_method="exact")
    assert len(calls) > 3  # today's method: every span again


def test_exact_mode_is_unchanged(e2v):
    """``exact``: spans, utterance and timeline are exactly what the separate calls give."""
    audio = speechlike(6.2, seed=16)
    voice = e2v.analyze(audio, SENTENCES[:3], TimelineConfig(mode="exact"))
    assert voice.span_method == "exact"
    for r, ref in zip(voice.spans, e2v.spans(audio, SENTENCES[:3]), strict=True):
        np.testing.assert_array_equal(r.embedding, ref.embedding)
        assert r.scores == ref.scores
    utt, tl = e2v.utterance_and_timeline(audio, TimelineConfig(mode="exact"))
    np.testing.assert_array_equal(voice.timeline.scores, tl.scores)
    np.testing.assert_array_equal(voice.utterance.embedding, utt.embedding)
    assert e2v.analyze(audio, [], TimelineConfig(mode="pooled")).spans == ()
    with pytest.raises(ConfigError, match="span method"):
        e2v.analyze(audio, SENTENCES, span_method="fast")  # type: ignore[arg-type]


def test_the_result_says_how_spans_were_computed(e2v):
    import jsonschema

    from emoflow.config import PipelineConfig
    from emoflow.pipeline import Pipeline, Work
    from emoflow.results import result_schema
    from emoflow.types import Sentence

    audio = speechlike(6.0, seed=17)
    sentences = [Sentence(0, "One.", TimeSpan(0.2, 2.6)), Sentence(1, "Two.", TimeSpan(2.9, 5.8))]
    schema = result_schema()
    for mode in ("pooled", "exact"):
        pipe = Pipeline(PipelineConfig(timeline=TimelineConfig(mode=mode)), audio_encoder=e2v)
        work = pipe.stage_audio(Work(None, audio=audio, sentences=sentences))
        assert work.voice == {"span_method": mode, "dtype": "float32"}
        assert work.audio_emb.shape == (2, e2v.dim) and len(work.audio_scores) == 2
        jsonschema.validate({"voice": work.voice}, {**schema, "required": []})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"voice": {"span_method": "fast"}}, {**schema, "required": []})


def test_bfloat16_fused_attention_matches_funasrs_attention(e2v_bf16):
    """The fused attention of low-precision models computes what FunASR's attention does,
    padding included (batched = one by one)."""
    from funasr.models.emotion2vec.modules import AltAttention

    audio = speechlike(7.4, seed=18)
    spans = [TimeSpan(0.0, 2.3), TimeSpan(2.0, 6.9), TimeSpan(4.1, 5.0)]
    fused = e2v_bf16.spans(audio, spans)
    mods = [m for m in e2v_bf16.net.modules() if isinstance(m, AltAttention)]
    assert mods and all("forward" in vars(m) for m in mods)
    saved = [vars(m).pop("forward") for m in mods]
    try:
        original = e2v_bf16.spans(audio, spans)
    finally:
        for m, f in zip(mods, saved, strict=True):
            m.forward = f
    single = [e2v_bf16.spans(audio, [s])[0] for s in spans]
    for f, o, s in zip(fused, original, single, strict=True):
        cos = f.embedding @ o.embedding / np.linalg.norm(f.embedding) / np.linalg.norm(o.embedding)
        assert cos > 0.999
        np.testing.assert_allclose(f.scores.scores, o.scores.scores, atol=2e-2)
        np.testing.assert_allclose(f.embedding, s.embedding, atol=0.05 * np.abs(s.embedding).max())
