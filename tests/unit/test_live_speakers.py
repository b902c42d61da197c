"""Live speaker attribution (emoflow.streaming.speakers) without the GE2E weights: a diarizer
whose "embedding" of a window is a fixed voice vector chosen by the window's level, so the
clustering, the label bookkeeping and the bounds are tested on known speakers."""

from __future__ import annotations

import numpy as np
import pytest

from emoflow.diarization import Diarization, SpeakerTurn
from emoflow.diarization.offline import OfflineDiarizer, OfflineDiarizerConfig
from emoflow.errors import ConfigError
from emoflow.streaming.speakers import LiveSpeakers, local_diarization, relabel_sentence
from emoflow.types import Sentence, TimeSpan, Word

RATE = 16000
# four voices far apart (GE2E embeddings are non-negative; real ones are closer than this)
VOICES = np.kron(np.eye(4), np.ones(64)) + 0.2 * np.abs(np.random.default_rng(3).normal(size=(4, 256)))


class LevelDiarizer(OfflineDiarizer):
    """Speaker ``k`` speaks at a level of ``0.1 * (k + 1)``; its windows embed as voice ``k``
    plus a little noise."""

    def __init__(self) -> None:
        super().__init__(OfflineDiarizerConfig(), model=object())
        self.rng = np.random.default_rng(0)
        self.calls = 0

    def embed(self, audio, segments, windows):
        self.calls += 1
        out = np.zeros((len(windows), 256))
        for i, w in enumerate(windows):
            level = float(np.abs(audio.slice(w.start, w.end)).mean())
            k = min(3, max(0, round(level * 10) - 1))
            out[i] = VOICES[k] + 0.05 * self.rng.normal(size=256)
        return np.abs(out)


def speech(who: list[tuple[int, float]], gap: float = 0.5) -> tuple[np.ndarray, list[TimeSpan]]:
    """Audio of ``(speaker, seconds)`` turns separated by ``gap`` s of silence, and the turns' spans."""
    parts, spans, t = [np.zeros(int(gap * RATE), np.float32)], [], gap
    for k, dur in who:
        parts.append(np.full(int(dur * RATE), 0.1 * (k + 1), np.float32))
        spans.append(TimeSpan(t, t + dur))
        parts.append(np.zeros(int(gap * RATE), np.float32))
        t += dur + gap
    return np.concatenate(parts), spans


def feed(live: LiveSpeakers, x: np.ndarray, spans: list[TimeSpan]) -> list[list[SpeakerTurn]]:
    """Each span as its own segment, with the audio a session would give."""
    shown = []
    for s in spans:
        a = int(live.audio_start(s) * RATE)
        b = min(len(x), int((s.end + 0.3) * RATE))
        shown.append(live.add(x[a:b], a / RATE, [s]))
    return shown


def live(**kw) -> LiveSpeakers:  # type: ignore[no-untyped-def]
    return LiveSpeakers(LevelDiarizer(), own_vad=False, **kw)


def test_labels_are_stable_across_re_clustering():
    who = [(0, 2.5), (1, 1.7), (0, 2.2), (1, 2.8), (0, 1.3), (1, 1.9), (2, 2.1), (0, 2.4), (2, 2.6), (1, 1.5)]
    x, spans = speech(who)
    ls = live()
    shown = feed(ls, x, spans)
    assert all(len(s) == 1 for s in shown)
    first = [s[0].speaker for s in shown]
    # one label per voice, in order of first appearance, and never changed afterwards
    assert first == [f"SPEAKER_0{k}" for k, _ in who]
    assert [t.speaker for t in ls.turns()] == first
    assert [(t.start, t.end) for t in ls.turns()] == [(s[0].start, s[0].end) for s in shown]
    d = ls.result()
    assert isinstance(d, Diarization) and d.num_speakers == 3
    assert d.backend["live"] is True and d.backend["backend"] == "ge2e"


def test_speaker_counts_are_honoured_and_checked():
    x, spans = speech([(0, 2.2), (1, 1.8), (2, 2.4), (3, 1.6), (0, 2.0)])
    exact = live(num_speakers=2)
    feed(exact, x, spans)
    assert exact.result().num_speakers == 2
    capped = live(max_speakers=3)
    shown = feed(capped, x, spans)
    assert capped.result().num_speakers <= 3
    assert all(len({t.speaker for s in shown[: i + 1] for t in s}) <= 3 for i in range(len(shown)))
    low = live(min_speakers=2)
    feed(low, *speech([(1, 2.3), (1, 1.9)]))
    assert low.result().num_speakers == 2
    with pytest.raises(ConfigError):
        live(min_speakers=3, max_speakers=2)
    with pytest.raises(ConfigError):
        live(num_speakers=0)
    with pytest.raises(ConfigError):
        live(max_items=2)


