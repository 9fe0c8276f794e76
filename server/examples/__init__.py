"""Example training scripts that use ``deepdive.engine``; each runs under python, torchrun and deepdive train."""
