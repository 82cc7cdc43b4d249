"""Backbones, body-part groups, the vector-in-pixel head and the part-specific pose network."""
