"""The exception that ends a worker, written where torchrun looks for it.

torchrun gives every worker an error file (``$TORCHELASTIC_ERROR_FILE``) and, when a worker fails,
reports the earliest one as the root cause; ``torch.distributed.elastic``'s ``@record`` writes it,
but only for a ``main`` decorated with it, which a user's script is not. :func:`record_fatal_errors`
(called by :func:`deepdive.engine.setup`) installs a ``sys.excepthook`` that writes the same JSON for
the uncaught exception that ends the process, then hands over to the previous hook, so the
traceback is printed as before. ``deepdive train`` reads the file to print the failure as one line
(``CheckpointError: checkpoint to … failed: … No space left on device``) instead of torchrun's
tracebacks, and plain ``torchrun`` names the root cause in its failure summary too. Outside
torchrun (no error file in the environment) nothing is installed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from types import TracebackType
from typing import Optional

ENV_ERROR_FILE = "TORCHELASTIC_ERROR_FILE"

_installed = False


def record_fatal_errors() -> None:
    """Install the hook once per process, when torchrun gave this worker an error file."""
    global _installed
    if _installed or not os.environ.get(ENV_ERROR_FILE):
        return
    _installed = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: Optional[TracebackType]) -> None:
        try:
            write_error_file(os.environ.get(ENV_ERROR_FILE, ""), error, tb)
        finally:
            previous(kind, error, tb)

    sys.excepthook = hook


def write_error_file(path: str, error: BaseException, tb: Optional[TracebackType]) -> None:
    """Write ``error`` in torch's error-file format (what ``ErrorHandler.record_exception`` writes).

    Written to a temporary file that is renamed into place, so a reader never sees half of it; a
    file that cannot be written is skipped without a word: the traceback still reaches stderr.
    """
    if not path:
        return
    data = {"message": {"message": f"{type(error).__name__}: {error}",
                        "extraInfo": {"py_callstack": "".join(traceback.format_exception(type(error), error, tb)),
                                      "timestamp": str(int(time.time()))}}}
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
