"""The batch as a Ray Data pipeline (``emoflow batch --engine ray``; extra ``emoflow[ray]``).

file list → decode → speech regions, ASR and sentences → text emotion and embeddings →
emotion2vec → assemble and write. Each model stage is an actor pool (``map_batches``
with ``concurrency``; ``num_gpus`` when GPUs exist), so every model loads once per actor
and stages overlap across recordings. The stages are the same methods of
:class:`~emoflow.pipeline.Pipeline` the local engine runs, so results are identical.
``--ray-address`` joins an existing cluster; otherwise Ray starts locally.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emoflow.batch.local import (
    BatchItem,
    BatchSummary,
    _append,
    compact_index,
    is_complete,
    read_index,
    record_for,
    remove_stale_partials,
    write_corpus_tables,
)
from emoflow.config import PipelineConfig
from emoflow.errors import ConfigError, EmoflowError
from emoflow.results import ALL_FORMATS

log = logging.getLogger(__name__)


def _rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    n = len(batch["payload"])
    return [{k: batch[k][i] for k in batch} for i in range(n)]


def _batch(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = rows[0].keys() if rows else ("payload", "name", "error")
    return {k: np.array([r[k] for r in rows], dtype=object) for k in keys}


class _Stage:
    """An actor: builds one Pipeline (only this stage's models load) and runs one stage method."""

    method = ""

    def __init__(self, config: PipelineConfig) -> None:
        import torch

        from emoflow.pipeline import Pipeline

        torch.set_num_threads(1)  # one core per actor: stages run side by side
        self.pipeline = Pipeline(config)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = _rows(batch)
        for r in rows:
            if r["error"]:
                continue
            work = pickle.loads(r["payload"])
            try:
                out = getattr(self.pipeline, self.method)(work)
                r["payload"] = pickle.dumps(out)
            except Exception as e:  # passed along, reported by the writer
                r["error"] = (
                    str(e) if isinstance(e, EmoflowError) else f"internal error: {type(e).__name__}: {e}"
                )
        return _batch(rows)


class DecodeStage(_Stage):
    method = "stage_decode"


class TranscribeStage(_Stage):
    method = "stage_transcribe"


class TextStage(_Stage):
    method = "stage_text"


class AudioStage(_Stage):
    method = "stage_audio"


class WriteStage(_Stage):
    """Assembles each result and writes its files atomically (on the node that holds the data)."""

    def __init__(self, config: PipelineConfig, out: str, formats: Sequence[str]) -> None:
        super().__init__(config)
        self.out = Path(out)
        self.formats = list(formats)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = _rows(batch)
        for r in rows:
            if r["error"]:
                r["payload"] = b""
                continue
            try:
                work = pickle.loads(r["payload"])
                result = self.pipeline.stage_assemble(work)
                result.save(self.out / r["name"], self.formats)
                r["payload"] = pickle.dumps(
                    {
                        "timings": result.timings,
                        "duration_s": result.source.duration_s,
                        "sentences": len(result.sentences),
                        "sha256": result.source.sha256,
                    }
                )
            except Exception as e:
                r["error"] = (
                    str(e) if isinstance(e, EmoflowError) else f"internal error: {type(e).__name__}: {e}"
                )
                r["payload"] = b""
        return _batch(rows)


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail at once on a cluster address nothing answers at (ray.init would retry for minutes)."""
    import socket

    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({e}); start one with `ray start --head` "
            "or leave out --ray-address to run locally"
        ) from e


def run_batch_ray(
    items: Sequence[BatchItem],
    out: str | Path,
    config: PipelineConfig,
    *,
    resume: bool = True,
    formats: Sequence[str] = ALL_FORMATS,
    address: str | None = None,
    concurrency: int = 1,
) -> BatchSummary:
    try:
        import ray
    except ImportError as e:
        raise ConfigError("the Ray engine needs `pip install emoflow[ray]`") from e
    from emoflow.pipeline import Work

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(total=len(items))
    t_start = time.perf_counter()
    remove_stale_partials(out)
    recorded = read_index(out)
    todo = []
    for item in items:
        if resume and is_complete(out / item.name, formats):
            summary.skipped += 1
            if recorded.get(item.name, {}).get("status") != "ok":
                _append(out / "index.jsonl", record_for(item, "ok", 0.0) | {"recovered": True})
        else:
            todo.append(item)
    if todo:
        started = not ray.is_initialized()
        if started:
            _check_reachable(address)
            try:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    ignore_reinit_error=True,
                    logging_level=logging.WARNING,
                )
            except ConnectionError as e:
                raise ConfigError(
                    f"could not join the Ray cluster at {address}: {e}; check the address, and for "
                    "clusters with token auth use the cluster's token (RAY_AUTH_MODE=token, "
                    "~/.ray/auth_token)"
                ) from e
        try:
            gpus = ray.cluster_resources().get("GPU", 0)
            per_gpu = 1.0 / 4 if gpus else 0  # model stages share a GPU
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            rows = [{"payload": pickle.dumps(Work(str(i.path))), "name": i.name, "error": ""} for i in todo]
            ds: Any = ray.data.from_items(rows, override_num_blocks=len(rows))
            kw: dict[str, Any] = {
                "batch_size": 1,
                "concurrency": concurrency,
                "fn_constructor_args": (config,),
            }
            ds = ds.map_batches(DecodeStage, **kw)
            ds = ds.map_batches(TranscribeStage, num_gpus=per_gpu, **kw)
            ds = ds.map_batches(TextStage, num_gpus=per_gpu, **kw)
            ds = ds.map_batches(AudioStage, num_gpus=per_gpu, **kw)
            ds = ds.map_batches(
                WriteStage,
                batch_size=1,
                concurrency=concurrency,
                fn_constructor_args=(config, str(out), list(formats)),
            )
            by_name = {i.name: i for i in todo}
            t0 = time.perf_counter()
            for r in ds.iter_rows():
                item = by_name[r["name"]]
                if r["error"]:
                    _append(
                        out / "index.jsonl",
                        record_for(item, "failed", time.perf_counter() - t0, error=r["error"]),
                    )
                    summary.failed.append((str(item.path), r["error"]))
                else:
                    info = pickle.loads(r["payload"])
                    rec = record_for(item, "ok", time.perf_counter() - t0, info["timings"])
                    rec.update(
                        duration_s=info["duration_s"], sentences=info["sentences"], sha256=info["sha256"]
                    )
                    _append(out / "index.jsonl", rec)
                    summary.done += 1
        finally:
            if started:
                ray.shutdown()
    compact_index(out)
    ok = sorted(n for n, r in read_index(out).items() if r.get("status") == "ok")
    if "csv" in formats:
        write_corpus_tables(out, ok)
    summary.seconds = time.perf_counter() - t_start
    return summary
