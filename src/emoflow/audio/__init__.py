"""Audio input: every recording becomes mono float32 at 16 kHz at this one boundary."""

from emoflow.audio.io import TARGET_RATE, Audio, load_audio

__all__ = ["TARGET_RATE", "Audio", "load_audio"]
