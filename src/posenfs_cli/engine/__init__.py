"""Training engine: trainer, search strategies, checkpoints, distributed helpers."""
