"""Live speaker attribution: who is speaking, region by region, while a stream goes on.

:class:`LiveSpeakers` is fed each closed speech segment of a stream (16 kHz samples, their
offset in the stream, the stream VAD's regions) and gives the speaker turns of that segment at
once, labelled ``SPEAKER_NN`` consistently with everything said before; :meth:`LiveSpeakers.result`
gives the :class:`~emoflow.diarization.types.Diarization` of the whole stream, the same type
``analyze`` produces, re-clustered with everything heard.

It is the offline GE2E backend (:class:`~emoflow.diarization.offline.OfflineDiarizer`) cut into
pieces:

1. **Speech**: the diarizer's own Silero settings (lower threshold, more padding, as offline)
   over the segment's audio, given from ``context_s`` (2 s) before the segment
   (:meth:`LiveSpeakers.audio_start`), merged with the stream VAD's regions (``own_vad``).
   The stream VAD alone, or only 0.3 s before the segment, missed quiet onsets: final DER
   0.208 and 0.193 on the shared conversations, against 0.173 this way.
2. **Embeddings, once**: the segment's regions cut into pieces of at most ``max_segment_s``,
   GE2E windows inside each (the offline windowing and per-piece loudness normalisation); each
   piece's embedding (normalised mean of its windows') is kept, the audio is not.
3. **Labels**: after every segment, all pieces so far are clustered again with the offline
   clustering (same count cut, ``speakers`` / ``min_speakers`` / ``max_speakers`` honoured), and
   the new clusters are matched to the labels shown before by the Hungarian algorithm on their
   overlap (speech seconds), so a label once shown rarely changes; a new cluster gets a new label.
   Regions whose pieces went to different speakers are re-segmented window by window (offline's
   rule), against the current centroids.
4. **Bounded cost**: clustering is quadratic in the items clustered, so at most ``max_items``
   items are kept: when over, the oldest half is *condensed* — per label, groups of up to
   ``condense`` items become one (their speech-weighted mean embedding) that keeps the turns
   they stood for, which then follow that item's label. Memory: ``max_items`` embeddings of 256 floats,
   plus the turns (a few numbers per turn) and each uncondensed piece's window embeddings.

Backend: live attribution is GE2E only. With ``diarizer="pyannote"`` configured, the live
labels still come from GE2E (pyannote's pipeline segments and clusters a whole recording, and
its per-chunk labels are not consistent across chunks); the result's ``backend`` records both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from emoflow.audio.io import TARGET_RATE, Audio
from emoflow.diarization.base import check_speaker_count
from emoflow.diarization.clustering import cluster_speakers, normalize_rows, project_out
from emoflow.diarization.ge2e import EMBEDDING_DIM
from emoflow.diarization.speakers import speaker_for_span
from emoflow.diarization.types import Diarization, SpeakerTurn, speaker_label
from emoflow.errors import ConfigError
from emoflow.types import Sentence, TimeSpan, Transcript

if TYPE_CHECKING:
    from emoflow.config import PipelineConfig
    from emoflow.diarization.offline import OfflineDiarizer

log = logging.getLogger(__name__)

MAX_ITEMS = 200  # pieces clustered at most (each ~3 s of speech: ~10 min before condensing)
CONTEXT_S = 2.0  # audio before a segment given with it (see LiveSpeakers.audio_start)
CONDENSE = 4  # consecutive same-label pieces merged into one item when condensing


@dataclass
class _Item:
    """One piece (with its windows, for re-segmentation) or, condensed, several (with their turns)."""

    emb: np.ndarray  # (256,) unit
    weight: float  # seconds of speech
    region: int  # index of its region in ``LiveSpeakers._regions`` (condensed: the first)
    span: TimeSpan
    windows: list[TimeSpan] = field(default_factory=list)
    win_emb: np.ndarray | None = None  # (len(windows), 256); None once condensed
    turns: list[TimeSpan] = field(default_factory=list)  # condensed: the turns it labels
    label: int = -1  # current label id (-1: not clustered yet)


@dataclass
class _Region:
    span: TimeSpan
    condensed: bool = False


class LiveSpeakers:
    """Speaker turns of a stream, segment by segment (see the module docstring).

    ``diarizer``: a loaded :class:`~emoflow.diarization.offline.OfflineDiarizer`.
    ``num_speakers`` / ``min_speakers`` / ``max_speakers``: as for offline diarisation (checked
    here: :class:`~emoflow.errors.ConfigError`). Thread-safe: calls run one at a time.
    """

    def __init__(
        self,
        diarizer: OfflineDiarizer,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        own_vad: bool = True,
        max_items: int = MAX_ITEMS,
        condense: int = CONDENSE,
        requested: str = "ge2e",
        context_s: float = CONTEXT_S,
    ) -> None:
        if max_items < 4 or condense < 2:
            raise ConfigError(f"need max_items >= 4 and condense >= 2, got {max_items} and {condense}")
        self.count = check_speaker_count(num_speakers, min_speakers, max_speakers)
        self.diarizer = diarizer
        self.own_vad, self.max_items, self.condense = own_vad, max_items, condense
        self.requested, self.context_s = requested, context_s
        self._items: list[_Item] = []
        self._regions: list[_Region] = []
        self._next_label = 0
        self._until = 0.0  # stream time up to which audio was given
        self._estimated = 0
        self._lock = threading.Lock()
        self.timings: dict[str, float] = {"embed": 0.0, "cluster": 0.0, "vad": 0.0}
        self.segments = 0

    @classmethod
    def from_config(cls, config: PipelineConfig, diarizer: Any = None, **kwargs: Any) -> LiveSpeakers:
        """From the pipeline's settings; ``diarizer``: the pipeline's own when it is the GE2E
        backend (shared weights), else a GE2E diarizer is built (``config.diarizer_model`` as its
        weights unless pyannote is configured)."""
        from emoflow.diarization.offline import OfflineDiarizer

        if not isinstance(diarizer, OfflineDiarizer):
            weights = config.diarizer_model if config.diarizer != "pyannote" else None
            if config.diarizer == "pyannote":
                log.info("live speakers come from the GE2E backend (pyannote needs the whole recording)")
            diarizer = OfflineDiarizer(weights=weights, device=config.device)
            from emoflow.diarization.stage import _import_mel_front_end

            _import_mel_front_end()  # librosa's first import would land on the first segment
        return cls(
            diarizer,
            num_speakers=config.speakers,
            min_speakers=config.min_speakers,
            max_speakers=config.max_speakers,
            requested=config.diarizer,
            **kwargs,
        )

    # ---- in -------------------------------------------------------------------------------
    def add(self, samples: np.ndarray, offset: float, regions: Sequence[TimeSpan] = ()) -> list[SpeakerTurn]:
        """A closed segment: ``samples`` (16 kHz mono) start ``offset`` s into the stream;
        ``regions``: its speech (seconds in the stream). Returns its turns (stream seconds, in
        time order), labelled as they stand after this segment; audio before what earlier calls
        covered is ignored. No speech: no turns."""
        with self._lock:
            self.segments += 1
            audio = Audio(np.asarray(samples, dtype=np.float32))
            lo = max(self._until, offset)
            self._until = max(self._until, offset + audio.duration)
            local = self._speech(audio, offset, regions, lo)
            if not local:
                return []
            d = self.diarizer
            t0 = time.perf_counter()
            segments, windows = d.speech_windows(local)
            emb = d.embed(audio, segments, windows)
            if d.nuisance is not None:
                emb = project_out(emb, d.nuisance)
            emb = normalize_rows(emb)
            self.timings["embed"] += time.perf_counter() - t0
            first = len(self._regions)
            self._regions.extend(_Region(_shift(r, offset)) for r in local)
            for s in segments:
                w, wins = emb[list(s.windows)], [_shift(windows[i], offset) for i in s.windows]
                mean = normalize_rows(w.mean(axis=0, keepdims=True))[0]
                self._items.append(
                    _Item(mean, s.span.duration, first + s.region, _shift(s.span, offset), wins, w)
                )
            t0 = time.perf_counter()
            self._cluster()
            while len(self._items) > self.max_items:
                before = len(self._items)
                self._condense_oldest()
                if len(self._items) >= before:  # nothing left to merge (one item per label)
                    break
            self.timings["cluster"] += time.perf_counter() - t0
            return [t for r in range(first, len(self._regions)) for t in self._region_turns(r)]

    def _speech(self, audio: Audio, offset: float, regions: Sequence[TimeSpan], lo: float) -> list[TimeSpan]:
        """Speech regions relative to ``audio``, from ``lo`` (stream seconds) on."""
        given = [TimeSpan(max(0.0, r.start - offset), max(0.0, r.end - offset)) for r in regions]
        found: list[TimeSpan] = []
        if self.own_vad and audio.duration > 0:
            t0 = time.perf_counter()
            found = self.diarizer.preprocess_regions(audio, None)
            self.timings["vad"] += time.perf_counter() - t0
        spans = [*found, *given]
        start = lo - offset
        clipped = [TimeSpan(max(s.start, start), s.end) for s in spans if s.end > start]
        return self.diarizer.preprocess_regions(audio, clipped) if clipped else []

    # ---- labels ---------------------------------------------------------------------------
    def _cluster(self) -> None:
        """Cluster every item (offline's rule and counts), then keep the labels shown so far:
        new clusters matched to old labels by overlap (Hungarian); an unmatched cluster takes the
        lowest label no cluster holds now (labels stay compact), else a new one."""
        from scipy.optimize import linear_sum_assignment

        items = self._items
        lo, hi = self.count.bounds()
        res = cluster_speakers(
            np.stack([it.emb for it in items]),
            num_speakers=self.count.exact,
            min_speakers=lo,
            max_speakers=hi,
            config=self.diarizer.config.clustering,
        )
        self._estimated = res.num_speakers
        new = res.labels
        old_ids = sorted({it.label for it in items if it.label >= 0})
        k = int(new.max()) + 1 if len(new) else 0
        mapping: dict[int, int] = {}
        if old_ids and k:
            overlap = np.zeros((len(old_ids), k))
            row = {o: i for i, o in enumerate(old_ids)}
            for it, c in zip(items, new.tolist()):
                if it.label >= 0:
                    overlap[row[it.label], c] += it.weight
            rows, cols = linear_sum_assignment(-overlap)
            mapping = {int(c): old_ids[r] for r, c in zip(rows, cols) if overlap[r, c] > 0}
        for c in range(k):  # clusters with no earlier label (in order of first appearance)
            if c not in mapping:
                free = [i for i in range(self._next_label) if i not in mapping.values()]
                if free:
                    mapping[c] = free[0]
                else:
                    mapping[c] = self._next_label
                    self._next_label += 1
        for it, c in zip(items, new.tolist()):
            it.label = mapping[int(c)]

    def _centroids(self, labels: Sequence[int]) -> np.ndarray:
        rows = []
        for lab in labels:
            members = [it for it in self._items if it.label == lab]
            rows.append(
                np.sum([it.emb * it.weight for it in members], axis=0) if members else np.zeros(EMBEDDING_DIM)
            )
        return normalize_rows(np.stack(rows))

    def _region_turns(self, r_i: int) -> list[SpeakerTurn]:
        """The turns of region ``r_i`` with the current labels (offline's re-segmentation where
        its pieces disagree)."""
        region = self._regions[r_i]
        items = [it for it in self._items if it.region == r_i and it.win_emb is not None]
        present = sorted({it.label for it in items})
        if not present:
            return []
        if len(present) == 1:
            return [SpeakerTurn(region.span, speaker_label(present[0]))]
        wins = [w for it in items for w in it.windows]
        embs = np.concatenate([it.win_emb for it in items if it.win_emb is not None])
        sims = normalize_rows(embs) @ self._centroids(present).T
        return self.diarizer.resegment(region.span, wins, sims, present)

    def _condense_oldest(self) -> None:
        """Merge the oldest half of the items (whole regions): per label, groups of up to
        ``condense`` items (in time order) become one, which keeps the turns they stood for."""
        half = len(self._items) // 2
        old, keep = self._items[:half], self._items[half:]
        if keep and old and keep[0].region == old[-1].region:  # never split a region
            cut = next((i for i, it in enumerate(old) if it.region == keep[0].region), half)
            old, keep = self._items[:cut], self._items[cut:]
        if not old:
            return
        # the turns of the regions condensed now, each given to the item of its label covering most
        regions = sorted({it.region for it in old if not self._regions[it.region].condensed})
        for t in (t for r in regions for t in self._region_turns(r)):
            lab = int(t.speaker.removeprefix("SPEAKER_"))
            cands = [it for it in old if it.label == lab and it.win_emb is not None]
            best = max(
                cands or [it for it in old if it.label == lab],
                key=lambda it: (it.span.overlap_duration(t.span), -abs(it.span.start - t.start)),
            )
            best.turns.append(t.span)
        merged: list[_Item] = []
        for lab in dict.fromkeys(it.label for it in old):
            members = [it for it in old if it.label == lab]
            for k in range(0, len(members), self.condense):
                group = members[k : k + self.condense]
                w = sum(g.weight for g in group)
                emb = normalize_rows(np.sum([g.emb * g.weight for g in group], axis=0)[None, :])[0]
                span = TimeSpan(min(g.span.start for g in group), max(g.span.end for g in group))
                item = _Item(emb, w, group[0].region, span, label=lab)
                item.turns = sorted((s for g in group for s in g.turns), key=lambda s: s.start)
                merged.append(item)
        for r in regions:
            self._regions[r].condensed = True
        self._items = sorted(merged, key=lambda it: it.span.start) + keep

    # ---- out ------------------------------------------------------------------------------
    @property
    def until(self) -> float:
        """Stream seconds up to which audio was given (later calls start there at the earliest)."""
        return self._until

    def audio_start(self, segment: TimeSpan) -> float:
        """Where the audio for ``segment`` (stream seconds) should start: ``context_s`` before
        it (Silero needs some audio before speech, and the stream VAD's threshold misses quiet
        onsets that the diarizer's finds), never before :attr:`until`."""
        return max(self._until, segment.start - self.context_s, 0.0)

    @property
    def num_items(self) -> int:  # items clustered now (at most max_items)
        return len(self._items)

    def turns(self, since: float = 0.0) -> list[SpeakerTurn]:
        """The turns so far that end after ``since`` (stream seconds), with the current live
        labels (not renumbered), in time order."""
        with self._lock:
            return self._all_turns(since)

    def _all_turns(self, since: float = 0.0) -> list[SpeakerTurn]:
        out = [
            SpeakerTurn(s, speaker_label(it.label))
            for it in self._items
            if it.win_emb is None
            for s in it.turns
            if s.end > since
        ]
        for r_i in range(len(self._regions) - 1, -1, -1):  # newest first: stop at ``since``
            r = self._regions[r_i]
            if r.span.end <= since:
                break
            if not r.condensed:
                out.extend(self._region_turns(r_i))
        return sorted(out, key=lambda t: (t.start, t.end))

    def result(self) -> Diarization:
        """The whole stream's diarisation from the last clustering, with the labels the stream
        showed (kept across re-clusterings), not renumbered: speakers.csv and the RTTM name the
        speakers as the live events did."""
        with self._lock:
            turns = self._all_turns()
            backend = {"backend": "ge2e", "live": True, "requested": self.requested}
            backend |= {"model": self.diarizer.provenance().to_dict(), **self.count.to_dict()}
            backend |= {"estimated_speakers": self._estimated if turns else 0, "items": len(self._items)}
            speakers = tuple(dict.fromkeys(t.speaker for t in turns))  # in order of first appearance
            return Diarization(tuple(turns), speakers, backend)


def _shift(span: TimeSpan, offset: float) -> TimeSpan:
    return TimeSpan(round(span.start + offset, 6), round(span.end + offset, 6))


def local_diarization(turns: Sequence[SpeakerTurn], offset: float) -> Diarization:
    """``turns`` (stream seconds) moved to a segment that starts ``offset`` s into the stream,
    labels kept as given, for :func:`~emoflow.diarization.stage.attribute_speakers` on the
    segment's words and sentences."""
    moved = sorted(
        (
            SpeakerTurn(TimeSpan(round(max(0.0, t.start - offset), 6), round(t.end - offset, 6)), t.speaker)
            for t in turns
            if t.end - offset > 0
        ),
        key=lambda t: (t.start, t.end),
    )
    return Diarization(tuple(moved), tuple(dict.fromkeys(t.speaker for t in moved)))


def segment_speakers(
    live: LiveSpeakers,
    samples: np.ndarray,
    offset: float,
    regions: Sequence[TimeSpan],
    new_from: float,
    local_to: float | None = None,
) -> Diarization:
    """What :func:`~emoflow.streaming.segments.analyse_segment` calls for a segment: its new
    speech (the ``regions`` ending after ``new_from``; ``samples`` start ``offset`` s into the
    stream and should reach back to :meth:`LiveSpeakers.audio_start`) added to ``live``, and the
    turns from ``local_to`` on (default ``offset``: the start of the recogniser's audio) moved
    to that time, for :func:`~emoflow.diarization.stage.attribute_speakers`."""
    new = [r for r in regions if r.end > new_from]
    if new:
        span = TimeSpan(max(new_from, new[0].start), new[-1].end)
        start = max(offset, live.audio_start(span))
        a = max(0, round((start - offset) * TARGET_RATE))
        live.add(samples[a:], offset + a / TARGET_RATE, new)
    at = offset if local_to is None else local_to
    return local_diarization(live.turns(since=at), at)


def relabel(
    transcript: Transcript, sentences: Sequence[Sentence], final: Diarization
) -> tuple[Transcript, list[Sentence]]:
    """The stream's transcript and sentences (labelled live) with the speakers of the final
    diarisation (:meth:`LiveSpeakers.result`): each sentence takes the speaker whose final turns
    cover most of it (it is not cut again: its text and voice scores stay valid), its words
    that speaker; other transcript words their own best-covering speaker."""
    from dataclasses import replace

    out = [relabel_sentence(s, final) for s in sentences]
    said = {(w.text, w.start, w.end): s.speaker for s in out for w in s.words}
    words = tuple(
        w
        if w.speaker is None
        else replace(w, speaker=said.get((w.text, w.start, w.end)) or speaker_for_span(w.span, final.turns))
        for w in transcript.words
    )
    return Transcript(words, transcript.language, transcript.text), out


def relabel_sentence(sentence: Sentence, final: Diarization) -> Sentence:
    """``sentence`` (stream times) with the speaker of the final turns covering most of it, on
    it and its words (sentences are not cut again: their text and voice scores stay valid)."""
    from dataclasses import replace

    if sentence.speaker is None or not final.turns:
        return sentence
    who = speaker_for_span(sentence.span, final.turns)
    return replace(sentence, speaker=who, words=tuple(replace(w, speaker=who) for w in sentence.words))


__all__ = ["LiveSpeakers", "local_diarization", "relabel", "relabel_sentence", "segment_speakers"]
