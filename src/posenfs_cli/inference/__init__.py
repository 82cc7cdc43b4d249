"""Inference on images and videos."""
