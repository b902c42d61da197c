"""A replica of pyannote's ``speaker-diarization-community-1`` pipeline folder: pyannote's own
model classes with random weights, in the layout and formats a ``hf download`` of the real
pipeline has, so ``pyannote.audio.Pipeline.from_pretrained(folder)`` (and emoflow's ``pyannote``
backend) runs its real loading and inference code offline.

    python -m emoflow.testing.pyannote_replica OUT_DIR [--seed 0]

Layout written (as in the real repository)::

    OUT/config.yaml                      SpeakerDiarization, VBx clustering, $model/... entries
    OUT/segmentation/pytorch_model.bin   PyanNet (SincNet + LSTM), powerset: 3 speakers, 2 at once
    OUT/embedding/pytorch_model.bin      WeSpeakerResNet34 (256-dim, fbank front end)
    OUT/plda/xvec_transform.npz          x-vector centring/whitening/LDA (256 -> 128)
    OUT/plda/plda.npz                    PLDA (mu, tr, psi)

The checkpoints are Lightning checkpoints written through pyannote's own ``on_save_checkpoint``
(architecture, specifications, version), exactly what ``Model.from_pretrained`` reads. The
segmentation model is smaller than the real one (LSTM 32 wide, 1 layer, instead of 128 x 4) so
tests stay fast; the embedding model is the real architecture (ResNet34, ~6.6 M parameters).
pyannote.audio is imported here only, when a replica is built.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

# what the real community-1 pipeline uses (its config.yaml)
SEGMENTATION_DURATION = 10.0
SPEAKERS_PER_CHUNK = 3
MAX_SIMULTANEOUS = 2
LDA_DIMENSION = 128
PIPELINE_PARAMS: dict[str, Any] = {
    "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
    "segmentation": {"min_duration_off": 0.0},
}


def _save_model(model: Any, folder: Path) -> None:
    """A Lightning checkpoint in the form pyannote's ``Model.from_pretrained`` loads."""
    import lightning
    import torch

    ckpt: dict[str, Any] = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(ckpt)  # pyannote.audio's versions, architecture, specifications
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, folder / "pytorch_model.bin")


def _write_plda(folder: Path, dimension: int, seed: int) -> None:
    """A random but well-conditioned x-vector transform and PLDA (VBx's ``vbx_setup`` inputs)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lda = np.linalg.qr(rng.normal(size=(dimension, LDA_DIMENSION)))[0]  # orthonormal columns
    np.savez(
        folder / "xvec_transform.npz",
        mean1=0.01 * rng.normal(size=dimension),
        mean2=0.01 * rng.normal(size=LDA_DIMENSION),
        lda=lda,
    )
    np.savez(
        folder / "plda.npz",
        mu=np.zeros(LDA_DIMENSION),
        tr=np.eye(LDA_DIMENSION),
        psi=np.linspace(5.0, 0.1, LDA_DIMENSION),  # between-class variances, decreasing
    )


def build_pyannote_pipeline(out: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write the replica pipeline folder ``out`` (see the module docstring); returns it."""
    import torch
    import yaml
    from pyannote.audio import __version__ as pyannote_version
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    segmentation = PyanNet(
        sincnet={"stride": 10},
        lstm={"hidden_size": 32, "num_layers": 1},
        linear={"hidden_size": 32, "num_layers": 1},
    )
    segmentation.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=SEGMENTATION_DURATION,
        warm_up=(0.0, 0.0),
        classes=[f"speaker#{i + 1}" for i in range(SPEAKERS_PER_CHUNK)],
        powerset_max_classes=MAX_SIMULTANEOUS,
        permutation_invariant=True,
    )
    segmentation.build()  # the powerset classifier and activation, from the specifications
    _save_model(segmentation, folder / "segmentation")

    embedding = WeSpeakerResNet34()
    embedding.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=SEGMENTATION_DURATION
    )
    _save_model(embedding, folder / "embedding")
    _write_plda(folder / "plda", int(embedding.dimension), seed)

    config = {
        "dependencies": {"pyannote.audio": pyannote_version},
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
                "clustering": "VBxClustering",
                "embedding_exclude_overlap": True,
                "embedding_batch_size": 8,
                "segmentation_batch_size": 8,
            },
        },
        "params": PIPELINE_PARAMS,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write the replica pipeline into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_pyannote_pipeline(args.out, seed=args.seed))


if __name__ == "__main__":
    main()
