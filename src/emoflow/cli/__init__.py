"""The ``emoflow`` command line: parse, build the configuration, call the library.

Errors are one line on stderr starting with ``error:`` (a traceback only with
``--debug``). Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input, 4 model unavailable.

The commands live by group: :mod:`~emoflow.cli.analyze` (analyze, transcribe, sentences),
:mod:`~emoflow.cli.batch`, :mod:`~emoflow.cli.serve`, :mod:`~emoflow.cli.embeddings`
(emotion-corpus, train-embeddings) and :mod:`~emoflow.cli.fusion` (dataset, features, train,
evaluate, predict). The options that set analysis settings are declared once, in
:mod:`~emoflow.cli.options`, against :mod:`emoflow.config`.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Annotated, Any

import typer

from emoflow.cli import analyze, batch, embeddings, fusion, serve, stream
from emoflow.cli.common import UsageError, err, state
from emoflow.errors import EmoflowError

__all__ = ["UsageError", "app", "main", "run"]

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

# the commands, in --help's order
app.command()(analyze.sentences)
app.command()(analyze.transcribe)
app.command("emotion-corpus")(embeddings.emotion_corpus)
app.command("train-embeddings")(embeddings.train_embeddings)
app.command()(analyze.analyze)
app.command()(batch.batch)
app.command()(serve.serve)
app.command()(stream.stream)
app.command()(fusion.features)
app.command()(fusion.train)
app.command()(fusion.evaluate)
app.command()(fusion.predict)
app.add_typer(fusion.dataset_app, name="dataset")


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
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress logs.")] = False,
) -> None:
    state["debug"] = debug
    if not debug:  # model libraries' progress bars and notices are not our output
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


def run(args: list[str] | None = None) -> int:
    """Run the command line on ``args`` (default: ``sys.argv[1:]``) in this process; map errors
    to one ``error:`` line on stderr and return the exit code (what :func:`main` exits with)."""
    state["debug"] = False
    try:
        code = app(args=args, prog_name="emoflow", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except EmoflowError as e:
        if state["debug"]:
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
        if state["debug"]:
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
