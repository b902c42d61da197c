"""Speakers through the product (issue 13), without models: the settings and their checks, the
pipeline's wiring with stand-in stages, the result's JSON (round trip, schema, older results),
and every file a diarised result writes; a result without voice scores exports too."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emoflow.audio.io import Audio
from emoflow.config import PipelineConfig, TimelineConfig
from emoflow.diarization import Diarization, SpeakerTurn, speaker_summary
from emoflow.diarization.stage import attribute_speakers, summarize_speakers
from emoflow.errors import ConfigError
from emoflow.export.writers import check_replaceable, expected_files, save_result
from emoflow.pipeline import Pipeline
from emoflow.provenance import Provenance
from emoflow.provenance_record import config_from_provenance, models_provenance
from emoflow.results import Result, SentenceResult, SourceInfo, validate_result
from emoflow.types import (
    AudioEmotion,
    EmotionScores,
    Sentence,
    Timeline,
    TimeSpan,
    Transcript,
    VoiceAnalysis,
    Word,
)

VOICE = ("angry", "happy", "neutral")  # 3 voice labels, 4 text labels, 5-d voice, 7-d text
TEXT = ("anger", "joy", "neutral", "sadness")
DA, DT = 5, 7
RATE = 16000


def turns(*spec: tuple[float, float, str]) -> tuple[SpeakerTurn, ...]:
    return tuple(SpeakerTurn(TimeSpan(a, b), s) for a, b, s in spec)


def words(*spec: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(t, TimeSpan(a, b)) for t, a, b in spec)


# ---- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"diarize": True, "speakers": 0}, "speakers must be at least 1"),
        ({"diarize": True, "speakers": -2}, "speakers must be at least 1"),
        ({"diarize": True, "min_speakers": 3, "max_speakers": 2}, "more than max_speakers"),
        ({"diarize": True, "speakers": 4, "max_speakers": 3}, "outside"),
        ({"speakers": 2}, "--speakers needs --diarize"),
        ({"max_speakers": 2}, "--max-speakers needs --diarize"),
        ({"diarize": True, "diarizer": "kmeans"}, "unknown diarisation backend"),
    ],
)
def test_bad_diarisation_settings_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PipelineConfig(**kwargs)


def test_good_settings_and_their_provenance_record() -> None:
    assert PipelineConfig().diarize is False and PipelineConfig().diarizer == "ge2e"
    plain = models_provenance(PipelineConfig(offline=True))
    assert "diarization" not in plain
    c = PipelineConfig(diarize=True, speakers=3, offline=True)
    rec = models_provenance(c)["diarization"]
    assert rec.source == "package" and rec.revision and rec.revision.startswith("resemblyzer==")
    assert rec.options["backend"] == "ge2e" and rec.options["num_speakers"] == 3
    pya = models_provenance(PipelineConfig(diarize=True, diarizer="pyannote", min_speakers=2, offline=True))
    assert pya["diarization"].id == "pyannote/speaker-diarization-community-1"
    assert pya["diarization"].options["min_speakers"] == 2
    # the settings come back from the records
    for config in (c, PipelineConfig(diarize=True, diarizer="pyannote", max_speakers=4, offline=True)):
        back = config_from_provenance(models_provenance(config), PipelineConfig(offline=True))
        assert back.diarize and back.diarizer == config.diarizer
        assert models_provenance(back)["diarization"] == models_provenance(config)["diarization"]
        assert (
            models_provenance(back)["diarization"].options == models_provenance(config)["diarization"].options
        )


# ---- the pipeline with stand-in stages ---------------------------------------------------------


class Stand:
    """Stand-ins for every model stage; they record what they were given."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.spans: list[TimeSpan] = []
        self.dim = DT

    def vad(self, audio: Audio) -> list[TimeSpan]:
        return [TimeSpan(0.1, audio.duration - 0.1)]

    def text(self, texts: list[str]) -> list[EmotionScores]:
        self.texts = list(texts)
        return [EmotionScores(TEXT, (0.1, 0.6, 0.2, 0.1)) for _ in texts]

    def __call__(self, seqs: list[str]) -> np.ndarray:  # the sequence embedder
        return np.ones((len(seqs), DT), np.float32)


