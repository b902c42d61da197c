"""The inference component on its own (issue 12.5): any frame-level encoder fits, with or
without a head. A context-free fake encoder (one frame per sample, the frame = the sample)
makes every result a plain mean of samples, so exact and pooled agree and are checkable."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from emoflow.audio.io import Audio
from emoflow.config import TimelineConfig
from emoflow.errors import ConfigError
from emoflow.inference import FrameEncoder, Inference, batches_by_length, cut_bounds, widen
from emoflow.types import TimeSpan

RATE = 100  # samples per second; one frame per sample


class SampleEncoder:
    """Frame ``t`` = ``[x[t], 2 x[t]]``; the head (when given) is a softmax over the embedding."""

    sample_rate = RATE
    frame_hop = 1
    receptive_field = 1
    dim = 2
    device = "cpu"
    dtype_name = "float32"

    def __init__(self, with_head: bool = True, max_input_s: float = 30.0) -> None:
        self.labels: tuple[str, ...] = ("low", "high") if with_head else ()
        self.max_input_s = max_input_s
        self.batches: list[int] = []

    def frames(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        self.batches.append(len(waves))
        n = max(len(w) for w in waves)
        out = np.zeros((len(waves), n, self.dim), np.float32)
        for i, w in enumerate(waves):
            out[i, : len(w)] = np.stack([w, 2 * w], axis=1)
            out[i, len(w) :] = 99.0  # padding must never count
        return out, np.array([len(w) for w in waves])

    def head(self, embeddings: np.ndarray) -> np.ndarray | None:
        if not self.labels:
            return None
        e = np.exp(embeddings - embeddings.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def ramp(seconds: float) -> Audio:
    n = int(seconds * RATE)
    return Audio(np.linspace(0.0, 1.0, n, dtype=np.float32), sample_rate=RATE)


def test_a_fake_encoder_fits_the_protocol():
    assert isinstance(SampleEncoder(), FrameEncoder)


@pytest.mark.parametrize("mode", ["exact", "pooled"])
def test_windows_are_means_of_their_samples(mode):
    audio = ramp(10.0)
    inf = Inference(SampleEncoder(), batch_size=3)
    tl = inf.timeline(audio, TimelineConfig(window_s=3, hop_s=1, mode=mode, chunk_s=4.0))
    assert len(tl.spans) == 8 and tl.labels == ("low", "high")
    for span, emb in zip(tl.spans, tl.embeddings, strict=True):
        x = audio.slice(span.start, span.end)
        np.testing.assert_allclose(emb, [x.mean(), 2 * x.mean()], rtol=1e-5)
    np.testing.assert_allclose(tl.scores.sum(1), 1.0, rtol=1e-6)


def test_pooled_voice_side_is_one_pass_and_agrees_with_exact():
    audio = ramp(9.5)
    spans = [TimeSpan(0.3, 2.9), TimeSpan(3.1, 3.15), TimeSpan(3.4, 7.65)]
    enc = SampleEncoder()
    inf = Inference(enc)
    pooled = inf.analyze(audio, spans, TimelineConfig(mode="pooled", chunk_s=4.0))
    assert enc.batches == [1, 1, 1]  # chunks at 0, 4 and 8 s, one at a time on a CPU
    exact = inf.analyze(audio, spans, TimelineConfig(mode="exact"))
    assert (pooled.span_method, exact.span_method) == ("pooled", "exact")
    for p, e in zip(pooled.spans, exact.spans, strict=True):
        np.testing.assert_allclose(p.embedding, e.embedding, rtol=1e-5)
    np.testing.assert_allclose(pooled.utterance.embedding, exact.utterance.embedding, rtol=1e-5)
    assert inf.widen(audio, spans[1]).to_list() == pytest.approx([3.0, 3.25])
    assert pooled.describe() == {"span_method": "pooled", "dtype": "float32"}


def test_an_encoder_without_head_gives_embeddings_and_no_scores():
    audio = ramp(5.0)
    inf = Inference(SampleEncoder(with_head=False))
    for mode in ("exact", "pooled"):
        voice = inf.analyze(audio, [TimeSpan(1.0, 2.0)], TimelineConfig(mode=mode))
        assert voice.timeline.scores.shape == (3, 0) and voice.timeline.embeddings.shape == (3, 2)
        assert voice.utterance.scores.labels == () and voice.spans[0].scores.scores == ()
        np.testing.assert_allclose(voice.spans[0].embedding[0], audio.slice(1.0, 2.0).mean(), rtol=1e-5)


def test_long_inputs_are_cut_and_pooled():
    audio = ramp(9.0)
    enc = SampleEncoder(max_input_s=2.0)
    utt = Inference(enc, batch_size=8, batch_seconds=1000).utterance(audio)
    assert enc.batches == [5]  # 9 s in five pieces of 1.8 s, one batch
    np.testing.assert_allclose(utt.embedding, [audio.samples.mean(), 2 * audio.samples.mean()], rtol=1e-5)


def test_batches_respect_count_and_padded_seconds():
    lengths = [10, 20, 30, 40, 50]
    assert batches_by_length(range(5), lengths, 2, 1000) == [[0, 1], [2, 3], [4]]
    assert batches_by_length(range(5), lengths, 8, 90) == [[0, 1, 2], [3], [4]]
    assert batches_by_length([0], [500], 8, 90) == [[0]]  # over the budget: alone
    assert cut_bounds(10, 4) == [(0, 3), (3, 6), (6, 10)] and cut_bounds(3, 4) == [(0, 3)]
    assert widen(TimeSpan(0.0, 0.1), 5.0).to_list() == pytest.approx([0.0, 0.175])


def test_bad_inputs_are_refused():
    inf = Inference(SampleEncoder())
    with pytest.raises(ConfigError, match="at least 1"):
        inf.embed([np.zeros(0, np.float32)])
    with pytest.raises(ConfigError, match="reads 100 Hz"):
        inf.utterance(Audio(np.zeros(1600, np.float32)))  # 16 kHz audio into a 100 Hz encoder
    with pytest.raises(ConfigError, match="batch_size"):
        Inference(SampleEncoder(), batch_size=0)
