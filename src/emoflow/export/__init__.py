"""Writers of results to files: :func:`.writers.save_result` (all formats, atomically), tables
(:mod:`.tables`), sentence files (:mod:`.sentences`) and atomic file helpers (:mod:`.files`)."""
