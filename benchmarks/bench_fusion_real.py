"""The correlation module on real multi-label data: GoEmotions (Reddit comments, 28 labels).

emoflow's fusion classifier, used as a library (``emoflow.fusion.model`` / ``emoflow.fusion.train``),
text only, with its correlation module attending over each input's label tokens (``full-input``,
``FusionConfig(correlation="input")``, the default) or once over the label embeddings
(``full-labels``, ``correlation="labels"``), against its ablations ``no-correlation`` (emotion
matching without the attention layer) and ``mlp`` (no label embeddings), on the published
train / dev / test splits of ``../shared/data/goemotions``: test macro- and micro-F1, mean ± sd
over seeds, training seconds and seconds per epoch (and their ratio to ``no-correlation``).

- Features: a fixed, real extractor available offline: TF-IDF (word 1-2-grams, sublinear tf,
  min_df 2, 50k terms) + TruncatedSVD, both fitted on the training split only.
- Text only: ``full-*`` is the ``text-only`` ablation (the full model with its audio half
  removed). The other ablations cannot also drop audio (one ablation at a time), so they get a
  1-wide audio column of zeros, which standardisation keeps at exactly 0: it adds nothing.
- Label embeddings (full, full-labels, no-correlation) start at random (``train_model``'s default
  without label embeddings from an encoder), or with ``--label-init names`` from the feature
  extractor's vector of each label's name (5 of the 28 names are outside the TF-IDF vocabulary
  and get zeros); on these features that did not help any model.
- Training: ``train_model`` with the dev split as validation (early stopping on dev macro-F1 at
  0.5, emoflow's rule), batch 256, patience 2; the same settings for every model.
- Thresholds (the same rule for every model): one per label, the value on a 0.05-0.95 grid
  (step 0.01) that maximises that label's F1 on dev (the field's practice), applied unchanged
  to test; macro- and micro-F1 come from the same predictions. Test F1 at 0.5 is printed too.
- Reference: a per-label logistic regression on the same features (``--no-reference`` skips it).
- One torch thread by default: on a shared 2-core machine two intra-op threads made a training
  step 10-13x slower (each small op waits for the other, busy, core), for every model.

    python benchmarks/bench_fusion_real.py [--models full-input mlp] [--seeds 0 1 2]
        [--input-seeds N] [--train-limit N] [--svd 256] [--d 64] [--markdown]

A quick run: ``--models full-labels no-correlation --seeds 0 --train-limit 5000 --no-reference``
(about a minute on one core).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import SHARED, machine
from emoflow.fusion.metrics import multi_label_metrics
from emoflow.fusion.model import FusionConfig
from emoflow.fusion.train import TrainConfig, predict_arrays, train_model

DATA = SHARED / "data" / "goemotions"
MODELS = ("full-input", "full-labels", "no-correlation", "mlp")
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def read_split(path: Path, n_labels: int) -> tuple[list[str], np.ndarray]:
    """A published GoEmotions TSV: text, comma-separated label ids, comment id."""
    texts, ids = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        text, labels, _ = line.split("\t")
        texts.append(text)
        ids.append([int(i) for i in labels.split(",")])
    y = np.zeros((len(ids), n_labels), dtype=np.float32)
    for row, label_ids in enumerate(ids):
        y[row, label_ids] = 1
    return texts, y


def features(
    texts: dict[str, list[str]], labels: tuple[str, ...], dim: int
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """TF-IDF + TruncatedSVD fitted on the training split: each split's features and each label
    name's vector."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    t0 = time.perf_counter()
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=50_000)
    svd = TruncatedSVD(dim, random_state=0)
    x = {"train": svd.fit_transform(tfidf.fit_transform(texts["train"]))}
    for split in ("dev", "test"):
        x[split] = svd.transform(tfidf.transform(texts[split]))
    names = svd.transform(tfidf.transform(list(labels)))
    seconds = time.perf_counter() - t0
    return {k: v.astype(np.float32) for k, v in x.items()}, names.astype(np.float32), seconds


