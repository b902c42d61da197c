"""The ``emoflow`` command line: parse, build the configuration, call the library.

Errors are one line on stderr starting with ``error:`` (a traceback only with
``--debug``). Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 model unavailable.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from emoflow.errors import ConfigError, EmoflowError, ModelUnavailableError

# rich_markup_mode=None: help texts are plain text. With rich markup, "[serve]" in
# "pip install emoflow[serve]" (and "[UM]", "[ray]") would be read as a style tag and vanish.
app = typer.Typer(
    name="emoflow",
    help="Multimodal emotion recognition from speech and text.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state: dict[str, Any] = {"debug": False}
# commands that load no torch model: they skip the thread policy (and torch's import time)
_NO_TORCH_COMMANDS = frozenset({"sentences", "train-embeddings", "dataset"})


class UsageError(ConfigError):
    """A bad option value or combination of arguments: ``error: ...`` and exit code 2."""

    exit_code = 2


class SentenceFormat(str, Enum):
    json = "json"
    csv = "csv"
    srt = "srt"


class SplitterName(str, Enum):
    auto = "auto"
    pysbd = "pysbd"
    nltk = "nltk"
    pauses = "pauses"


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    err.print(f"warning: {message}", markup=False)


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress logs.")] = False,
) -> None:
    _state["debug"] = debug
    if ctx.invoked_subcommand not in _NO_TORCH_COMMANDS:
        # process-wide policy belongs to the entry point: model loading leaves threads alone
        from emoflow import models

        models.set_cpu_threads()
    if not debug:  # model libraries' progress bars and notices are not our output
        import os

        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not (debug or verbose):
        # model libraries log chatter at WARNING on the root logger (FunASR); show only ours and errors
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda r: r.name.startswith("emoflow") or r.levelno >= logging.ERROR)

    warnings.showwarning = _show_warning


@contextmanager
def _options() -> Iterator[None]:
    """Settings built from options: a :class:`ConfigError` is a usage error (exit code 2)."""
    try:
        yield
    except UsageError:
        raise
    except ConfigError as e:
        raise UsageError(str(e)) from e


def _writable_folder(path: Path, what: str) -> None:
    """``path`` is, or can be created as, a folder we can write into: else a usage error, now."""
    p = path
    while not p.exists():
        if p.is_symlink():
            raise UsageError(f"{what} {path}: {p} is a broken symbolic link")
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        where = "is" if p == path else f"is inside {p}, which is"
        raise UsageError(f"{what} {path} {where} a file, not a folder; choose another path")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: {p} is not writable; choose another path")


def _check_out_folder(out: Path) -> None:
    _writable_folder(out, "--out")


def _check_out_file(out: Path | None) -> None:
    """An output file path: not a folder, in a folder we can create and write into."""
    if out is None:
        return
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name")
    _writable_folder(out.parent, f"--out {out}: the folder")


def _formats(fmt: str) -> list[str]:
    from emoflow.export.writers import parse_formats

    with _options():
        return parse_formats(fmt)


def _check_port(host: str, port: int) -> None:
    """Fail now, before any model loads, when ``host:port`` cannot be listened on.

    (The server binds it again moments later; another process could take it in between.)
    """
    import socket

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: not an address of this machine ({e.strerror})") from e
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        if os.name != "nt":  # what uvicorn does: a port in TIME_WAIT is free to use
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise UsageError(
                f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host"
            ) from e


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        from emoflow.export.files import write_text_atomic

        write_text_atomic(out, text)


@app.command()
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
    splitter: Annotated[SplitterName, typer.Option(help="How to find sentences.")] = SplitterName.auto,
    pause: Annotated[
        float, typer.Option(help="Pause (s) that ends a sentence when splitting at pauses.")
    ] = 0.7,
    max_sentence: Annotated[
        float, typer.Option(help="Longest sentence (s) before splitting at pauses.")
    ] = 30.0,
    drop_fillers: Annotated[bool, typer.Option("--drop-fillers", help="Remove fillers like [UM].")] = False,
    pause_adjust: Annotated[
        bool, typer.Option("--pause-adjust", help="Apply CrisperWhisper's pause adjustment.")
    ] = False,
    no_refine: Annotated[
        bool, typer.Option("--no-refine", help="Keep word-based times even with audio.")
    ] = False,
) -> None:
    """Sentences with start and end times from a word-level transcript."""
    from emoflow.asr.transcript_io import read_transcript
    from emoflow.audio.io import load_audio
    from emoflow.config import SentenceConfig
    from emoflow.export.sentences import FORMATS
    from emoflow.text.sentences import SentenceSegmenter

    with _options():
        config = SentenceConfig(
            splitter=splitter.value, pause_s=pause, max_sentence_s=max_sentence, refine=not no_refine
        )
    _check_out_file(out)
    rec = load_audio(audio) if audio is not None else None
    tr = read_transcript(
        transcript,
        audio_duration=rec.duration if rec else None,
        drop_fillers=drop_fillers,
        pause_adjust=pause_adjust,
    )
    result = SentenceSegmenter(config)(tr, rec)
    _emit(FORMATS[fmt.value](result), out)


OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="Never touch the network (also HF_HUB_OFFLINE=1).")
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
DtypeOpt = Annotated[
    str,
    typer.Option(
        help="auto (float16 on CUDA; bfloat16 for emotion2vec and the text classifier on CPUs with "
        "native bf16; float32 elsewhere), float32, bfloat16 or float16."
    ),
]


def _spec(model: str, device: str, offline: bool, revision: str | None = None) -> Any:
    from emoflow.models import ModelSpec

    return ModelSpec(model, revision=revision, device=device, offline=True if offline else None)


@app.command()
def transcribe(
    audio: Annotated[Path, typer.Argument(help="The recording.")],
    out: Annotated[Path | None, typer.Option(help="Output JSON file (default: stdout).")] = None,
    asr_backend: Annotated[str, typer.Option(help="transformers or faster-whisper.")] = "transformers",
    asr_model: Annotated[str, typer.Option(help="Hub id or local directory.")] = "nyrahealth/CrisperWhisper",
    language: Annotated[
        str | None, typer.Option(help="Language code; omit to detect (multilingual models).")
    ] = "en",
    drop_fillers: Annotated[bool, typer.Option("--drop-fillers", help="Remove fillers like [UM].")] = False,
    device: DeviceOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Transcribe speech with word timestamps; writes the CrisperWhisper JSON format."""
    import json

    from emoflow.asr.whisper_ct2 import make_transcriber
    from emoflow.audio.io import load_audio
    from emoflow.config import AsrConfig

    _check_out_file(out)
    rec = load_audio(audio)
    transcriber = make_transcriber(
        asr_backend,
        _spec(asr_model, device, offline),
        AsrConfig(language=language, drop_fillers=drop_fillers),
    )
    transcript = transcriber(rec)
    _emit(json.dumps(transcript.to_hf_chunks(), ensure_ascii=False, indent=1) + "\n", out)