def test_empty_short_and_repeated_audio():
    ls = live()
    assert ls.add(np.zeros(0, np.float32), 0.0, []) == []
    assert ls.add(np.zeros(RATE, np.float32), 0.0, []) == []  # no regions: nothing
    assert ls.add(np.full(RATE // 2, 0.2, np.float32), 1.0, [TimeSpan(1.1, 1.13)]) == []  # < 50 ms
    d = ls.result()
    assert d.turns == () and d.speakers == () and d.backend["estimated_speakers"] == 0
    # a region shorter than a GE2E window is one window of its own length: one speaker
    got = ls.add(np.full(RATE // 2, 0.2, np.float32), 1.5, [TimeSpan(1.6, 1.9)])
    assert [t.speaker for t in got] == ["SPEAKER_00"]
    # audio given again (overlapping what was covered) is not counted twice
    assert ls.add(np.full(RATE // 2, 0.2, np.float32), 1.5, [TimeSpan(1.6, 1.9)]) == []
    assert ls.until == pytest.approx(2.0) and ls.audio_start(TimeSpan(5.0, 6.0)) == pytest.approx(3.0)
    assert len(ls.result().turns) == 1


def test_state_is_bounded_and_the_result_keeps_every_turn():
    rng = np.random.default_rng(11)
    who = [(int(k), float(d)) for k, d in zip(rng.integers(0, 2, 60), rng.uniform(1.2, 2.9, 60))]
    x, spans = speech(who, gap=0.7)
    ls = live(max_items=12, condense=3)
    shown = feed(ls, x, spans)
    assert ls.num_items <= 12
    final = ls.turns()
    assert len(final) == len(spans)
    assert sum(t.duration for t in final) == pytest.approx(sum(s.duration for s in spans), abs=1e-3)
    # two voices throughout; the labels shown live are the final ones
    assert [t.speaker for t in final] == [s[0].speaker for s in shown]
    assert len({t.speaker for t in final}) == 2
    # the speakers follow the voices: same voice, same label
    voice_of = {t.speaker: {k for (k, _), t2 in zip(who, final) if t2.speaker == t.speaker} for t in final}
    assert all(len(v) == 1 for v in voice_of.values())


def test_a_region_with_two_voices_is_re_segmented():
    x1, spans1 = speech([(0, 2.6), (1, 2.4)])
    ls = live()
    feed(ls, x1, spans1)
    # one region in which voice 0 speaks 3.5 s then voice 1 speaks 3.5 s (cut into 3 s pieces)
    y = np.concatenate([np.full(int(3.5 * RATE), 0.1, np.float32), np.full(int(3.5 * RATE), 0.2, np.float32)])
    off = len(x1) / RATE
    got = ls.add(y, off, [TimeSpan(off, off + 7.0)])
    assert [t.speaker for t in got] == ["SPEAKER_00", "SPEAKER_01"]
    # the change is found within a window's hop and a half (2 s windows every 1 s, offline's rule)
    assert got[0].end == pytest.approx(off + 3.5, abs=1.0) and got[1].end == pytest.approx(off + 7.0)


def test_local_diarization_and_final_relabelling():
    turns = [SpeakerTurn(TimeSpan(10.0, 12.0), "SPEAKER_02"), SpeakerTurn(TimeSpan(12.5, 14.0), "SPEAKER_00")]
    d = local_diarization(turns, 9.5)
    assert d.speakers == ("SPEAKER_02", "SPEAKER_00")  # labels kept, not renumbered
    assert d.turns[0].span == TimeSpan(0.5, 2.5)
    w = Word("hi", TimeSpan(10.1, 10.4), speaker="SPEAKER_02")
    s = Sentence(0, "hi", TimeSpan(10.1, 10.4), (w,), speaker="SPEAKER_02")
    final = Diarization.from_turns(turns)  # SPEAKER_02 becomes SPEAKER_00 by first appearance
    r = relabel_sentence(s, final)
    assert r.speaker == "SPEAKER_00" and r.words[0].speaker == "SPEAKER_00"
    assert relabel_sentence(Sentence(1, "x", TimeSpan(1, 2), ()), final).speaker is None


def test_segment_speakers_and_relabel_for_the_session():
    from emoflow.streaming.speakers import relabel, segment_speakers
    from emoflow.types import Transcript

    x, spans = speech([(0, 2.4), (1, 2.2)], gap=0.8)
    ls = live()
    # the recogniser's audio: the whole start of the stream; the first region was given before
    first = segment_speakers(ls, x[: int((spans[0].end + 0.3) * RATE)], 0.0, spans[:1], 0.0)
    assert [t.speaker for t in first.turns] == ["SPEAKER_00"]
    off = 1.0
    d = segment_speakers(ls, x[int(off * RATE) :], off, spans, spans[0].end + 0.3)
    # segment time; earlier turns of the context come too, labels as shown live
    assert [t.speaker for t in d.turns] == ["SPEAKER_00", "SPEAKER_01"]
    assert d.turns[1].start == pytest.approx(spans[1].start - off)
    assert segment_speakers(ls, x[:0], 9.0, [], 9.0).turns == ()  # nothing new, nothing near
    w1 = Word("a", TimeSpan(spans[0].start + 0.1, spans[0].start + 0.4), speaker="SPEAKER_01")
    w2 = Word("b", TimeSpan(spans[1].start + 0.1, spans[1].start + 0.4), speaker="SPEAKER_01")
    sents = [Sentence(0, "a", w1.span, (w1,), "SPEAKER_01"), Sentence(1, "b", w2.span, (w2,), "SPEAKER_01")]
    t, out = relabel(Transcript((w1, w2), "en", "a b"), sents, ls.result())
    assert [s.speaker for s in out] == ["SPEAKER_00", "SPEAKER_01"]
    assert [w.speaker for w in t.words] == ["SPEAKER_00", "SPEAKER_01"] and t.text == "a b"
