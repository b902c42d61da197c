"""Transformers speech models as the voice branch (issue 15): SER classifiers and bare encoders
(replicas with the real architectures and config formats), Whisper's encoder on each clip's own
length, ``--audio-layers``, what an ``--audio-model`` folder holds, and the real Whisper tiny.en
on real emotional speech (RAVDESS actors it never saw)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emoflow.audio.io import Audio, load_audio
from emoflow.config import AudioLayers, PipelineConfig, TimelineConfig
from emoflow.errors import ConfigError, ModelError, ModelUnavailableError
from emoflow.inference import FrameEncoder
from emoflow.models import ModelSpec, one_cpu_thread
from emoflow.protocols import AudioEmotionModel
from emoflow.speech import audio_provenance_options, inspect_audio_model, make_audio_encoder
from emoflow.speech.labels import voice_labels
from emoflow.speech.transformers_audio import TransformersAudioEncoder
from emoflow.types import TimeSpan
from tests.helpers import need_shared, run_cli_in_process

# transformers' WavLM hands torch mismatched mask types on padded batches (results are exact: tested)
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")

SPANS = [TimeSpan(0.0, 1.3), TimeSpan(1.0, 3.7), TimeSpan(2.0, 2.1), TimeSpan(4.2, 6.4)]


@pytest.fixture(scope="module")
def audio_replicas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from emoflow.testing.audio_replicas import build_all

    return build_all(tmp_path_factory.mktemp("audio-replicas"))


@pytest.fixture(scope="module")
def models(audio_replicas: dict[str, Path], replicas: dict[str, Path]) -> dict[str, Path]:
    """Every kind: two SER classifiers, two bare encoders, a tiny Whisper (a ForConditionalGeneration)."""
    return {**audio_replicas, "whisper": replicas["whisper"]}


def encoder(path: Path, layers: str = "last", **kw: float) -> TransformersAudioEncoder:
    enc = make_audio_encoder(ModelSpec(str(path), dtype="float32"), layers=layers, **kw)
    assert isinstance(enc, TransformersAudioEncoder)
    return enc


def speechlike(seconds: float, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return Audio((x + 0.02 * rng.standard_normal(t.size)).astype(np.float32))


# ---- what a folder holds ---------------------------------------------------------------------
def test_recognises_each_kind(models, replicas):
    seen = {name: inspect_audio_model(str(p)) for name, p in models.items()}
    assert {n: (i.model_type, i.classifier, i.n_layers) for n, i in seen.items()} == {
        "hubert-ser": ("hubert", True, 2),
        "wav2vec2-ser": ("wav2vec2", True, 2),
        "wavlm": ("wavlm", False, 2),
        "data2vec-audio": ("data2vec-audio", False, 2),
        "whisper": ("whisper", False, 2),
    }
    assert inspect_audio_model(str(replicas["emotion2vec"])).kind == "emotion2vec"


def test_unknown_folders_name_what_they_hold(tmp_path, replicas):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ModelError, match=r"model_type 'bert' \(BertModel\); supported: emotion2vec") as e:
        make_audio_encoder(str(bert))
    assert e.value.exit_code == 4
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text(
        json.dumps({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForSpeechClassification"]})
    )
    with pytest.raises(ModelError, match="Wav2Vec2ForSpeechClassification is not a transformers class"):
        make_audio_encoder(str(custom))
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelUnavailableError, match="holds weights.bin, not a model") as missing:
        make_audio_encoder(str(other))
    assert missing.value.exit_code == 4
    partial = tmp_path / "e2v"
    shutil.copytree(replicas["emotion2vec"], partial)
    (partial / "model.pt").unlink()
    with pytest.raises(ModelUnavailableError, match="lacks model.pt"):
        make_audio_encoder(str(partial))


def test_audio_layers_setting():
    assert PipelineConfig(audio_layers=" 3, 1").audio_layers == "1,3"
    assert AudioLayers.parse("ALL").text == "all" and AudioLayers.parse("2").resolve(4) == (2,)
    for bad in ("", "x", "-1", "1,1", "1.5", "²"):
        with pytest.raises(ConfigError):
            PipelineConfig(audio_layers=bad)


def test_bad_audio_layers_on_the_command_line_is_a_usage_error(tmp_path):
    r = run_cli_in_process("analyze", str(tmp_path / "a.wav"), "--audio-layers", "top")
    assert r.returncode == 2 and "unknown audio layers 'top'" in r.stderr


def test_layers_out_of_range_or_not_applicable(models, replicas):
    with pytest.raises(ConfigError, match=r"audio layer 3 is out of range: .* hidden states 0..2"):
        make_audio_encoder(str(models["wavlm"]), layers="0,3")
    with pytest.raises(ConfigError, match="classifier .* head reads its own layers"):
        make_audio_encoder(str(models["hubert-ser"]), layers="all")
    with pytest.raises(ConfigError, match="emotion2vec, which gives its last layer only"):
        make_audio_encoder(str(replicas["emotion2vec"]), layers="mean")


# ---- classifiers: transformers' own scores, emoflow's labels --------------------------------
@pytest.mark.parametrize("name", ["hubert-ser", "wav2vec2-ser"])
def test_classifier_scores_are_the_checkpoints_own(models, name):
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    enc = encoder(models[name])
    ref = AutoModelForAudioClassification.from_pretrained(str(models[name])).eval()
    fe = AutoFeatureExtractor.from_pretrained(str(models[name]))
    audio = speechlike(2.7, seed=1)
    with torch.inference_mode():
        logits = ref(**fe(audio.samples, sampling_rate=16000, return_tensors="pt")).logits
    expected = torch.softmax(logits, -1)[0].numpy()
    assert expected.max() > 1.5 / len(expected)  # not uniform: the comparison is sharp
    np.testing.assert_allclose(enc.utterance(audio).scores.scores, expected, atol=1e-5)


def test_label_table():
    assert voice_labels(["neu", "hap", "ang", "sad"]) == ("neutral", "happy", "angry", "sad")
    assert voice_labels(["Fear", "boredom", "LABEL_3", "生气/angry"]) == (
        "fearful",
        "boredom",
        "LABEL_3",
        "angry",
    )
    assert voice_labels(["hap", "happy"]) == ("hap", "happy")  # would collide: kept as they are


# ---- the stage contract, every kind -----------------------------------------------------------
@pytest.mark.parametrize("name", ["hubert-ser", "wav2vec2-ser", "wavlm", "data2vec-audio", "whisper"])
def test_utterance_spans_and_timelines(models, name):
    enc = encoder(models[name], batch_size=4)
    assert isinstance(enc, AudioEmotionModel) and isinstance(enc, FrameEncoder)
    n_labels = len(enc.labels)
    assert n_labels == (
        0 if name in ("wavlm", "data2vec-audio", "whisper") else {"hubert-ser": 4}.get(name, 9)
    )
    audio = speechlike(6.5, seed=2)
    utt = enc.utterance(audio)
    assert utt.embedding.shape == (enc.dim,) and len(utt.scores.scores) == n_labels
    batched = enc.spans(audio, SPANS)
    for span, b in zip(SPANS, batched):  # batched by padded seconds, each equal to its run alone
        np.testing.assert_allclose(b.embedding, enc.spans(audio, [span])[0].embedding, atol=2e-5)
    for mode in ("exact", "pooled"):
        c = TimelineConfig(window_s=3, hop_s=1, mode=mode, chunk_s=4.0)
        tl = enc.timeline(audio, c)
        assert len(tl.spans) == 5 and tl.scores.shape == (5, n_labels) and tl.embeddings.shape == (5, enc.dim)
        voice = enc.analyze(audio, SPANS, c)
        assert len(voice.spans) == len(SPANS) and voice.timeline.embeddings.shape == (5, enc.dim)
    exact = enc.timeline(audio, TimelineConfig(mode="exact"))
    ref = enc.spans(audio, list(exact.spans))
    np.testing.assert_allclose(exact.embeddings, np.stack([r.embedding for r in ref]), atol=2e-5)
    if n_labels:
        np.testing.assert_allclose(exact.scores.sum(1), 1.0, atol=1e-5)


def test_layer_selection(models):
    """One hidden state as it is; several each layer-normalised per frame, then averaged or
    concatenated (transformers' own hidden states as the reference; L = the encoder's output)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoFeatureExtractor, AutoModel

    path = str(models["wavlm"])
    audio = speechlike(3.0, seed=3)
    ref = AutoModel.from_pretrained(path).eval()
    inputs = AutoFeatureExtractor.from_pretrained(path)(
        audio.samples, sampling_rate=16000, return_tensors="pt"
    )
    with torch.inference_mode():
        out = ref(**inputs, output_hidden_states=True)
    hs = [*out.hidden_states[:-1], out.last_hidden_state]
    raw = [h[0].mean(0).numpy() for h in hs]
    normed = [F.layer_norm(h[0], (h.shape[-1],)).mean(0).numpy() for h in hs]
    got = {
        lay: encoder(models["wavlm"], lay).utterance(audio).embedding
        for lay in ("all", "last", "mean", "0", "2,1")
    }
    assert got["all"].shape == (3 * 32,) and got["last"].shape == (32,)
    np.testing.assert_allclose(got["all"], np.concatenate(normed), atol=1e-5)
    np.testing.assert_allclose(got["last"], raw[2], atol=1e-5)
    np.testing.assert_allclose(got["0"], raw[0], atol=1e-5)
    np.testing.assert_allclose(got["mean"], np.mean(normed, axis=0), atol=1e-5)
    np.testing.assert_allclose(got["2,1"], np.mean(normed[1:], axis=0), atol=1e-5)
    assert encoder(models["whisper"], "all").dim == 3 * 64


