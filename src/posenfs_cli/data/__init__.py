"""Datasets (MPII, COCO, synthetic people), transforms and training targets."""
