"""Live analysis: audio streamed in, voice emotion per window and sentences out as they happen.

:class:`StreamSession` (the library side, :mod:`~emoflow.streaming.session`), its events
(:mod:`~emoflow.streaming.events`), the stream's end-of-speech detection
(:mod:`~emoflow.streaming.vad`) and the WebSocket protocol's pieces shared by the server and the
CLI client (:mod:`~emoflow.streaming.protocol`).
"""

from emoflow.streaming.events import EndEvent, Event, SentenceEvent, WindowEvent
from emoflow.streaming.session import StreamSession

__all__ = ["EndEvent", "Event", "SentenceEvent", "StreamSession", "WindowEvent"]
