"""Checks of the folders a command will write into, made before its long work starts.

A checkpoint folder or an output folder that cannot be used otherwise fails only after the work
it was to keep: an epoch of training, every step of a compression. The checks are what the
command can learn cheaply and without side effects: the path is a folder (or can become one), and
a file can be created and written in it (or in the folder that will hold it). Space running out
later, in the middle of a save, is still reported when it happens.
"""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path
from typing import Optional


def folder_problem(path: Path, flag: str, purpose: str) -> Optional[str]:
    """Why ``path`` cannot be the folder that ``flag`` names, in one line that says what to do; None if it can.

    Args:
        path: the folder; it may not exist yet (the command creates it).
        flag: the option that named it, e.g. ``--checkpoint-dir``.
        purpose: what goes there, for the message (``"the checkpoints"``).
    """
    if path.exists() and not path.is_dir():
        return f"{flag} {path} is a file, not a folder: {flag} names the folder {purpose} go to (choose another path)"
    existing = path
    while not existing.exists():  # the folder is created later: the nearest folder above must take it
        existing = existing.parent
    if not existing.is_dir():
        return f"{flag} {path} cannot be created: {existing} is a file, not a folder (choose another path)"
    error = _write_error(existing)
    if error is None:
        return None
    where = path if existing == path else f"{path} (in {existing})"
    if error.errno == errno.ENOSPC:
        return f"{flag} {where}: {error.strerror}: free some space there or choose another folder"
    return f"{flag} {where} is not writable: {error.strerror or error}: choose another folder"


def _write_error(folder: Path) -> Optional[OSError]:
    """The error that creating and writing a file in ``folder`` gives (None: it works); the file is removed."""
    try:
        with tempfile.TemporaryFile(dir=folder) as handle:
            handle.write(b"\0")
            handle.flush()
    except OSError as exc:
        return exc
    return None
