"""The live timeline (emoflow.streaming.windows): fed a recording in random blocks, its windows
equal ``analyze``'s timeline of the same recording, ``exact`` and ``pooled``, and a pooled window
comes once the chunks holding its frames are done."""

from __future__ import annotations

import numpy as np
import pytest

from emoflow.audio.io import Audio
from emoflow.config import TimelineConfig
from emoflow.errors import ConfigError
from emoflow.models import ModelSpec
from emoflow.streaming.events import WindowEvent
from emoflow.streaming.windows import LiveTimeline

RATE = 16000


@pytest.fixture(scope="module")
def e2v(replicas):
    from emoflow.speech.emotion2vec import Emotion2vecEncoder

    return Emotion2vecEncoder(ModelSpec(str(replicas["emotion2vec"]), dtype="float32"), batch_size=4)


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * 170 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.7 * t))
    return (x + 0.03 * rng.standard_normal(t.size)).astype(np.float32)


def stream(
    live: LiveTimeline, x: np.ndarray, seed: int, low: int, high: int
) -> list[tuple[int, WindowEvent]]:
    """Feed ``x`` in random blocks; each event with the samples received when it came."""
    rng = np.random.default_rng(seed)
    out, n = [], 0
    while n < len(x):
        n = min(len(x), n + int(rng.integers(low, high)))
        out += [(n, e) for e in live.add(x, n, 0.0)]
    return out + [(n, e) for e in live.finish(x, n, 0.0)]


def assert_same_timeline(live: LiveTimeline, offline, events: list[WindowEvent]) -> None:  # type: ignore[no-untyped-def]
    tl = live.timeline()
    assert tl.mode == offline.mode and tl.spans == offline.spans
    assert [e.span for e in events] == list(offline.spans)
    assert [e.index for e in events] == list(range(len(events)))
    np.testing.assert_allclose(tl.scores, offline.scores, atol=1e-4)
    np.testing.assert_allclose(tl.embeddings, offline.embeddings, atol=1e-4)


@pytest.mark.parametrize(
    ("seconds", "chunk_s", "context_s", "seed"),
    [
        (11.37, 3.0, 0.25, 1),  # the recommended live chunk: the window's length
        (9.6, 4.0, 0.5, 2),  # the audio ends on a chunk boundary
        (8.004, 4.0, 0.0, 3),  # no context: a 4 ms tail borrows earlier audio
        (2.2, 8.0, 0.25, 4),  # shorter than one window and one chunk
    ],
)
def test_pooled_windows_equal_analyze(e2v, seconds, chunk_s, context_s, seed) -> None:  # type: ignore[no-untyped-def]
    x = speechlike(seconds, seed)
    c = TimelineConfig(window_s=3.0, hop_s=1.0, mode="pooled", chunk_s=chunk_s, context_s=context_s)
    utt, offline = e2v.utterance_and_timeline(Audio(x), c)
    live = LiveTimeline(e2v, c)
    got = stream(live, x, seed, 37, 9001)
    assert_same_timeline(live, offline, [e for _, e in got])
    # the same frames: the recording's mean of them too
    mine = live.utterance()
    assert mine is not None and utt is not None
    np.testing.assert_allclose(mine.embedding, utt.embedding, atol=1e-5)
    np.testing.assert_allclose(mine.scores.scores, utt.scores.scores, atol=1e-5)
    # a window comes once the chunks with its frames are done: their cores and context arrived
    core, ctx = int(chunk_s * RATE), int(context_s * RATE)
    for n, e in got:
        if n < len(x):
            end = int(round(e.span.end * RATE))
            last_core = -(-end // core) * core  # the end of the core holding the window's end
            assert n >= last_core + ctx, (e.span, n)


def test_exact_windows_equal_analyze_and_come_with_their_last_sample(e2v) -> None:  # type: ignore[no-untyped-def]
    x = speechlike(7.45, 5)
    c = TimelineConfig(window_s=2.0, hop_s=0.75)
    offline = e2v.timeline(Audio(x), c)
    live = LiveTimeline(e2v, c)
    got = stream(live, x, 6, 101, 5003)
    assert_same_timeline(live, offline, [e for _, e in got])
    for n, e in got[:-2]:
        assert e.span.end <= n / RATE  # the last sample had arrived
    assert live.compute_s > 0
    # the utterance, pooled piece by piece as the audio came: analyze's
    mine, utt = live.utterance(), e2v.utterance(Audio(x))
    assert mine is not None
    np.testing.assert_allclose(mine.embedding, utt.embedding, atol=1e-5)


def test_pooled_lag_counts_from_the_windows_last_sample(e2v) -> None:  # type: ignore[no-untyped-def]
    """The lag of a pooled window includes its wait for the chunk: from the arrival of its own
    last sample, not of the audio that completed the chunk."""
    x = speechlike(6.5, 7)
    live = LiveTimeline(e2v, TimelineConfig(mode="pooled", chunk_s=4.0, context_s=0.5))
    events = []
    for i in range(0, len(x), 1600):  # 100 ms blocks "arriving" at the stream's own time
        n = min(len(x), i + 1600)
        events += live.add(x, n, n / RATE)
    # the windows [0,3) and [1,4) came together, after 4.5 s of audio; [2,5) waits for the end
    assert [e.span.end for e in events] == [3.0, 4.0]
    assert events[0].lag_s - events[1].lag_s == pytest.approx(1.0, abs=1e-6)
    rest = live.finish(x, len(x), 6.5)
    assert [e.span.start for e in rest] == [2.0, 3.0, 4.0]


def test_pooled_needs_frame_level_inference() -> None:
    class Opaque:
        labels = ("calm",)
        dim = 4

    with pytest.raises(ConfigError, match="cannot be pooled; use the exact timeline"):
        LiveTimeline(Opaque(), TimelineConfig(mode="pooled"))
    assert LiveTimeline(Opaque(), TimelineConfig()).mode == "exact"