class Voice:
    """An audio encoder stand-in: fixed scores, or none at all (an encoder without a head)."""

    dim = DA

    def __init__(self, labels: tuple[str, ...] = VOICE) -> None:
        self.labels = labels
        self.spans: list[TimeSpan] = []

    def scores(self) -> EmotionScores:
        return EmotionScores(self.labels, tuple(1 / len(self.labels) for _ in self.labels))

    def analyze(self, audio: Audio, spans: Any, config: Any = None, span_method: Any = None) -> VoiceAnalysis:
        self.spans = list(spans)
        one = AudioEmotion(self.scores(), np.zeros(DA, np.float32))
        tl = Timeline(
            "exact",
            3.0,
            1.0,
            self.labels,
            (TimeSpan(0, 3), TimeSpan(1, 4)),
            np.full((2, len(self.labels)), 1 / max(1, len(self.labels))),
            np.zeros((2, DA), np.float32),
        )
        return VoiceAnalysis(tuple(one for _ in spans), one, tl, "exact", "float32")

    def provenance(self) -> Provenance:
        return Provenance("voice", None)


class FixedDiarizer:
    name = "fixed"

    def __init__(self, found: tuple[SpeakerTurn, ...]) -> None:
        self.found = found
        self.calls: list[dict[str, Any]] = []

    def __call__(self, audio: Audio, speech: Any = None, **count: Any) -> Diarization:
        self.calls.append(count)
        return Diarization.from_turns(self.found, {"backend": "fixed"})

    def provenance(self) -> Provenance:
        return Provenance("fixed", None, source="local")


# "Hello there how are you. Fine thanks." with the speaker changing after "there"
TRANSCRIPT = Transcript(
    words(
        ("Hello", 0.2, 0.5),
        ("there", 0.5, 0.9),
        ("how", 1.6, 1.8),
        ("are", 1.8, 2.0),
        ("you.", 2.0, 2.3),
        ("Fine", 2.6, 2.9),
        ("thanks.", 2.9, 3.4),
    ),
    "en",
)
FOUND = turns((0.1, 1.2, "a"), (1.4, 2.4, "b"), (2.5, 3.6, "a"))


def run(
    config: PipelineConfig, voice: Voice | None = None, found: tuple[SpeakerTurn, ...] = FOUND
) -> tuple[Result, Stand, Voice, FixedDiarizer]:
    stand, voice = Stand(), voice or Voice()
    diarizer = FixedDiarizer(found)
    stages: dict[str, Any] = {
        "audio_encoder": voice,
        "text_classifier": stand.text,
        "sequence_embedder": stand,
        "vad": stand.vad,
        "diarizer": diarizer,
    }
    p = Pipeline(config, **stages)
    audio = Audio(np.random.default_rng(0).standard_normal(4 * RATE).astype(np.float32) * 0.1)
    return p.analyze(audio, transcript=TRANSCRIPT), stand, voice, diarizer


def test_without_diarize_nothing_changes() -> None:
    r, stand, _, diarizer = run(PipelineConfig(offline=True))
    assert diarizer.calls == [] and r.diarization is None and r.speakers == ()
    assert stand.texts == ["Hello there how are you.", "Fine thanks."]
    d = r.to_dict()
    assert [s["speaker"] for s in d["sentences"]] == [None, None]
    assert all("speaker" not in w for s in d["sentences"] for w in s["words"])
    assert all("speaker" not in w for w in d["transcript"]["words"])
    assert d["diarization"] is None and d["speakers"] == [] and "diarization" not in d["models"]
    assert "diarize" not in r.timings
    validate_result(d)


def test_diarised_sentences_are_cut_at_the_speaker_change_before_text_and_voice() -> None:
    config = PipelineConfig(offline=True, diarize=True, max_speakers=3)
    r, stand, voice, diarizer = run(config)
    assert diarizer.calls == [{"num_speakers": None, "min_speakers": None, "max_speakers": 3}]
    # the first sentence is cut where SPEAKER_01 starts; text and voice saw the pieces
    assert stand.texts == ["Hello there", "how are you.", "Fine thanks."]
    assert [s.sentence.speaker for s in r.sentences] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert [s.sentence.index for s in r.sentences] == [0, 1, 2]
    assert voice.spans == [s.sentence.span for s in r.sentences]
    assert all(w.speaker == s.sentence.speaker for s in r.sentences for w in s.sentence.words)
    assert [w.speaker for w in r.transcript.words] == ["SPEAKER_00"] * 2 + ["SPEAKER_01"] * 3 + [
        "SPEAKER_00"
    ] * 2
    assert r.diarization is not None and r.diarization.speakers == ("SPEAKER_00", "SPEAKER_01")
    assert [s.speaker for s in r.speakers] == ["SPEAKER_00", "SPEAKER_01"]
    assert [s.num_sentences for s in r.speakers] == [2, 1]
    assert r.speakers[0].voice_mean == pytest.approx(dict.fromkeys(VOICE, 1 / 3))
    assert "diarize" in r.timings and "diarization" in r.models
    validate_result(json.loads(r.to_json()))


