"""The correlation-aware fusion classifier: datasets, feature cache, model, training, metrics."""
