"""The fusion classifier on synthetic features: what each variant learns (held-out macro-F1).

(1) 4 classes separable only through the audio part, only through the text part, or only
    jointly (XOR of one audio and one text feature): full model vs each ablation.
(2) Multi-label data with strongly co-occurring labels (three pairs that always occur
    together) and (3) labels defined by co-occurrence (label e = a AND b, f = c AND d),
    small training sets, 3 seeds: the correlation module vs the no-correlation ablation vs
    concatenation + MLP.

    python benchmarks/bench_fusion_synthetic.py
"""

from __future__ import annotations

import numpy as np
import torch

from _common import machine
from emoflow.fusion.model import FusionConfig
from emoflow.fusion.train import TrainConfig, evaluate_arrays, predict_arrays, train_model
from emoflow.testing.synthetic import DA, DT, co_occurring_pairs, conjunctions, separable

TC = TrainConfig(epochs=300, patience=40)


def score(train, test, labels, ablation, multi, seed=0) -> float:
    cfg = FusionConfig(DA, DT, labels, d=64, ablation=ablation, multi_label=multi)
    model, _ = train_model(*train, cfg, TrainConfig(epochs=TC.epochs, patience=TC.patience, seed=seed))
    return evaluate_arrays(predict_arrays(model, test[0], test[1]), test[2], labels, multi)["macro_f1"]


def main() -> None:
    torch.set_num_threads(2)
    print("machine:", machine())
    labels4 = ("anger", "joy", "neutral", "sadness")
    print("(1) single-label, 1500 train / 400 test, macro-F1")
    print(
        f"    {'data':8s} "
        + " ".join(f"{a:>15s}" for a in ("full", "audio-only", "text-only", "no-correlation", "mlp"))
    )
    for kind in ("audio", "text", "joint"):
        tr, te = separable(kind, 1500, 0), separable(kind, 400, 1)
        row = [
            score(tr, te, labels4, a, False)
            for a in ("full", "audio-only", "text-only", "no-correlation", "mlp")
        ]
        print(f"    {kind:8s} " + " ".join(f"{v:15.3f}" for v in row))
    labels6 = tuple("abcdef")
    for name, gen, n in (
        ("(2) co-occurring pairs", co_occurring_pairs, 250),
        ("(3) conjunction labels", conjunctions, 200),
    ):
        print(f"{name}, multi-label, {n} train / 2000 test, macro-F1 over seeds 0-2")
        for ablation in ("full", "no-correlation", "mlp"):
            vals = [score(gen(n, s), gen(2000, 100 + s), labels6, ablation, True, seed=s) for s in range(3)]
            print(f"    {ablation:15s} {' '.join(f'{v:.3f}' for v in vals)}  mean {np.mean(vals):.3f}")


if __name__ == "__main__":
    main()
