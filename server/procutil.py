"""Process helpers shared by the subprocesses Deepdive starts (tune workers, measured diagnosis runs)."""

from __future__ import annotations

import os
import sys


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the one that started it dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of
    the coordinator or the CLI leaves nothing running; exits at once if the parent is already gone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:
        os._exit(1)
