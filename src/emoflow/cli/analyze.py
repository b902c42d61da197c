"""``emoflow analyze``, ``transcribe`` and ``sentences``: recordings and transcripts, one at a time."""

from __future__ import annotations

import os
import warnings
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from emoflow import config as cfg
from emoflow.cli.common import (
    UsageError,
    check_out_file,
    check_out_folder,
    emit,
    err,
    loads_models,
    output_formats,
    state,
)
from emoflow.cli.options import ANALYSIS, pipeline_config, with_options
from emoflow.errors import EmoflowError, ModelUnavailableError

if TYPE_CHECKING:
    from emoflow.pipeline import Pipeline


OUT = Path(cfg.DEFAULT_OUT_DIR)


class SentenceFormat(str, Enum):
    json = "json"
    csv = "csv"
    srt = "srt"


@with_options("splitter", "pause", "max_sentence", "drop_fillers", "pause_adjust", "no_refine")
def sentences(
    transcript: Annotated[
        Path,
        typer.Argument(
            help="Word-level transcript JSON (CrisperWhisper/transformers, faster-whisper or emoflow)."
        ),
    ],
    audio: Annotated[
        Path | None,
        typer.Option(
            help="The recording: refines sentence times to its speech and checks the transcript fits it."
        ),
    ] = None,
    fmt: Annotated[SentenceFormat, typer.Option("--format", help="Output format.")] = SentenceFormat.json,
    out: Annotated[Path | None, typer.Option(help="Output file (default: stdout).")] = None,
    *,
    options: dict[str, Any],
) -> None:
    """Sentences with start and end times from a word-level transcript."""
    from emoflow.asr.transcript_io import read_transcript
    from emoflow.audio.io import load_audio
    from emoflow.export.sentences import FORMATS
    from emoflow.text.sentences import SentenceSegmenter

    config = pipeline_config(options)
    check_out_file(out)
    rec = load_audio(audio) if audio is not None else None
    tr = read_transcript(
        transcript,
        audio_duration=rec.duration if rec else None,
        drop_fillers=config.asr.drop_fillers,
        pause_adjust=bool(config.asr.pause_adjust),
    )
    result = SentenceSegmenter(config.sentences)(tr, rec)
    emit(FORMATS[fmt.value](result), out)


@loads_models
@with_options(
    "asr_backend",
    "asr_model",
    "language",
    "drop_fillers",
    "device",
    "offline",
    help={
        "asr_backend": "transformers or faster-whisper.",
        "asr_model": "Hub id or local directory.",
        "language": "Language code; omit to detect (multilingual models).",
    },
)
def transcribe(
    audio: Annotated[Path, typer.Argument(help="The recording.")],
    out: Annotated[Path | None, typer.Option(help="Output JSON file (default: stdout).")] = None,
    *,
    options: dict[str, Any],
) -> None:
    """Transcribe speech with word timestamps; writes the CrisperWhisper JSON format."""
    import json

    from emoflow.asr import make_transcriber
    from emoflow.audio.io import load_audio

    config = pipeline_config(options)
    check_out_file(out)
    rec = load_audio(audio)
    from emoflow.provenance_record import model_spec

    transcriber = make_transcriber(config.asr_backend, model_spec(config, config.asr_model), config.asr)
    transcript = transcriber(rec)
    emit(json.dumps(transcript.to_hf_chunks(), ensure_ascii=False, indent=1) + "\n", out)


def _check_output_names(audio: list[Path], out: Path) -> None:
    """Refuse, before any work, inputs that would write the same output folder, and output
    folders that already hold something that is not an emoflow result."""
    from emoflow.export.writers import check_replaceable
    from emoflow.pipeline import output_dir_for

    seen: dict[str, Path] = {}
    for path in audio:
        check_replaceable(output_dir_for(out, path))
        key = output_dir_for(out, path).name.casefold()  # one folder on case-insensitive disks too
        if key in seen:
            first = seen[key]
            same = os.path.abspath(first) == os.path.abspath(path)
            raise UsageError(
                f"{path} is given twice"
                if same
                else f"{first} and {path} would both be written to {output_dir_for(out, path)}; "
                "rename one or analyse them into different --out folders"
            )
        seen[key] = path


