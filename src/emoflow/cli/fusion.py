"""The fusion classifier's commands: ``dataset build``, ``features``, ``train``, ``evaluate``, ``predict``."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from emoflow import config as cfg
from emoflow.cli.common import err, loads_models
from emoflow.cli.options import pipeline_config, with_options

# the classifier's dropout and correlation kind (FusionConfig's defaults), until config.py names them

dataset_app = typer.Typer(
    help="Training manifests from emotion datasets.", no_args_is_help=True, rich_markup_mode=None
)


class Layout(str, Enum):
    ravdess = "ravdess"
    cremad = "cremad"
    iemocap = "iemocap"
    meld = "meld"


@dataset_app.command("build")
def dataset_build(
    root: Annotated[Path, typer.Argument(help="The dataset's root folder, as distributed.")],
    layout: Annotated[Layout, typer.Option(help="Which dataset's layout.")],
    out: Annotated[Path, typer.Option(help="Manifest to write (.csv or .jsonl).")],
    split: Annotated[bool, typer.Option(help="Assign speaker-independent train/val/test splits.")] = True,
) -> None:
    """Build a training manifest (labels mapped to the candidate emotions) from a local dataset."""
    from collections import Counter

    from emoflow.fusion.datasets import build_manifest, write_manifest

    rows = build_manifest(layout.value, root, split=split)
    n = write_manifest(rows, out)
    labels = Counter(lab for r in rows for lab in r.labels)
    splits = Counter(r.split or "-" for r in rows)
    err.print(
        f"wrote {n} rows to {out}; labels: {dict(labels)}; splits: {dict(splits)}; "
        f"{len({r.speaker for r in rows})} speakers"
    )


@loads_models
@with_options(
    "audio_model",
    "audio_layers",
    "text_model",
    "encoder_model",
    "embedding",
    "asr_model",
    "top_k",
    "device",
    "offline",
    help={
        "audio_model": "Voice model whose embeddings are the audio features: emotion2vec, a "
        "transformers SER classifier (wav2vec2/HuBERT/WavLM/data2vec-audio; its pooled head input) "
        "or a bare encoder of those types or any Whisper (hidden states: see --audio-layers).",
        "text_model": "Text emotion classifier.",
        "encoder_model": "Sequence encoder.",
        "embedding": "cls, layers or word2vec:PATH.",
        "asr_model": "ASR for rows without text.",
        "top_k": "Emotions per sequence.",
    },
)
def features(
    manifest: Annotated[Path, typer.Argument(help="Training manifest (.csv or .jsonl).")],
    out: Annotated[Path, typer.Option(help="Feature cache directory (resumable).")],
    *,
    options: dict[str, Any],
) -> None:
    """Extract (audio, text) features for every manifest row into a cache; rows already there are skipped."""
    from rich.progress import Progress

    from emoflow.fusion.workflow import extract_features

    config = pipeline_config(options)
    with Progress(console=err) as progress:
        task = progress.add_task("features", total=None)
        fs = extract_features(
            manifest, out, config, progress=lambda i, n, name: progress.update(task, completed=i, total=n)
        )
    for row, why in fs.failures:
        err.print(f"error: {row.id}: {why}", markup=False)
    err.print(
        f"{len(fs)} rows with features in {out}" + (f"; {len(fs.failures)} failed" if fs.failures else "")
    )
    if fs.failures:
        raise typer.Exit(3)


@loads_models
def train(
    manifest: Annotated[Path, typer.Argument(help="Training manifest with splits.")],
    cache: Annotated[Path, typer.Option(help="Feature cache made by `emoflow features`.")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    ablation: Annotated[
        str,
        typer.Option(
            help="full, audio-only, text-only, no-correlation or mlp. An audio-only model also "
            "gives voice scores to a voice encoder without its own (analyze --fusion-model)."
        ),
    ] = cfg.FUSION_ABLATION,
    correlation: Annotated[
        str,
        typer.Option(
            help="What the correlation module attends over: input (the label tokens conditioned on "
            "each example) or labels (the label embeddings once per batch: cheaper)."
        ),
    ] = cfg.FUSION_CORRELATION,
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated candidate emotions (default: those used).")
    ] = None,
    multi_label: Annotated[
        bool | None,
        typer.Option("--multi-label/--single-label", help="Default: multi-label if any row has several."),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            help="Speaker-independent cross-validation in K folds by the manifest's speaker column, "
            "over every row outside the test split: per-fold and mean ± sd UA/WA/macro-F1, written "
            "to OUT/cv_metrics.json. The saved model is then trained on all those rows.",
            min=2,
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = cfg.TrainConfig.epochs,
    patience: Annotated[
        int, typer.Option(help="Early-stopping patience (epochs).")
    ] = cfg.TrainConfig.patience,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = cfg.TrainConfig.lr,
    weight_decay: Annotated[
        float, typer.Option(help="AdamW weight decay.", min=0.0)
    ] = cfg.TrainConfig.weight_decay,
    dropout: Annotated[
        float, typer.Option(help="Dropout of the classifier, in [0, 1).")
    ] = cfg.FUSION_DROPOUT,
    dim: Annotated[int, typer.Option(help="Hidden size d.")] = cfg.FUSION_DIM,
    seed: Annotated[int, typer.Option(help="Random seed.")] = cfg.TrainConfig.seed,
) -> None:
    """Train the correlation-aware fusion classifier on cached features."""
    from rich.progress import Progress

    from emoflow.cli.common import UsageError, usage_errors
    from emoflow.config import TrainConfig
    from emoflow.fusion.folds import format_summary
    from emoflow.fusion.workflow import train_from_manifest

    if not 0 <= dropout < 1:
        raise UsageError(f"--dropout must be in [0, 1), got {dropout}")
    tc = TrainConfig(epochs=epochs, patience=patience, lr=lr, weight_decay=weight_decay, seed=seed)
    with Progress(console=err) as progress:
        task = progress.add_task("training", total=epochs)

        def on_epoch(e: int, loss: float, f1: float, what: str = "") -> None:
            progress.update(
                task, completed=e + 1, description=f"{what}epoch {e + 1} loss {loss:.3f} val F1 {f1:.3f}"
            )

        with usage_errors():  # --folds beyond the manifest's speakers: a usage error
            metrics = train_from_manifest(
                manifest,
                cache,
                out,
                labels=labels.split(",") if labels else None,
                ablation=ablation,
                multi_label=multi_label,
                d=dim,
                dropout=dropout,
                train_cfg=tc,
                folds=folds,
                correlation=correlation,
                progress=lambda e, loss, f1: on_epoch(e, loss, f1, "all rows: " if folds else ""),
                fold_progress=lambda k, e, loss, f1: on_epoch(e, loss, f1, f"fold {k + 1}/{folds}: "),
            )
    if "cv" in metrics:
        for line in format_summary(metrics["cv"]):
            err.print(line, markup=False)
    test = metrics.get("test")
    summary = ", ".join(
        f"{k} {test[k]:.3f}" for k in ("WA", "UA", "macro_f1", "micro_f1") if test and k in test
    )
    val = metrics["best_val_macro_f1"]  # None: too little data for validation, trained on all rows
    err.print(
        f"saved {out} (best epoch {metrics['best_epoch']}, "
        + (f"val macro-F1 {val:.3f})" if val is not None else "no validation rows)")
        + (f"; test: {summary}" if summary else "")
        + (f"; folds: {out / 'cv_metrics.json'}" if "cv" in metrics else ""),
        markup=False,
    )


@loads_models
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A trained fusion model.")],
    manifest: Annotated[Path, typer.Argument(help="Manifest to evaluate on.")],
    cache: Annotated[Path | None, typer.Option(help="Feature cache (else features are extracted).")] = None,
    split: Annotated[str, typer.Option(help="Which split's rows, or 'all'.")] = cfg.EVALUATION_SPLIT,
    out: Annotated[Path | None, typer.Option(help="Where to write metrics (default: the model dir).")] = None,
) -> None:
    """Evaluate a trained model: WA, UA, macro/weighted-F1, per-class report, confusion matrix."""
    import json

    from emoflow.fusion.workflow import evaluate_model

    m = evaluate_model(model_dir, manifest, cache, None if split == "all" else split, out)
    keys = ("n", "WA", "UA", "macro_f1", "weighted_f1", "micro_f1", "hamming_loss")
    sys.stdout.write(json.dumps({k: m[k] for k in keys if k in m}, indent=1) + "\n")


@loads_models
def predict(
    model_dir: Annotated[Path, typer.Argument(help="A trained fusion model.")],
    audio: Annotated[list[Path], typer.Argument(help="Recordings (each one utterance).")],
) -> None:
    """Predict emotions for whole recordings with a trained fusion model (JSON lines on stdout)."""
    import json

    from emoflow.fusion.workflow import predict_files

    results = predict_files(model_dir, audio)
    for r in results:
        sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
    failed = [r for r in results if "error" in r]
    for r in failed:
        err.print(f"error: {r['audio']}: {r['error']}", markup=False)
    if failed:
        raise typer.Exit(3)
