"""The one error type of ``deepdive.tune`` (kept apart so that every tune module can raise it)."""


class TuneError(ValueError):
    """Bad input for a study (the message is one line and says what to change)."""