def test_silence_gives_no_turns_and_no_speakers() -> None:
    r, *_ = run(PipelineConfig(offline=True, diarize=True), found=())
    assert r.diarization is not None and r.diarization.turns == ()
    assert [s.sentence.speaker for s in r.sentences] == [None, None] and r.speakers == ()


def test_the_diarizer_is_built_on_use_and_shared_by_derive() -> None:
    assert Pipeline(PipelineConfig(offline=True)).diarizer is None  # not diarising: nothing built
    fixed = FixedDiarizer(FOUND)
    base = Pipeline(PipelineConfig(offline=True, diarize=True), diarizer=fixed)
    assert base.diarizer is fixed
    assert base.derive(replace(base.config, speakers=2)).diarizer is fixed  # counts: call-time options
    assert base.derive(replace(base.config, diarize=False)).diarizer is None
    assert base.derive(replace(base.config, diarizer="pyannote"))._diarizer is None
    assert base.derive(replace(base.config, device="cpu"))._diarizer is None


def test_attribute_speakers_keeps_a_stray_edge_word_in_its_sentence() -> None:
    """One word that the turn boundary gives to the next speaker stays (pieces of >= 2 words)."""
    s = Sentence(
        0, "We went home.", TimeSpan(0.0, 1.5), words(("We", 0, 0.4), ("went", 0.4, 0.9), ("home.", 1.0, 1.5))
    )
    d = Diarization.from_turns(turns((0.0, 1.1, "x"), (1.1, 3.0, "y")))
    tr, out = attribute_speakers(d, Transcript(s.words), [s])
    assert [x.speaker for x in out] == ["SPEAKER_00"] and out[0].text == "We went home."
    assert [w.speaker for w in tr.words] == ["SPEAKER_00"] * 3


# ---- the result's JSON -------------------------------------------------------------------------


def diarised_result(voice_labels: tuple[str, ...] = VOICE, path: str | None = "talk show.wav") -> Result:
    rng = np.random.default_rng(4)
    found = Diarization.from_turns(
        turns((0.0, 2.0, "p"), (2.2, 4.0, "q"), (4.1, 5.0, "p")), {"backend": "ge2e"}
    )
    spk = ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    spans = [TimeSpan(0.1, 1.9), TimeSpan(2.3, 3.9), TimeSpan(4.2, 4.9)]
    texts = ["I am so happy.", "Why is that?", "Because."]
    voice = EmotionScores(
        voice_labels, tuple(rng.dirichlet(np.ones(len(voice_labels)))) if voice_labels else ()
    )
    rows = [
        SentenceResult(
            Sentence(i, t, sp, (Word(t.split()[0], TimeSpan(sp.start, sp.start + 0.2), 0.9, s),), s),
            EmotionScores(TEXT, (0.1, 0.6, 0.2, 0.1)),
            "joy__neutral",
            voice,
        )
        for i, (t, sp, s) in enumerate(zip(texts, spans, spk, strict=True))
    ]
    tl_scores = rng.dirichlet(np.ones(len(voice_labels)), 2) if voice_labels else np.zeros((2, 0))
    r = Result(
        source=SourceInfo(path, None, 5.0, RATE, 1),
        models={k: Provenance(k, None) for k in ("asr", "audio_emotion", "text_emotion", "sequence_encoder")},
        settings={"diarize": True},
        transcript=Transcript(tuple(w for row in rows for w in row.sentence.words), "en"),
        sentences=rows,
        utterance=AudioEmotion(voice, rng.standard_normal(DA).astype(np.float32)),
        timeline=Timeline(
            "exact",
            3.0,
            1.0,
            voice_labels,
            (TimeSpan(0, 3), TimeSpan(1, 4)),
            tl_scores,
            np.zeros((2, DA), np.float32),
        ),
        audio_sentences=rng.standard_normal((3, DA)).astype(np.float32),
        text_sentences=rng.standard_normal((3, DT)).astype(np.float32),
        diarization=found,
    )
    return replace(r, speakers=summarize_speakers(found, rows, 5.0))


