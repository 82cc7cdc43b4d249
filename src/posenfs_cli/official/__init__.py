"""Checkpoints of the authors' released PoseNFS implementation, converted to posenfs ones.

``format`` holds the facts of their file and YAML formats (module names, op names, body-part
tables, joint names); ``importer`` reads a file, infers its architecture from the tensors,
checks it against an optional config and builds the equivalent posenfs model.
"""