def tune_thresholds(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per label, the threshold on GRID that maximises that label's F1 on these data."""
    pred = probs[:, :, None] >= GRID  # (N, K, G)
    pos = y[:, :, None].astype(bool)
    tp, fp, fn = (pred & pos).sum(0), (pred & ~pos).sum(0), (~pred & pos).sum(0)
    return GRID[(2 * tp / np.maximum(2 * tp + fp + fn, 1)).argmax(1)]


def scores(
    dev: np.ndarray, test: np.ndarray, y: dict[str, np.ndarray], labels: tuple[str, ...]
) -> dict[str, float]:
    """Test F1 with the thresholds tuned on dev, and at 0.5, by emoflow's own metrics."""
    tuned = multi_label_metrics(y["test"], (test >= tune_thresholds(dev, y["dev"])).astype(int), labels)
    fixed = multi_label_metrics(y["test"], (test >= 0.5).astype(int), labels)
    return {
        "macro": tuned["macro_f1"],
        "micro": tuned["micro_f1"],
        "macro@0.5": fixed["macro_f1"],
        "micro@0.5": fixed["micro_f1"],
    }


def config(model: str, text_dim: int, labels: tuple[str, ...], d: int) -> FusionConfig:
    if model.startswith("full-"):
        correlation = model.removeprefix("full-")
        return FusionConfig(
            1, text_dim, labels, d=d, multi_label=True, ablation="text-only", correlation=correlation
        )
    return FusionConfig(1, text_dim, labels, d=d, multi_label=True, ablation=model)


def run(
    model: str,
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    labels: tuple[str, ...],
    label_init: torch.Tensor | None,
    args: argparse.Namespace,
    seed: int,
) -> dict[str, Any]:
    zeros = {k: np.zeros((len(v), 1), dtype=np.float32) for k, v in x.items()}
    tc = TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=args.patience, seed=seed
    )
    marks = [time.perf_counter()]
    t0 = marks[0]
    net, info = train_model(
        zeros["train"],
        x["train"],
        y["train"],
        config(model, x["train"].shape[1], labels, args.d),
        tc,
        val=(zeros["dev"], x["dev"], y["dev"]),
        label_init=None if model == "mlp" else label_init,
        progress=lambda *_: marks.append(time.perf_counter()),
    )
    seconds = time.perf_counter() - t0
    dev, test = (predict_arrays(net, zeros[s], x[s]) for s in ("dev", "test"))
    return {
        **scores(dev, test, y, labels),
        "seconds": seconds,
        "epochs": len(info["history"]),
        "epoch_s": float(np.median(np.diff(marks))) if len(marks) > 1 else 0.0,
    }


def step_costs(
    models: list[str],
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    labels: tuple[str, ...],
    args: argparse.Namespace,
    rounds: int,
    rows: int = 4096,
) -> dict[str, float]:
    """Training cost alone, robust to a shared machine's changing load: ``train_model`` for one
    epoch on the same ``rows`` training rows (validation on 64 rows), the models interleaved
    round by round; per model the median over ``rounds`` of the seconds per 1000 rows."""
    n = min(rows, len(y["train"]))
    z = np.zeros((n, 1), np.float32)
    val = (z[:64], x["dev"][:64], y["dev"][:64])
    tc = TrainConfig(epochs=1, lr=args.lr, batch_size=args.batch_size, patience=1, seed=0)
    times: dict[str, list[float]] = {m: [] for m in models}
    for model in models:  # warm-up, untimed (torch's first calls are slow)
        train_model(
            z[:512],
            x["train"][:512],
            y["train"][:512],
            config(model, x["train"].shape[1], labels, args.d),
            tc,
            val=val,
        )
    for _ in range(rounds):
        for model in models:
            cfg = config(model, x["train"].shape[1], labels, args.d)
            t0 = time.perf_counter()
            train_model(z, x["train"][:n], y["train"][:n], cfg, tc, val=val)
            times[model].append((time.perf_counter() - t0) / n * 1000)
    return {m: float(np.median(v)) for m, v in times.items()}