def test_a_diarised_result_round_trips_and_validates() -> None:
    r = diarised_result()
    d = json.loads(r.to_json())
    validate_result(d)
    assert d["schema_version"] == "1.1" and "schema_version" not in d["diarization"]
    assert d["diarization"]["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    assert [s["speaker"] for s in d["sentences"]] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    assert d["sentences"][1]["words"][0]["speaker"] == "SPEAKER_01"
    assert [s["speaker"] for s in d["speakers"]] == ["SPEAKER_00", "SPEAKER_01"]
    assert d["speakers"][0]["talk_time_s"] == pytest.approx(2.9)
    back = Result.from_dict(d, r.embeddings())
    assert json.loads(back.to_json()) == d
    assert back.diarization == r.diarization and back.speakers == r.speakers
    assert back.sentences[1].sentence == r.sentences[1].sentence


def test_results_of_schema_1_0_still_load_and_validate() -> None:
    d = json.loads(diarised_result().to_json())
    old = {k: v for k, v in d.items() if k not in ("diarization", "speakers")}
    old["schema_version"] = "1.0"
    for s in old["sentences"]:
        del s["speaker"]
        for w in s["words"]:
            del w["speaker"]
    for w in old["transcript"]["words"]:
        del w["speaker"]
    validate_result(old)
    back = Result.from_dict(old, diarised_result().embeddings())
    assert back.diarization is None and back.speakers == ()
    assert all(s.sentence.speaker is None for s in back.sentences)


def test_speaker_summary_without_voice_scores_counts_the_text_side() -> None:
    r = diarised_result(voice_labels=())
    assert all(s.voice_mean is None and s.text_mean for s in r.speakers)
    assert [s.dominant_voice for s in r.speakers] == [None, None]
    # a speaker with turns but no sentence is still listed, with no emotion
    only_turns = speaker_summary([], [], [], [], turns=turns((0, 1, "SPEAKER_00")))
    assert [(s.speaker, s.num_sentences, s.text_mean) for s in only_turns] == [("SPEAKER_00", 0, None)]


# ---- files -------------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_a_diarised_result_writes_speakers_everywhere(tmp_path: Path) -> None:
    r = diarised_result()
    out = save_result(r, tmp_path / "talk", ["json", "csv", "srt", "npz"])
    assert {p.name for p in out.iterdir()} >= set(
        expected_files({"json", "csv", "srt", "npz"}, diarized=True)
    )
    back = Diarization.from_rttm((out / "diarization.rttm").read_text(), file_id="talk_show")
    assert [(t.speaker, round(t.start, 3), round(t.end, 3)) for t in back.turns] == [
        (t.speaker, round(t.start, 3), round(t.end, 3))
        for t in r.diarization.turns  # type: ignore[union-attr]
    ]
    rows = read_csv(out / "sentences.csv")
    assert [x["speaker"] for x in rows] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]
    spk = read_csv(out / "speakers.csv")
    assert [x["speaker"] for x in spk] == ["SPEAKER_00", "SPEAKER_01"]
    assert [x["num_sentences"] for x in spk] == ["2", "1"] and spk[0]["dominant_text"] == "joy"
    assert {"talk_time_s", "share", "dominant_voice", "voice_trend", "voice_happy", "text_joy"} <= set(spk[0])
    srt = (out / "transcript.srt").read_text()
    assert "[SPEAKER_00] I am so happy." in srt and "[SPEAKER_01] Why is that?" in srt
    check_replaceable(out)  # the speakers' files are emoflow's own: the folder may be replaced
    save_result(r, out, ["csv"])


def test_without_diarisation_the_files_are_as_before(tmp_path: Path) -> None:
    r = replace(diarised_result(), diarization=None, speakers=())
    r.sentences = [replace(s, sentence=replace(s.sentence, speaker=None)) for s in r.sentences]
    out = save_result(r, tmp_path / "plain", ["json", "csv", "srt"])
    assert not (out / "diarization.rttm").exists() and not (out / "speakers.csv").exists()
    assert [x["speaker"] for x in read_csv(out / "sentences.csv")] == ["", "", ""]
    assert "[SPEAKER" not in (out / "transcript.srt").read_text()


@pytest.mark.parametrize("fmt", ["json", "npz", "csv", "srt", "png", "html"])
def test_every_writer_survives_no_voice_scores(tmp_path: Path, fmt: str) -> None:
    """A voice encoder without a head gives empty scores: empty cells, no crash, valid JSON."""
    r = diarised_result(voice_labels=())
    out = save_result(r, tmp_path / fmt, [fmt])
    if fmt == "json":
        validate_result(json.loads((out / "result.json").read_text()))
    if fmt == "csv":
        rows = read_csv(out / "sentences.csv")
        assert [x["audio_top"] for x in rows] == ["", "", ""] and not any(
            k.startswith("audio_") and k != "audio_top" for k in rows[0]
        )
        assert read_csv(out / "speakers.csv")[0]["dominant_voice"] == ""


def test_a_pipeline_with_a_headless_voice_encoder_exports(tmp_path: Path) -> None:
    r, *_ = run(PipelineConfig(offline=True, diarize=True, timeline=TimelineConfig()), voice=Voice(()))
    assert all(not s.audio_emotion.labels for s in r.sentences) and r.speakers[0].voice_mean is None
    out = save_result(r, tmp_path / "headless", ["json", "csv", "srt"])
    assert (out / "speakers.csv").is_file()