def _precheck(pipeline: Pipeline, path: Path, transcript: Path | None) -> None:
    """What can be known about one recording without decoding it or loading a model."""
    from emoflow.errors import AudioError

    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file (a device or a pipe?); save the audio to a file")
    pipeline.check_source(path)
    if transcript is not None:
        from emoflow.asr.transcript_io import read_transcript

        with warnings.catch_warnings():  # repairs are reported once, by the analysis itself
            warnings.simplefilter("ignore")
            read_transcript(transcript)


@loads_models
@with_options("formats", *ANALYSIS)
def analyze(
    audio: Annotated[list[Path], typer.Argument(help="One or more recordings.")],
    out: Annotated[Path, typer.Option(help="Output directory; each recording gets OUT/<stem>/.")] = OUT,
    transcript: Annotated[
        Path | None,
        typer.Option(
            help="A precomputed word-level transcript (CrisperWhisper JSON) instead of ASR; one recording."
        ),
    ] = None,
    *,
    options: dict[str, Any],
) -> None:
    """Analyse recordings: transcript, sentences, text and voice emotion, embeddings, plots, report.

    Every option, the output folder and each recording's header are checked before any model
    loads. Two recordings with the same name (in/a.wav, in/x/a.wav) would share OUT/a/: such a
    run is refused, naming both.
    """
    from emoflow.export.files import remove_stale_temporaries
    from emoflow.pipeline import Pipeline

    # everything that can be checked without the models is checked before they load
    formats = output_formats(options.pop("formats"))
    if transcript is not None and len(audio) != 1:
        raise UsageError("--transcript goes with exactly one recording")
    config = pipeline_config(options)
    check_out_folder(out)
    _check_output_names(audio, out)
    pipeline = Pipeline(config)
    failures: list[tuple[Path, Exception]] = []
    todo: list[Path] = []
    for path in audio:
        try:
            _precheck(pipeline, path, transcript)
            todo.append(path)
        except EmoflowError as e:
            failures.append((path, e))
            err.print(f"error: {e}", markup=False)
    remove_stale_temporaries(out)  # folders a killed run left behind (only emoflow's own)
    if todo:
        with err.status("loading models"):
            pipeline.load_all(asr=transcript is None)
    failures += _analyze_each(pipeline, todo, out, transcript, formats)
    done = len(audio) - len(failures)
    err.print(
        f"{done} of {len(audio)} recording(s) analysed into {out}"
        + (f"; {len(failures)} failed: {', '.join(str(p) for p, _ in failures)}" if failures else "")
    )
    if failures:
        codes = {getattr(e, "exit_code", 1) for _, e in failures}
        raise typer.Exit(3 if codes == {3} else 1)


def _analyze_each(
    pipeline: Pipeline, todo: list[Path], out: Path, transcript: Path | None, formats: list[str]
) -> list[tuple[Path, Exception]]:
    """Analyse and save each recording with a progress bar per file; the ones that failed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from emoflow.export.writers import save_result
    from emoflow.pipeline import STAGES, output_dir_for

    failures: list[tuple[Path, Exception]] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not todo,
    ) as progress:
        overall = progress.add_task("recordings", total=len(todo), stage="")
        for path in todo:
            task = progress.add_task(path.name, total=len(STAGES) + 1, stage="")

            def on_stage(name: str, task: Any = task) -> None:
                progress.update(task, advance=1 if progress.tasks[task].fields["stage"] else 0, stage=name)

            try:
                result = pipeline.analyze(path, transcript=transcript, progress=on_stage)
                on_stage("writing")
                target = save_result(result, output_dir_for(out, path), formats)
                progress.update(task, completed=len(STAGES) + 1, stage=f"done -> {target}")
            except ModelUnavailableError:
                raise  # every recording would fail the same way: stop with exit code 4
            except EmoflowError as e:
                failures.append((path, e))
                progress.update(task, stage="failed")
                err.print(f"error: {e}", markup=False)
            except Exception as e:  # an internal error on one file must not stop the others
                if state["debug"]:
                    err.print_exception()
                failures.append((path, e))
                progress.update(task, stage="failed")
                err.print(f"error: {path}: internal error: {type(e).__name__}: {e}", markup=False)
            progress.advance(overall)
    return failures
