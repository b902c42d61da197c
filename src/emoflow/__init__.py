"""emoflow: multimodal emotion recognition from speech and text.

>>> import emoflow
>>> result = emoflow.analyze("interview.wav")          # doctest: +SKIP
>>> result.sentences_frame()                           # doctest: +SKIP
>>> result.save("out/interview")                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Pipeline", "PipelineConfig", "Result", "__version__", "analyze"]

if TYPE_CHECKING:
    from emoflow.config import PipelineConfig
    from emoflow.pipeline import Pipeline, analyze
    from emoflow.results import Result


def __getattr__(name: str) -> Any:
    # the public API imports lazily: `import emoflow` stays fast and loads no model libraries
    if name in ("Pipeline", "analyze"):
        from emoflow import pipeline

        return getattr(pipeline, name)
    if name == "PipelineConfig":
        from emoflow.config import PipelineConfig

        return PipelineConfig
    if name == "Result":
        from emoflow.results import Result

        return Result
    raise AttributeError(f"module 'emoflow' has no attribute {name!r}")
