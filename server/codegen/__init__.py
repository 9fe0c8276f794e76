"""Code generation from a sentence: prompt -> :class:`~deepdive.codegen.intent.Intent` -> program -> verification.

The daemon never imports torch, tensorflow or transformers for this: composing a program from the
builtin blocks is pure string work, and verification and model backends run in subprocesses.
"""
