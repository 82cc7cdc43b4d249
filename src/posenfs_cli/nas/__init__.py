"""The search space: candidate ops, mixed edge, cell, Cell-based Neural Fabric, genotypes."""
