"""Price models: training, evaluation and safe artifacts."""
