"""Build replica model directories: random weights, real architectures, config formats and labels.

They load through exactly the code paths the real models use (FunASR ``AutoModel``,
transformers ``from_pretrained`` / ``pipeline``), fully offline. ``tiny`` replicas run in
milliseconds for tests; ``full`` replicas have the real models' sizes, for benchmarks.

    python -m emoflow.testing.replicas OUT_DIR --size tiny|full [--vocab bert-vocab.txt]

Layout written: ``OUT/emotion2vec`` (config.yaml, model.pt, tokens.txt),
``OUT/text-emotion`` (RobertaForSequenceClassification, 7 labels),
``OUT/distilbert`` (DistilBertModel), ``OUT/whisper`` (tiny multilingual-style Whisper with
alignment heads; tiny only: real ASR tests use the real Whisper tiny.en).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Literal

Size = Literal["tiny", "full"]

# The 9 labels of emotion2vec_plus_* (tokens.txt of the real models, "zh/en" form)
E2V_TOKENS = [
    "生气/angry",
    "厌恶/disgusted",
    "恐惧/fearful",
    "开心/happy",
    "中立/neutral",
    "其他/other",
    "难过/sad",
    "吃惊/surprised",
    "<unk>",
]
# j-hartmann/emotion-english-distilroberta-base, in its config's id2label order
TEXT_EMOTIONS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
CORPUS = [
    "I am so happy today, this is wonderful!",
    "That is disgusting and I hate it.",
    "I'm scared, something is wrong.",
    "Why did you do that? I am furious.",
    "It is what it is, nothing special.",
    "I feel so sad and lonely tonight.",
    "Wow, I did not expect that at all!",
    "So, um, I I was like... yeah. Dr. Smith said it's fine! Really? Okay.",
    "The quick brown fox jumps over the lazy dog.",
    "Yesterday was a terrible day and I felt very sad.",
    "Why did you not tell me the truth?",
    "We finally won the championship.",
    "joy__surprise__neutral",
    "anger__disgust__fear__sadness",
    *TEXT_EMOTIONS,
]

E2V_SIZES = {
    "tiny": dict(embed_dim=64, depth=2, heads=4, prenet_depth=1, conv_dim=32),
    # emotion2vec_plus_large: data2vec 2.0 large-like encoder, 1024-d
    "full": dict(embed_dim=1024, depth=16, heads=16, prenet_depth=8, conv_dim=512),
}


def _e2v_config(embed_dim: int, depth: int, heads: int, prenet_depth: int, conv_dim: int) -> dict[str, Any]:
    """The keys of the real emotion2vec config.yaml, at the given sizes."""
    conv = f"[({conv_dim}, 10, 5)] + [({conv_dim}, 3, 2)] * 4 + [({conv_dim},2,2)] + [({conv_dim},2,2)]"
    audio = {
        "type": "AUDIO",
        "prenet_depth": prenet_depth,
        "prenet_layerdrop": 0.05,
        "prenet_dropout": 0.1,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_extra_tokens": 10,
        "init_extra_token_zero": True,
        "mask_noise_std": 0.01,
        "mask_prob_min": None,
        "mask_prob": 0.5,
        "inverse_mask": False,
        "mask_prob_adjust": 0.05,
        "keep_masked_pct": 0.0,
        "mask_length": 5,
        "add_masks": False,
        "remove_masks": False,
        "mask_dropout": 0.0,
        "encoder_zero_mask": True,
        "mask_channel_prob": 0.0,
        "mask_channel_length": 64,
        "ema_local_encoder": False,
        "local_grad_mult": 1.0,
        "use_alibi_encoder": True,
        "alibi_scale": 1.0,
        "learned_alibi": False,
        "alibi_max_pos": None,
        "learned_alibi_scale": True,
        "learned_alibi_scale_per_head": True,
        "learned_alibi_scale_per_layer": False,
        "num_alibi_heads": heads,
        "model_depth": depth,
        "decoder": None,
        "extractor_mode": "layer_norm",
        "feature_encoder_spec": conv,
        "conv_pos_width": 95,
        "conv_pos_groups": min(16, heads),
        "conv_pos_depth": 5,
        "conv_pos_pre_ln": False,
    }
    conf = {
        "loss_beta": 0.0,
        "loss_scale": None,
        "depth": depth,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_heads": heads,
        "norm_eps": 1e-05,
        "norm_affine": True,
        "encoder_dropout": 0.1,
        "post_mlp_drop": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "dropout_input": 0.0,
        "layerdrop": 0.05,
        "embed_dim": embed_dim,
        "mlp_ratio": 4.0,
        "layer_norm_first": False,
        "average_top_k_layers": depth,
        "end_of_block_targets": False,
        "clone_batch": 8,
        "layer_norm_target_layer": False,
        "batch_norm_target_layer": False,
        "instance_norm_target_layer": True,
        "instance_norm_targets": False,
        "layer_norm_targets": False,
        "ema_decay": 0.999,
        "ema_same_dtype": True,
        "log_norms": True,
        "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 20000,
        "ema_encoder_only": False,
        "max_update": 100000,
        "extractor_mode": "layer_norm",
        "shared_decoder": None,
        "min_target_var": 0.1,
        "min_pred_var": 0.01,
        "supported_modality": "AUDIO",
        "mae_init": False,
        "seed": 1,
        "skip_ema": False,
        "cls_loss": 1.0,
        "recon_loss": 0.0,
        "d2v_loss": 1.0,
        "decoder_group": False,
        "adversarial_training": False,
        "adversarial_hidden_dim": 128,
        "adversarial_weight": 0.1,
        "cls_type": "chunk",
        "normalize": True,
        "project_dim": None,
        "modalities": {"audio": audio},
    }
    return {
        "model": "Emotion2vec",
        "model_conf": conf,
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    }


def build_emotion2vec(out: str | os.PathLike, size: Size = "tiny", seed: int = 0) -> Path:
    """An emotion2vec_plus-style directory (config.yaml, model.pt, tokens.txt) FunASR loads offline."""
    import torch
    import yaml

    from emoflow.speech.emotion2vec import prepare_funasr_import

    prepare_funasr_import()
    from funasr.models.emotion2vec.model import Emotion2vec

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _e2v_config(**E2V_SIZES[size])
    (out / "config.yaml").write_text(
        yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    (out / "tokens.txt").write_text("\n".join(E2V_TOKENS) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    model = Emotion2vec(model_conf=cfg["model_conf"], vocab_size=len(E2V_TOKENS))  # vocab_size>0: head
    torch.save(model.state_dict(), out / "model.pt")
    return out


def build_text_classifier(out: str | os.PathLike, size: Size = "tiny", seed: int = 0) -> Path:
    """A RobertaForSequenceClassification with the 7 labels of emotion-english-distilroberta-base."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS * 5,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe.save_model(str(out))
    tok = RobertaTokenizerFast(vocab=str(out / "vocab.json"), merges=str(out / "merges.txt"))
    tok.model_max_length = 512
    dims: dict[str, Any] = (
        dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=len(tok),
        )
        if size == "tiny"
        else dict(
            hidden_size=768,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=3072,
            vocab_size=50265,
        )
    )  # distilroberta-base
    torch.manual_seed(seed)
    cfg = RobertaConfig(
        **dims,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        id2label=dict(enumerate(TEXT_EMOTIONS)),
        label2id={lab: i for i, lab in enumerate(TEXT_EMOTIONS)},
        problem_type="single_label_classification",
    )
    RobertaForSequenceClassification(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_distilbert(
    out: str | os.PathLike, size: Size = "tiny", seed: int = 0, vocab: str | os.PathLike | None = None
) -> Path:
    """A DistilBertModel + uncased WordPiece tokenizer (the real vocabulary when ``vocab`` is given)."""
    import shutil

    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if vocab is not None:
        shutil.copyfile(vocab, out / "vocab.txt")
    else:
        wp = BertWordPieceTokenizer(lowercase=True)
        wp.train_from_iterator(
            CORPUS * 5,
            vocab_size=300,
            min_frequency=1,
            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        )
        wp.save_model(str(out))
    tok = DistilBertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = 512
    dims: dict[str, Any] = (
        dict(dim=32, n_layers=4, n_heads=2, hidden_dim=64)
        if size == "tiny"
        else dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
    )  # distilbert-base-uncased
    torch.manual_seed(seed)
    cfg = DistilBertConfig(
        vocab_size=max(len(tok), 30522 if size == "full" else 0),
        **dims,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    DistilBertModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_whisper(
    out: str | os.PathLike, seed: int = 0, d_model: int = 64, layers: int = 2, heads: int = 4
) -> Path:
    """A tiny random multilingual-style Whisper (like large-v3 / CrisperWhisper) with alignment heads."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    langs = ["<|en|>", "<|de|>"]
    specials = [
        "<|startoftranscript|>",
        *langs,
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 5, vocab_size=500, min_frequency=1, special_tokens=[])
    bpe.save_model(str(out))
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    merges = [
        tuple(line.split(" "))
        for line in (out / "merges.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#version")
    ]
    vocab["<|endoftext|>"] = len(vocab)
    tok = WhisperTokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>")
    tok.add_special_tokens({"extra_special_tokens": specials})
    tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    tok.model_max_length = 448
    ids: dict[str, Any] = {t: tok.convert_tokens_to_ids(t) for t in ["<|endoftext|>", *specials]}
    proc = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=80, sampling_rate=16000), tokenizer=tok
    )
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    torch.manual_seed(seed)
    cfg = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        begin_suppress_tokens=[eot],
        suppress_tokens=[],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=True,
        lang_to_id={lang: ids[lang] for lang in langs},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        max_initial_timestamp_index=50,
        alignment_heads=[[layers - 1, h] for h in range(heads)],
    )
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


def build_all(
    root: str | os.PathLike, size: Size = "tiny", vocab: str | os.PathLike | None = None
) -> dict[str, Path]:
    root = Path(root)
    paths = {
        "emotion2vec": build_emotion2vec(root / "emotion2vec", size),
        "text-emotion": build_text_classifier(root / "text-emotion", size),
        "distilbert": build_distilbert(root / "distilbert", size, vocab=vocab),
    }
    if size == "tiny":
        paths["whisper"] = build_whisper(root / "whisper")
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--size", choices=["tiny", "full"], default="tiny")
    p.add_argument("--vocab", help="a real uncased WordPiece vocab.txt for the DistilBERT replica")
    a = p.parse_args(argv)
    for name, path in build_all(a.out, a.size, a.vocab).items():
        size = sum(f.stat().st_size for f in path.iterdir())
        print(f"{name:13s} {path}  ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