def reference(x: dict[str, np.ndarray], y: dict[str, np.ndarray], labels: tuple[str, ...]) -> dict[str, Any]:
    """Per-label logistic regression (balanced class weights) on the standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    scale = StandardScaler().fit(x["train"])
    xs = {k: scale.transform(v) for k, v in x.items()}
    probs: dict[str, list[np.ndarray]] = {"dev": [], "test": []}
    for k in range(len(labels)):
        lr = LogisticRegression(max_iter=300, class_weight="balanced").fit(xs["train"], y["train"][:, k])
        for split, out in probs.items():
            out.append(lr.predict_proba(xs[split])[:, 1])
    seconds = time.perf_counter() - t0
    dev, test = (np.stack(probs[s], axis=1) for s in ("dev", "test"))
    return {**scores(dev, test, y, labels), "seconds": seconds}


def load_line() -> str:
    """``uptime``'s line (the machine is shared: the load says how far the timings can be trusted)."""
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5, check=True).stdout
        return " ".join(out.split())
    except (OSError, subprocess.SubprocessError):
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    c = {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0] if k != "seed"}
    return {
        **{k: float(v.mean()) for k, v in c.items()},
        "macro_sd": float(c["macro"].std()),
        "micro_sd": float(c["micro"].std()),
        "n": len(rows),
    }


