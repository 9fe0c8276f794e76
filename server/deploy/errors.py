"""The one error type of ``deepdive deploy``: bad input, said in one line that says what to do."""

from __future__ import annotations


class DeployError(ValueError):
    """Bad input to a deploy step (one line that says what to do); the CLI prints it and exits 2."""
