"""Test support: replica model directories with random weights and the real architectures,
config formats and label sets (``python -m emoflow.testing.replicas OUT --size tiny|full``)."""
