"""posenfs: Pose Neural Fabrics Search as a command-line toolkit."""

__version__ = "0.1.0"
