"""Deepdive: a VS Code extension and its Python daemon for PyTorch and TensorFlow developers.

``deepdive`` (this package) holds the daemon, the job manager and the command line; it never
imports torch. ``deepdive.engine`` is the library training scripts import.
"""

__version__ = "0.1.0"
