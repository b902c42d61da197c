"""``emoflow batch``: a corpus, resumable, on this machine or on Ray."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emoflow import config as cfg
from emoflow.cli.common import check_out_folder, err, loads_models, output_formats
from emoflow.cli.options import ANALYSIS, pipeline_config, with_options

if TYPE_CHECKING:
    from emoflow.batch.local import BatchItem, BatchSummary
    from emoflow.config import PipelineConfig


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@loads_models
@with_options("formats", *ANALYSIS)
def batch(
    source: Annotated[
        str, typer.Argument(help="A folder (recursive), a glob or a manifest (.csv/.jsonl/.txt).")
    ],
    out: Annotated[Path, typer.Option(help="Output directory: OUT/<name>/, OUT/index.jsonl, corpus tables.")],
    resume: Annotated[bool, typer.Option(help="Skip recordings whose outputs are complete.")] = True,
    engine: Annotated[Engine, typer.Option(help="local, or ray (pip install emoflow[ray]).")] = Engine.local,
    ray_address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster (default: start locally).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Ray: actors per model stage.")] = cfg.BATCH_CONCURRENCY,
    *,
    options: dict[str, Any],
) -> None:
    """Analyse a corpus: resumable, one bad file never stops it, corpus tables at the end."""
    from emoflow.batch.local import discover, output_lock, prepare_out

    formats = output_formats(options.pop("formats"))
    config = pipeline_config(options)
    check_out_folder(out)
    items = discover(source)
    out = prepare_out(out)
    with output_lock(out):  # a second batch into the same folder stops now, before models load
        if engine == Engine.ray:
            from emoflow.batch.ray import run_batch_ray

            summary = run_batch_ray(
                items,
                out,
                config,
                resume=resume,
                formats=formats,
                address=ray_address,
                concurrency=concurrency,
            )
        else:
            summary = _run_local(items, out, config, resume, formats)
    err.print(
        f"{summary.done} analysed, {summary.skipped} already complete, {len(summary.failed)} failed "
        f"of {summary.total} in {summary.seconds:.1f} s -> {out}"
    )
    for path, why in summary.failed:
        err.print(f"error: {why}" if why.startswith(path) else f"error: {path}: {why}", markup=False)
    if summary.failed:
        raise typer.Exit(3)


def _run_local(
    items: list[BatchItem], out: Path, config: PipelineConfig, resume: bool, formats: list[str]
) -> BatchSummary:
    """One pipeline, its models loaded once, with a progress bar over the items."""
    from rich.progress import Progress

    from emoflow.batch.local import run_batch
    from emoflow.pipeline import Pipeline

    pipeline = Pipeline(config)
    with err.status("loading models"):
        pipeline.load_all()
    with Progress(console=err) as progress:
        task = progress.add_task("batch", total=len(items))

        def on_item(item: BatchItem, status: str) -> None:
            if status != "running":
                progress.advance(task)
            progress.update(task, description=f"{item.name}: {status}")

        return run_batch(items, out, pipeline, resume=resume, formats=formats, on_item=on_item)