def test_provenance_records_encoder_and_layers(models, replicas):
    enc = encoder(models["wavlm"], "2, 0")
    assert enc.provenance().options == {"encoder": "wavlm", "layers": "0,2"}
    assert audio_provenance_options(enc.spec, "2,0") == enc.provenance().options
    assert encoder(models["hubert-ser"]).provenance().options == {"encoder": "hubert", "layers": "head"}
    assert encoder(models["whisper"]).options() == {"encoder": "whisper", "layers": "last"}
    assert audio_provenance_options(ModelSpec(str(replicas["emotion2vec"])), "last") == {}


# ---- Whisper's encoder on the clip's own length --------------------------------------------
def test_whisper_on_30_s_equals_transformers(models):
    """On a full 30 s input the trimmed forward is transformers' forward, layer by layer (the last
    after the final norm, as transformers gives it)."""
    import torch
    from transformers import AutoFeatureExtractor, WhisperModel

    path = str(models["whisper"])
    enc = encoder(models["whisper"], "all")
    ref = WhisperModel.from_pretrained(path).get_encoder().eval()
    wave = speechlike(30.0, seed=4).samples
    feats = AutoFeatureExtractor.from_pretrained(path)(wave, sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        hs = ref(feats.input_features, output_hidden_states=True).hidden_states
    frames, counts = enc.frames([wave])
    assert counts[0] == 1500
    normed = [torch.nn.functional.layer_norm(h[0], (h.shape[-1],)) for h in hs]  # "all": per frame
    np.testing.assert_allclose(frames[0], torch.cat(normed, dim=-1).numpy(), atol=1e-4)
    last, _ = encoder(models["whisper"]).frames([wave])
    np.testing.assert_allclose(last[0], hs[-1][0].numpy(), atol=1e-4)  # one layer: as it is


def test_whisper_never_runs_over_30_s(models):
    enc = encoder(models["whisper"])
    with pytest.raises(ConfigError, match="over .* limit of 30 s"):
        enc.frames([np.zeros(16000 * 31, np.float32)])
    long = enc.utterance(speechlike(41.0, seed=5))  # cut into two pieces of 20.5 s
    assert long.embedding.shape == (enc.dim,)
    assert encoder(models["whisper"], max_input_s=60.0).max_input_s == 30.0


def test_real_whisper_trimmed_is_close_to_padded(whisper_tiny_dir):
    """The 30 s padded run attends to the silence too: its first frames differ a little from the
    clip's own run. Measured on 8 RAVDESS clips (cosine of the layer means): 1.0 for the input
    embeddings, 0.98-1.0 for layers 1-3, 0.945-0.968 for the last layer."""
    import torch
    from transformers import AutoFeatureExtractor, WhisperModel

    clip = need_shared("data", "ravdess_sample", "Actor_13", "03-01-05-02-01-01-13.flac")
    audio = load_audio(clip)
    enc = encoder(whisper_tiny_dir, "all")
    ref = WhisperModel.from_pretrained(str(whisper_tiny_dir), dtype=torch.float32).get_encoder().eval()
    feats = AutoFeatureExtractor.from_pretrained(str(whisper_tiny_dir))(
        audio.samples, sampling_rate=16000, return_tensors="pt"
    )
    with torch.inference_mode():
        hs = ref(feats.input_features, output_hidden_states=True).hidden_states
    n = int(enc.frames([audio.samples])[1][0])
    ours = enc.utterance(audio).embedding.reshape(len(hs), -1)
    for layer, h in enumerate(hs):  # "all": each layer normalised per frame, then averaged
        padded = torch.nn.functional.layer_norm(h[0, :n], (h.shape[-1],)).mean(0).numpy()
        cos = padded @ ours[layer] / np.linalg.norm(padded) / np.linalg.norm(ours[layer])
        assert cos > (0.999 if layer == 0 else 0.93), (layer, cos)


@pytest.mark.slow  # embeds 280 real clips with real weights, then trains
def test_real_whisper_recognises_emotions_of_unseen_actors(whisper_tiny_dir):
    """Real weights, real speech: emoflow's classifier (audio-only, the benchmark's settings)
    trained on 8 RAVDESS actors, tested on 2 others (strong intensity: 28 clips an actor, 7
    classes, chance 0.14). Measured on this split: UA 0.73 (seed 0), 0.59 (seed 1); other splits
    of 2 test actors 0.55-0.88: one split is noisy, so the bound is 0.40 (2.8x chance)."""

    from emoflow.fusion.adapters import RAVDESS_EMOTIONS, RAVDESS_MAP, RAVDESS_RE
    from emoflow.fusion.model import FusionConfig
    from emoflow.fusion.train import TrainConfig, evaluate_arrays, predict_arrays, train_model

    root = need_shared("data", "ravdess_sample")
    labels = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
    train_actors, test_actors = range(13, 21), (23, 24)
    enc = encoder(whisper_tiny_dir, "all")
    waves, ys, test = [], [], []
    for p in sorted(root.glob("Actor_*/*.flac")):
        name = RAVDESS_RE.match(p.stem)
        assert name is not None
        actor = int(name.group(7))
        if name.group(4) == "02" and actor in (*train_actors, *test_actors):
            waves.append(load_audio(p).samples)
            ys.append(labels.index(RAVDESS_MAP[RAVDESS_EMOTIONS[name.group(3)]]))
            test.append(actor in test_actors)
    y, te = np.array(ys), np.array(test)
    assert (~te).sum() == 8 * 28 and te.sum() == 2 * 28
    onehot = np.eye(len(labels), dtype=np.float32)
    # one thread: on a busy 2-core machine two threads spin against other processes (10x slower)
    with one_cpu_thread():
        x, _ = enc.embed(waves)  # batched by padded seconds
        (xa, ya), (xb, yb) = (x[~te], y[~te]), (x[te], y[te])
        model, _ = train_model(
            xa,
            np.zeros((len(ya), 1), np.float32),
            onehot[ya],
            FusionConfig(xa.shape[1], 1, labels, ablation="audio-only", dropout=0.5),
            TrainConfig(seed=0, epochs=150, weight_decay=0.1),
        )
    probs = predict_arrays(model, xb, np.zeros((len(yb), 1), np.float32))
    m = evaluate_arrays(probs, onehot[yb], labels, False)
    assert m["UA"] > 0.40, m["UA"]
