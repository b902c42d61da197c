"""Corpus runs: resumable local batches and Ray Data for clusters.

planning.py (inputs and their output names, what a resumed run still has to do), lock.py (the
output folder, held by one batch), index.py (what a batch writes: outputs, index, corpus
tables), local.py (the run both engines share, and the local engine), ray.py (the stage
actors and the Ray driver), ray_cluster.py (actor shares, bounded start-up), ray_watchdog.py
(no wait without a bound).
"""
