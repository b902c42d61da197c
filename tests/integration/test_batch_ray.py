"""The Ray engine's actors and watchdog (issues 10.1 and 10.3), without a whole batch."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from emoflow.errors import ConfigError


@pytest.fixture
def torch_threads():
    """Leave torch's thread count as the test found it (the stages change it on purpose)."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_stage_actors_keep_their_thread_count_after_their_models_load(replicas, torch_threads, monkeypatch):
    # issue 10.3: an actor set one thread, then loading its models reset it to every core
    import torch

    from emoflow.batch.ray import AudioStage, TextStage
    from emoflow.config import PipelineConfig
    from emoflow.models import MODEL_CACHE

    loads: list[object] = []  # every model stage loads through the model cache
    get = MODEL_CACHE.get
    monkeypatch.setattr(MODEL_CACHE, "get", lambda key, load: (loads.append(key), get(key, load))[1])

    config = PipelineConfig(
        audio_model=str(replicas["emotion2vec"]),
        text_model=str(replicas["text-emotion"]),
        encoder_model=str(replicas["distilbert"]),
    )
    torch.set_num_threads(3)  # what a model load (or FunASR's ncpu) might leave behind
    for cls, threads in ((TextStage, 1), (AudioStage, 2)):
        loads.clear()
        stage = cls(config, threads=threads)
        assert stage.load_error == "" and stage.threads == threads
        assert loads, f"{cls.__name__} loaded no model at start"
        assert torch.get_num_threads() == stage.threads
        torch.set_num_threads(5)  # whatever happens during a call, the actor's setting comes back
        row = {"payload": [b""], "name": ["x"], "error": ["earlier stage failed"], "fatal": [""]}
        assert list(stage(row)["error"]) == ["earlier stage failed"]
        assert torch.get_num_threads() == stage.threads


class Idle:
    def __call__(self, batch):
        return batch


def row_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "emoflow-ray-rows"}


@pytest.mark.slow  # starts a real (one-CPU) Ray instance
def test_a_pipeline_the_cluster_cannot_place_fails_instead_of_hanging():
    # issue 10.1: actor pools asking for more than the cluster has waited for ever
    ray = pytest.importorskip("ray", reason="needs emoflow[ray]")
    from emoflow.batch.ray_watchdog import WatchBounds, consume

    ray.shutdown()  # whatever ran before (a no-op when Ray is not up): this test needs its own
    before = row_threads()
    ray.init(
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items([{"x": 1}, {"x": 2}]).map_batches(
            Idle, batch_size=1, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=2
        )
        rows: list[dict] = []
        t0 = time.monotonic()
        with pytest.raises(
            ConfigError, match=r"cannot start 1 actor\(s\) of this batch .*lower --concurrency"
        ):
            # stall_timeout_s: a backstop, so that this test ends even if the check were lost
            consume(
                ds.iter_rows(),
                rows.append,
                WatchBounds(pending_timeout_s=3, stall_timeout_s=120, check_every_s=0.5),
            )
        assert time.monotonic() - t0 < 100 and rows == []
        # the row thread was stopped while Ray was up: nothing of this test outlives it
        assert not row_threads() - before
    finally:
        ray.shutdown()


def test_a_stage_whose_model_is_missing_marks_every_row_fatal(tmp_path, torch_threads):
    # the local engine stops at a missing model (exit 4); the Ray driver does the same on a fatal row
    from emoflow.batch.ray import TextStage
    from emoflow.config import PipelineConfig

    missing = tmp_path / "no-such-model"
    stage = TextStage(PipelineConfig(text_model=str(missing), offline=True), threads=1)
    assert stage.fatal == "ModelUnavailableError" and str(missing) in stage.load_error
    out = stage({"payload": [b"", b""], "name": ["a", "b"], "error": ["", ""], "fatal": ["", ""]})
    assert list(out["fatal"]) == ["ModelUnavailableError"] * 2
    assert all(str(missing) in e for e in out["error"])


def test_the_write_stage_loads_no_model_to_record_provenance(
    replica_config, tmp_path, monkeypatch, torch_threads
):
    # issue 12.3: the write actor loaded DistilBERT (and emotion2vec) to describe the models
    import json
    import pickle

    import numpy as np
    import soundfile as sf

    from emoflow.batch.ray import WriteStage
    from emoflow.models import MODEL_CACHE
    from emoflow.pipeline import Pipeline, Work

    wav, transcript = tmp_path / "a.wav", tmp_path / "a.json"
    t = np.arange(24000) / 16000
    sf.write(wav, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    words = [{"text": " hello", "timestamp": [0.2, 0.5]}, {"text": " there.", "timestamp": [0.6, 0.9]}]
    transcript.write_text(json.dumps({"chunks": words}))
    work = Work(str(wav), str(transcript))
    pipeline = Pipeline(replica_config)  # the earlier stages, as their actors would run them
    for step in (pipeline.stage_decode, pipeline.stage_transcribe, pipeline.stage_text, pipeline.stage_audio):
        work = step(work)

    def refuse(key, load):
        raise AssertionError(f"the write stage loaded a model: {key}")

    monkeypatch.setattr(MODEL_CACHE, "get", refuse)
    stage = WriteStage(replica_config, str(tmp_path / "out"), ["json"], threads=1)
    assert stage.load_error == ""
    out = stage({"payload": [pickle.dumps(work)], "name": ["a"], "error": [""], "fatal": [""]})
    assert list(out["error"]) == [""]
    models = json.loads((tmp_path / "out" / "a" / "result.json").read_text())["models"]
    assert models["sequence_encoder"]["id"] == replica_config.encoder_model
    assert models["text_emotion"]["id"] == replica_config.text_model