@app.command("emotion-corpus")
def emotion_corpus(
    text_files: Annotated[list[Path], typer.Argument(help="Plain-text files (UTF-8), one document each.")],
    out: Annotated[Path, typer.Option(help="Output JSONL: one row per sentence.")],
    text_model: Annotated[
        str, typer.Option(help="Hub id or local directory.")
    ] = "j-hartmann/emotion-english-distilroberta-base",
    top_k: Annotated[int, typer.Option(help="Emotions per sequence.")] = 3,
    device: DeviceOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Build a base emotion corpus: sentences, their emotion scores and emotion sequences."""
    from emoflow.text.corpus import build_emotion_corpus
    from emoflow.text.emotion import TextEmotionClassifier

    classifier = TextEmotionClassifier(_spec(text_model, device, offline))
    n = build_emotion_corpus(text_files, classifier, out, k=top_k)
    err.print(f"wrote {n} sentences from {len(text_files)} document(s) to {out}")


@app.command("train-embeddings")
def train_embeddings(
    corpus: Annotated[Path, typer.Argument(help="Emotion corpus JSONL (from `emoflow emotion-corpus`).")],
    out: Annotated[Path, typer.Option(help="Directory for the trained scheme.")],
    dim: Annotated[int, typer.Option(help="Vector size.")] = 32,
    window: Annotated[int, typer.Option(help="Skip-gram context window (tokens).")] = 5,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train a distributional emotion embedding scheme (Word2Vec skip-gram over emotion tokens)."""
    from emoflow.text.corpus import read_corpus
    from emoflow.text.embeddings import EmotionWord2Vec, documents_from_corpus

    docs = documents_from_corpus(read_corpus(corpus))
    scheme = EmotionWord2Vec.train(docs, vector_size=dim, window=window, epochs=epochs, seed=seed)
    scheme.save(out)
    err.print(
        f"trained on {scheme.meta['tokens']} tokens in {scheme.meta['documents']} document(s); "
        f"vocabulary: {', '.join(scheme.meta['vocabulary'])}; saved to {out}"
    )


class TimelineMode(str, Enum):
    exact = "exact"
    pooled = "pooled"


class AsrBackend(str, Enum):
    transformers = "transformers"
    faster_whisper = "faster-whisper"


AsrBackendOpt = Annotated[AsrBackend, typer.Option(help="ASR backend.")]
AsrModelOpt = Annotated[
    str,
    typer.Option(
        help="ASR: hub id or local directory (CrisperWhisper is CC BY-NC 4.0; "
        "openai/whisper-large-v3-turbo is MIT)."
    ),
]
AudioModelOpt = Annotated[str, typer.Option(help="emotion2vec model: hub id or local directory.")]
TextModelOpt = Annotated[str, typer.Option(help="Text emotion classifier: hub id or local directory.")]
EncoderModelOpt = Annotated[str, typer.Option(help="Sequence encoder for extraction embeddings.")]
EmbeddingOpt = Annotated[str, typer.Option(help="cls, layers or word2vec:PATH (a trained scheme).")]
TopKOpt = Annotated[int, typer.Option(help="Emotions per emotion sequence.")]
WindowOpt = Annotated[float, typer.Option(help="Timeline window (s), 0.1 to 8.")]
HopOpt = Annotated[
    float, typer.Option(help="Timeline hop (s), 0.05 to 30; at most 50000 windows per recording.")
]
MaxDurationOpt = Annotated[
    float | None,
    typer.Option(
        help="Refuse recordings longer than this (s of decoded audio); checked from the header "
        "before decoding where it tells. Default: no limit."
    ),
]
TimelineOpt = Annotated[
    TimelineMode,
    typer.Option(
        help="exact: each window through the model; pooled: one pass, window means of frames (faster)."
    ),
]
LanguageOpt = Annotated[str | None, typer.Option(help="Language for multilingual ASR models.")]
FormatOpt = Annotated[
    str, typer.Option("--format", help="Comma-separated outputs: json,npz,csv,srt,png,html.")
]
FusionOpt = Annotated[
    Path | None,
    typer.Option(help="A trained fusion model (emoflow train): adds fused predictions per sentence."),
]


def _analysis_config(
    asr_backend: AsrBackend,
    asr_model: str,
    audio_model: str,
    text_model: str,
    encoder_model: str,
    embedding: str,
    top_k: int,
    window: float,
    hop: float,
    timeline: TimelineMode,
    language: str | None,
    fusion_model: Path | None,
    device: str,
    offline: bool,
    max_duration: float | None = None,
    dtype: str = "auto",
) -> Any:
    from emoflow.config import AsrConfig, EmbeddingConfig, PipelineConfig, TimelineConfig

    with _options():
        return PipelineConfig(
            asr_backend=asr_backend.value,
            asr_model=asr_model,
            audio_model=audio_model,
            text_model=text_model,
            encoder_model=encoder_model,
            device=device,
            offline=True if offline else None,
            top_k=top_k,
            embedding=EmbeddingConfig.parse(embedding),
            timeline=TimelineConfig(window_s=window, hop_s=hop, mode=timeline.value),
            asr=AsrConfig(language=language),
            fusion_model=str(fusion_model) if fusion_model else None,
            max_duration=max_duration,
            dtype=dtype,
        )


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


def _precheck(pipeline: Any, path: Path, transcript: Path | None) -> None:
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


@app.command()
def analyze(
    audio: Annotated[list[Path], typer.Argument(help="One or more recordings.")],
    out: Annotated[Path, typer.Option(help="Output directory; each recording gets OUT/<stem>/.")] = Path(
        "out"
    ),
    transcript: Annotated[
        Path | None,
        typer.Option(
            help="A precomputed word-level transcript (CrisperWhisper JSON) instead of ASR; one recording."
        ),
    ] = None,
    asr_backend: AsrBackendOpt = AsrBackend.transformers,
    asr_model: AsrModelOpt = "nyrahealth/CrisperWhisper",
    audio_model: AudioModelOpt = "emotion2vec/emotion2vec_plus_large",
    text_model: TextModelOpt = "j-hartmann/emotion-english-distilroberta-base",
    encoder_model: EncoderModelOpt = "distilbert/distilbert-base-uncased",
    embedding: EmbeddingOpt = "cls",
    top_k: TopKOpt = 3,
    window: WindowOpt = 3.0,
    hop: HopOpt = 1.0,
    timeline: TimelineOpt = TimelineMode.exact,
    language: LanguageOpt = "en",
    fmt: FormatOpt = "json,npz,csv,srt,png,html",
    fusion_model: FusionOpt = None,
    max_duration: MaxDurationOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Analyse recordings: transcript, sentences, text and voice emotion, embeddings, plots, report.

    Every option, the output folder and each recording's header are checked before any model
    loads. Two recordings with the same name (in/a.wav, in/x/a.wav) would share OUT/a/: such a
    run is refused, naming both.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from emoflow.export.files import remove_stale_temporaries
    from emoflow.export.writers import save_result
    from emoflow.pipeline import STAGES, Pipeline, output_dir_for

    # everything that can be checked without the models is checked before they load
    formats = _formats(fmt)
    if transcript is not None and len(audio) != 1:
        raise UsageError("--transcript goes with exactly one recording")
    config = _analysis_config(
        asr_backend,
        asr_model,
        audio_model,
        text_model,
        encoder_model,
        embedding,
        top_k,
        window,
        hop,
        timeline,
        language,
        fusion_model,
        device,
        offline,
        max_duration,
        dtype,
    )
    _check_out_folder(out)
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
                if _state["debug"]:
                    err.print_exception()
                failures.append((path, e))
                progress.update(task, stage="failed")
                err.print(f"error: {path}: internal error: {type(e).__name__}: {e}", markup=False)
            progress.advance(overall)
    done = len(audio) - len(failures)
    err.print(
        f"{done} of {len(audio)} recording(s) analysed into {out}"
        + (f"; {len(failures)} failed: {', '.join(str(p) for p, _ in failures)}" if failures else "")
    )
    if failures:
        codes = {getattr(e, "exit_code", 1) for _, e in failures}
        raise typer.Exit(3 if codes == {3} else 1)


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
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
    concurrency: Annotated[int, typer.Option(help="Ray: actors per model stage.")] = 1,
    asr_backend: AsrBackendOpt = AsrBackend.transformers,
    asr_model: AsrModelOpt = "nyrahealth/CrisperWhisper",
    audio_model: AudioModelOpt = "emotion2vec/emotion2vec_plus_large",
    text_model: TextModelOpt = "j-hartmann/emotion-english-distilroberta-base",
    encoder_model: EncoderModelOpt = "distilbert/distilbert-base-uncased",
    embedding: EmbeddingOpt = "cls",
    top_k: TopKOpt = 3,
    window: WindowOpt = 3.0,
    hop: HopOpt = 1.0,
    timeline: TimelineOpt = TimelineMode.exact,
    language: LanguageOpt = "en",
    fmt: FormatOpt = "json,npz,csv,srt,png,html",
    fusion_model: FusionOpt = None,
    max_duration: MaxDurationOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Analyse a corpus: resumable, one bad file never stops it, corpus tables at the end."""
    from rich.progress import Progress

    from emoflow.batch.local import discover, output_lock, prepare_out, run_batch

    formats = _formats(fmt)
    config = _analysis_config(
        asr_backend,
        asr_model,
        audio_model,
        text_model,
        encoder_model,
        embedding,
        top_k,
        window,
        hop,
        timeline,
        language,
        fusion_model,
        device,
        offline,
        max_duration,
        dtype,
    )
    _check_out_folder(out)
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
            from emoflow.pipeline import Pipeline

            pipeline = Pipeline(config)
            with err.status("loading models"):
                pipeline.load_all()
            with Progress(console=err) as progress:
                task = progress.add_task("batch", total=len(items))

                def on_item(item: Any, status: str) -> None:
                    if status != "running":
                        progress.advance(task)
                    progress.update(task, description=f"{item.name}: {status}")

                summary = run_batch(items, out, pipeline, resume=resume, formats=formats, on_item=on_item)
    err.print(
        f"{summary.done} analysed, {summary.skipped} already complete, {len(summary.failed)} failed "
        f"of {summary.total} in {summary.seconds:.1f} s -> {out}"
    )
    for path, why in summary.failed:
        err.print(f"error: {why}" if why.startswith(path) else f"error: {path}: {why}", markup=False)
    if summary.failed:
        raise typer.Exit(3)


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Interface to bind (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(envvar="EMOFLOW_TOKEN", help="Require 'Authorization: Bearer TOKEN' on the API."),
    ] = None,
    store: Annotated[Path, typer.Option(help="Where uploads and results are kept.")] = Path(".emoflow-store"),
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted upload (MB).")] = 200.0,
    queue_size: Annotated[int, typer.Option(help="Analyses waiting at most; beyond: 503.")] = 8,
    workers: Annotated[int, typer.Option(help="Analyses at a time (one per model set is safest).")] = 1,
    retention_hours: Annotated[float, typer.Option(help="Results are deleted after this long.")] = 24.0,
    asr_backend: AsrBackendOpt = AsrBackend.transformers,
    asr_model: AsrModelOpt = "nyrahealth/CrisperWhisper",
    audio_model: AudioModelOpt = "emotion2vec/emotion2vec_plus_large",
    text_model: TextModelOpt = "j-hartmann/emotion-english-distilroberta-base",
    encoder_model: EncoderModelOpt = "distilbert/distilbert-base-uncased",
    embedding: EmbeddingOpt = "cls",
    top_k: TopKOpt = 3,
    window: WindowOpt = 3.0,
    hop: HopOpt = 1.0,
    timeline: TimelineOpt = TimelineMode.exact,
    language: LanguageOpt = "en",
    fusion_model: FusionOpt = None,
    max_duration: Annotated[
        float | None,
        typer.Option(help="Longest recording accepted, in seconds (default for serve: 3600)."),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="Also answer requests for this Host name (repeatable; '*.example.com'; '*' = any).",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Serve the analysis over HTTP, with a page at / (pip install emoflow[serve])."""
    try:
        import uvicorn

        from emoflow.service.app import ServiceSettings, create_app
    except ImportError as e:
        from emoflow.errors import ConfigError

        raise ConfigError("emoflow serve needs `pip install emoflow[serve]`") from e
    from emoflow.pipeline import Pipeline

    config = _analysis_config(
        asr_backend,
        asr_model,
        audio_model,
        text_model,
        encoder_model,
        embedding,
        top_k,
        window,
        hop,
        timeline,
        language,
        fusion_model,
        device,
        offline,
        max_duration,
        dtype,
    )
    _check_port(host, port)  # a busy port: one error line now, not after loading every model
    with _options():
        settings = ServiceSettings(
            store=store,
            max_upload_mb=max_upload_mb,
            queue_size=queue_size,
            workers=workers,
            retention_s=retention_hours * 3600,
            token=token,
            host=host,
            allowed_hosts=tuple(allowed_host) if allowed_host else None,
        )
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        err.print(
            f"warning: serving on {host} without --token: anyone who can reach it can use it", markup=False
        )
    uvicorn.run(create_app(Pipeline(config), settings), host=host, port=port, log_level="warning")


dataset_app = typer.Typer(
    help="Training manifests from emotion datasets.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(dataset_app, name="dataset")


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


def _pipeline_config(
    audio_model: str,
    text_model: str,
    encoder_model: str,
    embedding: str,
    asr_model: str,
    top_k: int,
    device: str,
    offline: bool,
) -> Any:
    from emoflow.config import EmbeddingConfig, PipelineConfig

    return PipelineConfig(
        audio_model=audio_model,
        text_model=text_model,
        encoder_model=encoder_model,
        embedding=EmbeddingConfig.parse(embedding),
        asr_model=asr_model,
        top_k=top_k,
        device=device,
        offline=True if offline else None,
    )


@app.command()
def features(
    manifest: Annotated[Path, typer.Argument(help="Training manifest (.csv or .jsonl).")],
    out: Annotated[Path, typer.Option(help="Feature cache directory (resumable).")],
    audio_model: Annotated[
        str, typer.Option(help="emotion2vec model.")
    ] = "emotion2vec/emotion2vec_plus_large",
    text_model: Annotated[
        str, typer.Option(help="Text emotion classifier.")
    ] = "j-hartmann/emotion-english-distilroberta-base",
    encoder_model: Annotated[
        str, typer.Option(help="Sequence encoder.")
    ] = "distilbert/distilbert-base-uncased",
    embedding: Annotated[str, typer.Option(help="cls, layers or word2vec:PATH.")] = "cls",
    asr_model: Annotated[str, typer.Option(help="ASR for rows without text.")] = "nyrahealth/CrisperWhisper",
    top_k: Annotated[int, typer.Option(help="Emotions per sequence.")] = 3,
    device: DeviceOpt = "auto",
    offline: OfflineOpt = False,
) -> None:
    """Extract (audio, text) features for every manifest row into a cache; rows already there are skipped."""
    from rich.progress import Progress

    from emoflow.fusion.workflow import extract_features

    config = _pipeline_config(
        audio_model, text_model, encoder_model, embedding, asr_model, top_k, device, offline
    )
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


@app.command()
def train(
    manifest: Annotated[Path, typer.Argument(help="Training manifest with splits.")],
    cache: Annotated[Path, typer.Option(help="Feature cache made by `emoflow features`.")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    ablation: Annotated[
        str, typer.Option(help="full, audio-only, text-only, no-correlation or mlp.")
    ] = "full",
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated candidate emotions (default: those used).")
    ] = None,
    multi_label: Annotated[
        bool | None,
        typer.Option("--multi-label/--single-label", help="Default: multi-label if any row has several."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 300,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).")] = 30,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-3,
    dim: Annotated[int, typer.Option(help="Hidden size d.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train the correlation-aware fusion classifier on cached features."""
    from rich.progress import Progress

    from emoflow.fusion.train import TrainConfig
    from emoflow.fusion.workflow import train_from_manifest

    tc = TrainConfig(epochs=epochs, patience=patience, lr=lr, seed=seed)
    with Progress(console=err) as progress:
        task = progress.add_task("training", total=epochs)
        metrics = train_from_manifest(
            manifest,
            cache,
            out,
            labels=labels.split(",") if labels else None,
            ablation=ablation,
            multi_label=multi_label,
            d=dim,
            train_cfg=tc,
            progress=lambda e, loss, f1: progress.update(
                task, completed=e + 1, description=f"epoch {e + 1} loss {loss:.3f} val F1 {f1:.3f}"
            ),
        )
    test = metrics.get("test")
    summary = ", ".join(
        f"{k} {test[k]:.3f}" for k in ("WA", "UA", "macro_f1", "micro_f1") if test and k in test
    )
    val = metrics["best_val_macro_f1"]  # None: too little data for validation, trained on all rows
    err.print(
        f"saved {out} (best epoch {metrics['best_epoch']}, "
        + (f"val macro-F1 {val:.3f})" if val is not None else "no validation rows)")
        + (f"; test: {summary}" if summary else "")
    )


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A trained fusion model.")],
    manifest: Annotated[Path, typer.Argument(help="Manifest to evaluate on.")],
    cache: Annotated[Path | None, typer.Option(help="Feature cache (else features are extracted).")] = None,
    split: Annotated[str, typer.Option(help="Which split's rows, or 'all'.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Where to write metrics (default: the model dir).")] = None,
) -> None:
    """Evaluate a trained model: WA, UA, macro/weighted-F1, per-class report, confusion matrix."""
    import json

    from emoflow.fusion.workflow import evaluate_model

    m = evaluate_model(model_dir, manifest, cache, None if split == "all" else split, out)
    keys = ("n", "WA", "UA", "macro_f1", "weighted_f1", "micro_f1", "hamming_loss")
    sys.stdout.write(json.dumps({k: m[k] for k in keys if k in m}, indent=1) + "\n")


@app.command()
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


def run(args: list[str] | None = None) -> int:
    """Run the command line on ``args`` (default: ``sys.argv[1:]``) in this process; map errors
    to one ``error:`` line on stderr and return the exit code (what :func:`main` exits with)."""
    _state["debug"] = False
    try:
        code = app(args=args, prog_name="emoflow", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except EmoflowError as e:
        if _state["debug"]:
            err.print_exception()
        err.print(f"error: {e}", markup=False)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err.print("error: aborted")
        return 130
    except Exception as e:
        # usage errors (typer's vendored click) print themselves and carry exit code 2
        show, code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        if _state["debug"]:
            err.print_exception()
        err.print(
            f"error: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
            markup=False,
        )
        return 1


def main() -> None:
    """Console entry point: map errors to one line and an exit code."""
    code = run()
    if code:
        sys.exit(code)
