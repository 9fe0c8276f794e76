"""What the launcher tells a run through the environment, and what a run tells about its process.

``deepdive train`` and the editor's *Train…* start the user's script with ``$DEEPDIVE_PRECISION``,
``$DEEPDIVE_GRAD_COMPRESSION`` and ``$DEEPDIVE_CHECKPOINT_FRESH_SINCE``; :func:`deepdive.engine.run.setup`
reads them here. :func:`_process_facts` is what the ``setup`` event says about the process, so the
editor can list a run started in a terminal.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Optional


#: Set by ``deepdive train --precision`` / the editor's *Train…*: used where the script leaves ``"auto"``.
ENV_PRECISION = "DEEPDIVE_PRECISION"
#: Set by ``deepdive train --grad-compression`` / *Train…*: used where the script leaves ``"auto"``.
ENV_GRAD_COMPRESSION = "DEEPDIVE_GRAD_COMPRESSION"


def _launcher_choice(name: str, value: str, variable: str) -> str:
    """The script's own choice, else (where it left ``"auto"``) the launcher's from ``variable``.

    A script that fixes a value keeps it; when the launcher asked for another, stderr says which won."""
    asked = os.environ.get(variable, "").strip()
    if not asked or asked == value:
        return value
    if value == "auto":
        return asked
    print(f"deepdive: {variable}={asked} ignored: the script fixes {name}={value!r} in dd.setup() "
          f"(pass {name}=\"auto\" there to let the launcher choose)", file=sys.stderr, flush=True)
    return value


def _process_facts() -> dict[str, Any]:
    """Which script this is and where it runs: the editor lists a run started in a terminal by these."""
    import socket

    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else ""
    return {"script": os.path.abspath(script) if script else "", "argv": [str(a) for a in sys.argv[1:21]],
            "pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd()}


def _fresh_since_from_env() -> Optional[float]:
    """``$DEEPDIVE_CHECKPOINT_FRESH_SINCE`` (set by ``deepdive train --fresh``): a Unix time, or None.

    Raises:
        ValueError: it is set to something other than a number of seconds.
    """
    value = os.environ.get("DEEPDIVE_CHECKPOINT_FRESH_SINCE", "").strip()
    if not value:
        return None
    try:
        since: Optional[float] = float(value)
    except ValueError:
        since = None
    if since is None or not math.isfinite(since):
        raise ValueError(f"DEEPDIVE_CHECKPOINT_FRESH_SINCE must be a Unix time in seconds (deepdive train --fresh "
                         f"sets it to the job's start), not {value!r}")
    return since

