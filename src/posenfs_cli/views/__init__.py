"""Rich renderings of library results (tables, summaries) that the CLI prints.

Kept out of ``cli/`` so a command module stays parse -> call -> print, and out of the pipelines
so the library returns data, not text.
"""
