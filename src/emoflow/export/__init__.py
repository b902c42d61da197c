"""Writers of results to files (json, csv, srt, ...)."""
