"""What the model worker and both its model runners share: the token limits, the one-line error, plain prompts.

See :mod:`deepdive.codegen.worker` for the worker's protocol.
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["MAX_NEW_TOKENS", "DEFAULT_MAX_NEW_TOKENS", "MIN_ROOM", "Emit", "WorkerError", "one_line", "plain_prompt"]

MAX_NEW_TOKENS = 4096
DEFAULT_MAX_NEW_TOKENS = 2048
MIN_ROOM = 1024  # a prompt must leave this many tokens (or max_new_tokens when smaller) for the answer

Emit = Callable[[dict], None]


class WorkerError(Exception):
    """A failure to report as one line (``error`` event), without a traceback; ``code`` names the
    failures a client handles (``prompt_too_long``)."""

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code


def one_line(exc: BaseException) -> str:
    """The error as one line of at most 400 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def plain_prompt(system: str, messages: list[dict]) -> str:
    """The conversation as plain text, for a model without a chat template."""
    parts = [f"System: {system.strip()}"] if system else []
    for msg in messages:
        role = str(msg.get("role", "user")).capitalize()
        parts.append(f"{role}: {str(msg.get('content', '')).strip()}")
    parts.append("Assistant:")
    return "\n\n".join(parts)
