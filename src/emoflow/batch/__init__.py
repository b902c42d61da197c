"""Corpus runs: resumable local batches and Ray Data for clusters."""
