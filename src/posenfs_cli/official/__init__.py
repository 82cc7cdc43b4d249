"""Checkpoints of the authors' released PoseNFS implementation, converted to posenfs ones.

``format`` holds the facts of their file and YAML formats (module names, op names, body-part
tables, joint names). An import reads a file and infers its architecture from the tensors
(``infer``), adds and checks what the file cannot say from an optional config (``resolve``),
builds the equivalent posenfs model with the file's weights (``convert``); ``importer`` is the
one call that ``posenfs import`` makes.
"""
