"""`deepdive/tune/applyBest`: a study's best parameters written into a script's suggest() defaults."""

from __future__ import annotations

from typing import Any, Optional

import attrs

from deepdive.protocol.base import MAX_CHARS, MAX_DOCUMENT_CHARS


@attrs.define
class TuneApplyParams:
    """Rewrite the defaults of a script's `suggest(...)` calls to a study's best parameters."""

    path: str
    """The script (absolute, or relative to the workspace)."""
    params: dict[str, Any]
    """Parameter name -> value, e.g. a finished tune job's `result['bestParams']`."""
    text: Optional[str] = attrs.field(default=None, metadata={MAX_CHARS: MAX_DOCUMENT_CHARS})
    """The document's current text when the editor has unsaved changes (else the file is read); at most
    2,097,152 characters."""


@attrs.define
class TextEditData:
    """A replacement in the document: zero-based lines and UTF-16 character offsets, as in LSP."""

    start_line: int
    start_character: int
    end_line: int
    end_character: int
    new_text: str


@attrs.define
class TuneApplyResult:
    edits: list[TextEditData]
    """Only the default values change; nothing else in the file moves."""
    changed: list[str]
    """Parameters whose default was rewritten."""
    unchanged: list[str] = attrs.Factory(list)
    """Parameters whose default already had the best value."""
    missing: list[str] = attrs.Factory(list)
    """Parameters with no `suggest("name", ...)` call in the script."""
