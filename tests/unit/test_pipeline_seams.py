"""The pipeline's seams (issue 12): derived pipelines share the stages they can, and the models'
provenance records come from the settings alone — and give the settings back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from emoflow.config import AsrConfig, EmbeddingConfig, PipelineConfig, TimelineConfig
from emoflow.pipeline import Pipeline
from emoflow.provenance_record import GIVEN_TRANSCRIPT, config_from_provenance, models_provenance


def stubs() -> dict[str, Any]:
    """Stand-ins for built stages: derive only passes them on, nothing calls them."""
    return {
        "transcriber": object(),
        "audio_encoder": object(),
        "text_classifier": object(),
        "sequence_embedder": object(),
        "vad": object(),
    }


def test_derive_shares_the_built_stages_whose_settings_are_unchanged():
    s = stubs()
    base = Pipeline(PipelineConfig(offline=True), **s)
    # settings no stage is built from: every stage is shared
    same = base.derive(replace(base.config, top_k=2, timeline=TimelineConfig(mode="pooled")))
    assert (same.transcriber, same.audio_encoder, same.text_classifier, same.sequence_embedder, same.vad) == (
        s["transcriber"],
        s["audio_encoder"],
        s["text_classifier"],
        s["sequence_embedder"],
        s["vad"],
    )
    assert same.config.top_k == 2 and same.config.timeline.mode == "pooled"
    # another text model and ASR settings: those two are built anew (on first use), the rest shared
    other = base.derive(replace(base.config, text_model="org/other", asr=AsrConfig(beam_size=2)))
    assert other.audio_encoder is s["audio_encoder"] and other.sequence_embedder is s["sequence_embedder"]
    assert other._text is None and other._transcriber is None  # not built by derive
    embedding = base.derive(replace(base.config, embedding=EmbeddingConfig("layers")))
    assert embedding._embedder is None and embedding.text_classifier is s["text_classifier"]
    # another device: only Silero (no settings) is shared
    moved = base.derive(replace(base.config, device="cpu"))
    assert (moved._transcriber, moved._audio, moved._text, moved._embedder) == (None,) * 4
    assert moved.vad is s["vad"]


def test_derive_builds_nothing():
    p = Pipeline(PipelineConfig(offline=True))
    d = p.derive(replace(p.config, top_k=1))
    assert (d._transcriber, d._audio, d._text, d._embedder, d._vad, d._fusion) == (None,) * 6


@pytest.mark.parametrize(
    "config",
    [
        PipelineConfig(offline=True),
        PipelineConfig(
            asr_backend="faster-whisper",
            asr_model="org/ct2-whisper",
            encoder_model="org/encoder",
            embedding=EmbeddingConfig("layers", layers=(-3, -1), weights=(1.0, 3.0)),
            fusion_model="org/fusion",
            offline=True,
        ),
    ],
    ids=["defaults", "layers-ct2-fusion"],
)
def test_config_from_provenance_gives_settings_with_the_same_records(config):
    records = models_provenance(config)
    assert set(records) == {"asr", "audio_emotion", "text_emotion", "sequence_encoder", "vad"} | (
        {"fusion"} if config.fusion_model else set()
    )
    back = config_from_provenance(records, PipelineConfig(offline=True, top_k=5))
    assert {k: v.to_dict() for k, v in models_provenance(back).items()} == {
        k: v.to_dict() for k, v in records.items()
    }
    assert back.top_k == 5  # what the records do not name stays the base's


def test_a_given_transcript_is_recorded_as_such_and_names_no_asr_settings():
    config = PipelineConfig(asr_model="org/whisper", offline=True)
    records = models_provenance(config, transcript_given=True)
    assert records["asr"] == GIVEN_TRANSCRIPT and records["asr"].revision is None
    assert config_from_provenance(records, PipelineConfig()).asr_model == PipelineConfig().asr_model
