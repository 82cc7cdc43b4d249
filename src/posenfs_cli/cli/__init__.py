"""Command-line layer: one module per command; parse, call the library, print."""