def table(results: dict[str, dict[str, Any]], ref: dict[str, Any] | None, markdown: bool) -> list[str]:
    """The results as text columns or a markdown table; cost relative to no-correlation's s/epoch."""
    base = results.get("no-correlation", {}).get("epoch_s")
    head = [
        "model",
        "seeds",
        "macro-F1 (dev thr.)",
        "micro-F1 (dev thr.)",
        "macro-F1 @0.5",
        "micro-F1 @0.5",
        "train s",
        "epochs",
        "s/epoch",
        "× no-corr.",
    ]
    rows = []
    for model, r in results.items():
        ratio = f"{r['epoch_s'] / base:.1f}" if base else "-"
        rows.append(
            [
                model,
                str(r["n"]),
                f"{r['macro']:.3f} ± {r['macro_sd']:.3f}",
                f"{r['micro']:.3f} ± {r['micro_sd']:.3f}",
                f"{r['macro@0.5']:.3f}",
                f"{r['micro@0.5']:.3f}",
                f"{r['seconds']:.1f}",
                f"{r['epochs']:.1f}",
                f"{r['epoch_s']:.2f}",
                ratio,
            ]
        )
    if ref is not None:
        rows.append(
            [
                "logistic (ref.)",
                "-",
                f"{ref['macro']:.3f}",
                f"{ref['micro']:.3f}",
                f"{ref['macro@0.5']:.3f}",
                f"{ref['micro@0.5']:.3f}",
                f"{ref['seconds']:.1f}",
                "-",
                "-",
                "-",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    return [
        "  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths)))
        for r in [head, *rows]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    ap.add_argument(
        "--input-seeds",
        type=int,
        default=0,
        help="full-input on only the first N of --seeds (it is the slow one); 0: all",
    )
    ap.add_argument("--train-limit", type=int, default=0, help="train on a random subset of this size")
    ap.add_argument("--svd", type=int, default=256, help="feature width (TruncatedSVD components)")
    ap.add_argument("--d", type=int, default=64, help="the classifier's width d")
    ap.add_argument("--epochs", type=int, default=20, help="at most; early stopping on dev")
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--label-init", choices=("random", "names"), default="random")
    ap.add_argument("--no-reference", action="store_true", help="skip the logistic regression")
    ap.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    ap.add_argument(
        "--timing-rounds",
        type=int,
        default=5,
        help="rounds of the interleaved training-cost measurement (see step_costs); 0: none",
    )
    ap.add_argument(
        "--timing-only", action="store_true", help="only the training-cost measurement (no seeds)"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads; see the module docstring")
    args = ap.parse_args()
    if args.input_seeds < 0 or args.train_limit < 0:
        ap.error("--input-seeds and --train-limit are counts (>= 0)")
    if not (DATA / "labels.txt").exists():
        sys.exit(f"GoEmotions not found at {DATA}: it is in ../shared/data/goemotions (see shared/README)")
    torch.set_num_threads(args.threads)
    print("machine:", machine())
    print("at start:", load_line())
    t_start = time.perf_counter()

    labels = tuple((DATA / "labels.txt").read_text(encoding="utf-8").split())
    texts, y = {}, {}
    for split in ("train", "dev", "test"):
        texts[split], y[split] = read_split(DATA / f"{split}.tsv", len(labels))
    if 0 < args.train_limit < len(y["train"]):
        keep = np.sort(np.random.default_rng(0).permutation(len(y["train"]))[: args.train_limit])
        texts["train"] = [texts["train"][i] for i in keep]
        y["train"] = y["train"][keep]
    x, names, feat_s = features(texts, labels, args.svd)
    label_init = None
    if args.label_init == "names":
        label_init = torch.as_tensor(names)
        label_init = label_init / label_init.std() * 0.5  # the scale of emoflow's random init
    print(
        f"GoEmotions: {len(y['train'])} train / {len(y['dev'])} dev / {len(y['test'])} test, "
        f"{len(labels)} labels; TF-IDF + SVD-{args.svd} fitted on train in {feat_s:.1f} s; "
        f"{int((np.abs(names).sum(1) == 0).sum())} label names outside the vocabulary"
    )
    print(
        f"classifier d={args.d}, batch {args.batch_size}, lr {args.lr}, patience {args.patience} "
        f"(at most {args.epochs} epochs), label embeddings from {args.label_init}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )
    print("thresholds: one per label, tuned on dev (and the fixed 0.5 for comparison)", flush=True)
    results: dict[str, dict[str, Any]] = {}
    per_seed: list[str] = []
    for model in [] if args.timing_only else args.models:
        seeds = args.seeds
        if model == "full-input" and args.input_seeds:
            seeds = seeds[: args.input_seeds]
        rows = []
        for seed in seeds:
            rows.append({"seed": seed, **run(model, x, y, labels, label_init, args, seed)})
            r = rows[-1]
            per_seed.append(
                f"  {model} seed {seed}: macro-F1 {r['macro']:.3f}, micro-F1 {r['micro']:.3f} "
                f"(@0.5: {r['macro@0.5']:.3f} / {r['micro@0.5']:.3f}), {r['seconds']:.1f} s, "
                f"{r['epochs']} epochs, {r['epoch_s']:.2f} s/epoch"
            )
            print(per_seed[-1], file=sys.stderr, flush=True)
        results[model] = summarise(rows)
    costs = step_costs(args.models, x, y, labels, args, args.timing_rounds) if args.timing_rounds else {}
    ref = None if args.no_reference or args.timing_only else reference(x, y, labels)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print()
    if results:
        print("\n".join(table(results, ref, markdown=False)))
        print(
            "macro/micro-F1 on test: mean ± sd over the seeds (thresholds tuned on dev, then at 0.5); "
            "train s = train_model wall time (per-epoch dev validation included); "
            "× no-corr. = s/epoch relative to no-correlation"
        )
    if costs:
        base = costs.get("no-correlation")
        print(
            f"training cost, interleaved (train_model, 1 epoch on the same {min(4096, len(y['train']))} "
            f"rows, median of {args.timing_rounds} rounds; load at end {os.getloadavg()[0]:.1f}):"
        )
        for model, c in costs.items():
            ratio = f", {c / base:.1f}× no-correlation" if base else ""
            print(f"  {model:16s} {c:6.2f} s per 1000 training rows{ratio}")
    print(
        f"whole run {time.perf_counter() - t_start:.0f} s wall, {usage.ru_utime + usage.ru_stime:.0f} s CPU"
    )
    print("at end:", load_line())
    if per_seed:
        print("per seed:")
        print("\n".join(per_seed))
    if args.markdown and results:
        print()
        print("\n".join(table(results, ref, markdown=True)))


if __name__ == "__main__":
    main()
