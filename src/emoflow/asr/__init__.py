"""Transcription: ASR backends and transcript files, all producing a :class:`~emoflow.types.Transcript`."""
