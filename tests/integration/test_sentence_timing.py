"""Sentence timing on real speech: the real Whisper tiny.en transcribes, the VAD refines.

Sentence times are compared with the exact times of the synthetic recordings in
``../shared/audio/speech`` (and word times alone are shown to be worse)."""

from __future__ import annotations

import pytest

from emoflow.asr.transcript_io import transcript_from_json
from emoflow.audio.io import load_audio
from emoflow.config import SentenceConfig
from emoflow.text.sentences import SentenceSegmenter
from tests.helpers import boundary_error, speech_files, truth_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def asr(whisper_tiny_dir):
    import torch
    from transformers import pipeline

    return pipeline(
        "automatic-speech-recognition", model=str(whisper_tiny_dir), device="cpu", dtype=torch.float32
    )


@pytest.fixture(scope="module")
def segmenter():
    return SentenceSegmenter()


@pytest.mark.parametrize("path", speech_files(), ids=lambda p: p.name)
def test_refined_sentence_times_match_truth(asr, segmenter, path):
    audio = load_audio(path)
    out = asr({"raw": audio.samples, "sampling_rate": 16000}, return_timestamps="word")
    transcript = transcript_from_json(out, audio_duration=audio.duration)
    truth = [(s["start"], s["end"]) for s in truth_for(path)["sentences"]]

    raw = SentenceSegmenter(SentenceConfig(refine=False))(transcript)
    refined = segmenter(transcript, audio)
    err_raw = boundary_error([(s.start, s.end) for s in raw], truth)
    err = boundary_error([(s.start, s.end) for s in refined], truth)
    print(
        f"{path.name}: {len(refined)}/{len(truth)} sentences, boundary error {err:.3f} s "
        f"(word times alone {err_raw:.3f} s)"
    )
    assert len(truth) - 1 <= len(refined) <= len(truth)
    assert err < 0.15
    assert err < err_raw
