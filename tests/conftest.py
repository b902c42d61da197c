"""Session fixtures: the model replicas and the real Whisper tiny.en, as folders, CLI options and a
:class:`~emoflow.config.PipelineConfig`. Helpers that are not fixtures live in ``tests/helpers.py``.

The replicas are built once per recipe into ``.cache/test-replicas`` (``EMOFLOW_TEST_CACHE``
overrides it) and copied for each session; ``../shared`` is optional: tests that need it skip
with a reason when it is absent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import ROOT, need_shared

if TYPE_CHECKING:
    from emoflow.config import PipelineConfig


@pytest.fixture(autouse=True)
def one_torch_thread() -> None:
    """Every test starts on one torch thread. The models in tests are tiny: a second intra-op
    thread only adds synchronisation (a 15-epoch fusion training: 5 s of CPU on one thread, 29 s
    on two; far worse on a busy machine), and no test inherits the count a previous one left.
    Tests of the thread policy set the counts they check; subprocesses keep their own policy."""
    torch = sys.modules.get("torch")  # not imported here: tests without torch don't pay for it
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared() -> Path:
    return need_shared()


@pytest.fixture(scope="session")
def whisper_tiny_dir() -> Path:
    return need_shared("models", "whisper-tiny.en")


@pytest.fixture(scope="session")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random replicas of every model (real architectures, config formats, labels)."""
    from emoflow.testing.replica_cache import copy_replicas

    cache = os.environ.get("EMOFLOW_TEST_CACHE") or ROOT / ".cache" / "test-replicas"
    return copy_replicas(tmp_path_factory.mktemp("replicas"), cache, "tiny")


@pytest.fixture(scope="session")
def replica_args(replicas: dict[str, Path], whisper_tiny_dir: Path) -> list[str]:
    """CLI options that point every model at the tiny replicas and the real Whisper tiny.en."""
    return [
        "--asr-model",
        str(whisper_tiny_dir),
        "--audio-model",
        str(replicas["emotion2vec"]),
        "--text-model",
        str(replicas["text-emotion"]),
        "--encoder-model",
        str(replicas["distilbert"]),
    ]


@pytest.fixture(scope="session")
def replica_config(replicas: dict[str, Path], whisper_tiny_dir: Path) -> PipelineConfig:
    """The same, as a PipelineConfig."""
    from emoflow.config import PipelineConfig

    return PipelineConfig(
        asr_model=str(whisper_tiny_dir),
        audio_model=str(replicas["emotion2vec"]),
        text_model=str(replicas["text-emotion"]),
        encoder_model=str(replicas["distilbert"]),
    )
