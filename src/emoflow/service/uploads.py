"""Taking an upload in: stored under the job's folder (its own file name is never used), checked
before it is queued, refused with the HTTP status that says why.

Upload size limit (413, also while copying), decoded-duration limit (413, from the file's
header; the decoder checks it again), the timeline's window count (422), non-audio (415),
undecodable audio or NaN/inf samples (422), a malformed transcript (422). Everything here
blocks: the app calls :func:`accept_upload` in a worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from pathlib import Path
from typing import IO, Any

from fastapi import HTTPException

from emoflow.errors import ConfigError, EmoflowError
from emoflow.service.jobs import Job, Store
from emoflow.service.settings import no_constant, parse_request_settings

CHUNK = 1 << 20
EXACT_HEADERS = frozenset({"WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "FLAC"})  # frame counts to trust


def accept_upload(
    store: Store, audio: IO[bytes], transcript: IO[bytes] | None, settings_json: str | None
) -> dict[str, Any]:
    """Check and store one upload, then queue it (:class:`~emoflow.service.jobs.QueueFull` when
    the queue is full); returns the job's public view."""
    settings = store.settings
    job = Job(id=secrets.token_urlsafe(24), created=time.time())
    if settings_json:
        job.settings = parse_request_settings(settings_json, store.pipeline.config, settings.max_duration_s)
    cfg = store.config_for(job.settings)
    d = store.dir(job.id)
    d.mkdir(parents=True)
    try:
        limit = settings.upload_limit
        too_big = HTTPException(413, f"upload larger than {settings.max_upload_mb:g} MB")
        size = 0
        with open(d / "input", "wb") as f:  # the upload's own name is never used
            while chunk := audio.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise too_big
                f.write(chunk)
        if size == 0:
            raise HTTPException(422, "the uploaded audio is empty")
        duration = check_audio(d / "input", cfg.max_duration)
        if duration is not None:  # too many timeline windows for this hop: refused now, not later
            try:
                cfg.timeline.check_duration(duration, "the upload")
            except ConfigError as e:
                raise HTTPException(422, str(e).replace("--hop", "hop")) from None
        if transcript is not None:
            data = transcript.read(limit + 1)
            if len(data) > limit:
                raise too_big
            check_transcript(data)
            (d / "transcript.json").write_bytes(data)
        return store.submit(job)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def check_audio(path: Path, max_duration_s: float | None = None) -> float | None:
    """Refuse, before queueing, what is not audio (415), cannot be decoded or holds NaN/inf
    samples (422), or is longer than ``max_duration_s`` by its header (413). Returns the
    duration its header states (None: unknown; the decoder checks the limit again)."""
    import numpy as np
    import soundfile as sf

    from emoflow.audio.io import probe_duration

    try:
        info: Any = sf.info(str(path))
    except Exception:
        info = None
    if info is None:
        try:
            import av

            with av.open(str(path)) as c:
                if not c.streams.audio:
                    raise HTTPException(415, "the upload is not audio (no audio stream)")
                for _ in c.decode(c.streams.audio[0]):  # one frame decodes: good enough to queue
                    break
                else:
                    raise HTTPException(422, "the audio has no decodable frames")
        except HTTPException:
            raise
        except Exception:
            raise HTTPException(415, "the upload is not a readable audio file") from None
    elif info.frames == 0 and info.format in EXACT_HEADERS:
        raise HTTPException(422, "the audio has zero samples")
    duration = probe_duration(path)
    if max_duration_s is not None and duration is not None and duration > max_duration_s:
        raise HTTPException(
            413,
            f"the recording is {_hms(duration)} long; this server accepts at most {_hms(max_duration_s)} "
            "(cut it, or ask for a longer --max-duration)",
        )
    if info is not None and info.subtype in ("FLOAT", "DOUBLE"):
        # only floating-point samples can be NaN or infinite; reading them undecoded is quick
        try:
            with sf.SoundFile(str(path)) as f:
                for block in f.blocks(blocksize=1 << 16, dtype="float32"):
                    if not np.isfinite(block).all():
                        raise HTTPException(
                            422, "the audio contains NaN or infinite samples; re-export it as PCM"
                        )
        except HTTPException:
            raise
        except Exception:
            raise HTTPException(422, "the audio data is corrupt") from None
    return duration


def check_transcript(data: bytes) -> None:
    """Well-formed JSON (an object or a list, not nested without end) or 422."""
    try:
        parsed = json.loads(data, parse_constant=no_constant)
    except RecursionError:
        raise HTTPException(422, "the transcript is nested too deeply to be a transcript") from None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        raise HTTPException(422, "the transcript is not valid JSON") from None
    if not isinstance(parsed, (dict, list)):
        raise HTTPException(422, "the transcript must be a JSON object or list")
    from emoflow.asr.transcript_io import raw_words_from_json

    try:  # word times and probabilities (NaN, 1e400, 1e308 ...) are checked now, not in the job
        raw_words_from_json(parsed, "transcript")
    except EmoflowError as e:
        raise HTTPException(422, str(e)) from None
