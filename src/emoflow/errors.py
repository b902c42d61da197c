"""The error hierarchy. Every error a user can cause is an :class:`EmoflowError`.

Each message is one line that says what was wrong and what to do about it; the CLI
prints it as ``error: <message>`` and maps the class to an exit code.
"""

from __future__ import annotations


class EmoflowError(Exception):
    """Base class of every error emoflow raises on purpose."""

    exit_code = 1


class InputError(EmoflowError):
    """The user's input (a file, an array, a setting) cannot be used."""

    exit_code = 3


class AudioError(InputError):
    """Audio that cannot be read or is not usable speech audio."""


class TranscriptError(InputError):
    """A transcript that cannot be read or does not fit the audio."""


class ConfigError(InputError):
    """An invalid setting or combination of settings."""


class ModelUnavailableError(EmoflowError):
    """Model weights that cannot be found (offline, wrong id, missing files)."""

    exit_code = 4


class ModelError(EmoflowError):
    """A model that loaded but does not have the shape emoflow expects."""

    exit_code = 4


class RepairWarning(UserWarning):
    """Input was repaired (e.g. missing word times interpolated); the message counts the repairs."""
