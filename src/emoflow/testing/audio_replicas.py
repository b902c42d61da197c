"""Replicas of transformers speech models: random weights, the real architectures, config and
feature-extractor formats, saved with ``save_pretrained`` — what ``--audio-model`` reads.

* ``hubert-ser``: a ``HubertForSequenceClassification`` shaped like ``superb/hubert-large-superb-er``
  (layer-norm feature encoder, stable layer norm, attention masks) with its 4 labels
  ``neu``/``hap``/``ang``/``sad``;
* ``wav2vec2-ser``: a ``Wav2Vec2ForSequenceClassification`` like a wav2vec2-base SER fine-tune
  (group-norm feature encoder: no attention mask) whose head reads a learned weighted sum of all
  layers (``use_weighted_layer_sum``), labels in plain words with one emoflow does not map;
* ``wavlm``: a bare ``WavLMModel`` (layer norm, attention masks);
* ``data2vec-audio``: a bare ``Data2VecAudioModel``.

Every replica has the real 7-layer convolutional feature encoder (320 samples per frame, 400 in
a frame's field) and 2 transformer layers of width 32. Whisper replicas are in
:mod:`emoflow.testing.replicas` (``whisper``).

    python -m emoflow.testing.audio_replicas OUT_DIR
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

# superb/hubert-large-superb-er's labels, in its config's id2label order
SUPERB_ER_LABELS = ("neu", "hap", "ang", "sad")
# a wav2vec2 SER fine-tune's words, one of them outside emoflow's table
WORD_LABELS = ("angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised", "boredom")
NAMES = ("hubert-ser", "wav2vec2-ser", "wavlm", "data2vec-audio")

_CONV = dict(
    conv_dim=(16,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
)
_TINY: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    classifier_proj_size=16,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    final_dropout=0.0,
    layerdrop=0.0,
    mask_time_prob=0.0,
    **_CONV,
)


def _feature_extractor(attention_mask: bool, normalize: bool = True) -> Any:
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=normalize,
        return_attention_mask=attention_mask,
    )


def _spread_head(model: Any) -> None:
    """A random head gives almost uniform scores; wider weights make tests of the scores sharp."""
    import torch

    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 2.0)


def _save(model: Any, extractor: Any, out: str | os.PathLike[str]) -> Path:
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(path)
    extractor.save_pretrained(path)
    return path


def _labels(names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }


def build_hubert_ser(out: str | os.PathLike[str], seed: int = 0) -> Path:
    """A superb-ER-like HuBERT classifier (layer norm, attention masks, 4 labels)."""
    import torch
    from transformers import HubertConfig, HubertForSequenceClassification

    torch.manual_seed(seed)
    cfg = HubertConfig(
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        use_weighted_layer_sum=False,
        **_TINY,
        **_labels(SUPERB_ER_LABELS),
    )
    cfg.architectures = ["HubertForSequenceClassification"]
    model = HubertForSequenceClassification(cfg)
    _spread_head(model)
    return _save(model, _feature_extractor(True), out)


def build_wav2vec2_ser(out: str | os.PathLike[str], seed: int = 1) -> Path:
    """A wav2vec2-base-like SER fine-tune: group norm (no attention mask), weighted layer sum."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        conv_bias=False,
        use_weighted_layer_sum=True,
        **_TINY,
        **_labels(WORD_LABELS),
    )
    cfg.architectures = ["Wav2Vec2ForSequenceClassification"]
    model = Wav2Vec2ForSequenceClassification(cfg)
    with torch.no_grad():  # learned, not uniform, layer weights: the head's mix is really used
        model.layer_weights.copy_(torch.tensor([0.5, -1.0, 1.5]))
    _spread_head(model)
    return _save(model, _feature_extractor(False), out)


def build_wavlm(out: str | os.PathLike[str], seed: int = 2) -> Path:
    """A bare WavLM encoder (layer norm, attention masks, gated relative position bias)."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(seed)
    cfg = WavLMConfig(
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=False,
        num_buckets=32,
        max_bucket_distance=80,
        **_TINY,
    )
    cfg.architectures = ["WavLMModel"]
    return _save(WavLMModel(cfg), _feature_extractor(True), out)


def build_data2vec_audio(out: str | os.PathLike[str], seed: int = 3) -> Path:
    """A bare data2vec-audio encoder (its positional encoder is a stack of convolutions)."""
    import torch
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    torch.manual_seed(seed)
    tiny = {k: v for k, v in _TINY.items() if k not in ("num_conv_pos_embeddings",)}
    # data2vec's num_conv_pos_embeddings counts the positional convolutions (5, as the real models)
    cfg = Data2VecAudioConfig(conv_pos_kernel_size=5, num_conv_pos_embeddings=5, **tiny)
    cfg.architectures = ["Data2VecAudioModel"]
    return _save(Data2VecAudioModel(cfg), _feature_extractor(True), out)


BUILDERS = {
    "hubert-ser": build_hubert_ser,
    "wav2vec2-ser": build_wav2vec2_ser,
    "wavlm": build_wavlm,
    "data2vec-audio": build_data2vec_audio,
}


def build_all(out: str | os.PathLike[str]) -> dict[str, Path]:
    """Every replica into ``OUT/<name>``."""
    root = Path(out)
    return {name: build(root / name) for name, build in BUILDERS.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output directory")
    args = ap.parse_args(argv)
    for name, path in build_all(args.out).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
