"""Decoding, PCKh, COCO evaluation and OKS-NMS."""
