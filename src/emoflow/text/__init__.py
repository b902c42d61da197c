"""Text stages: sentences with timings, text emotion, emotion sequences, distributional embeddings."""
