"""Drawing: skeletons, heatmaps, fabric diagrams, curves."""
