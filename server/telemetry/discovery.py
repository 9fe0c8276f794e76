"""Where the hub of a state folder listens, so ``deepdive train`` in a terminal finds it and
``deepdive dashboard`` opens the running one instead of starting a second.

The editor's daemon (for its workspace's ``.deepdive/`` or the per-user folder) and ``deepdive
dashboard`` write ``hub.json`` into the state folder they serve (mode 0600: it holds the token),
atomically, and remove it when they stop. Readers ignore a file whose process is gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from deepdive.fsutil import atomic_write_bytes
from deepdive.protocol import HubInfo, to_wire

FILENAME = "hub.json"


def write(directory: Path, info: HubInfo, *, dashboard_url: Optional[str] = None, owner: str = "") -> Path:
    """Announce this process's hub for the store in ``directory`` (``owner`` names what serves it)."""
    path = Path(directory) / FILENAME
    extra = {"dashboardUrl": dashboard_url, "owner": owner} if dashboard_url else {"owner": owner}
    data = json.dumps({"pid": os.getpid(), **to_wire(info), **extra}).encode()
    old = os.umask(0o077)
    try:
        atomic_write_bytes(path, data)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return path


def remove(directory: Path) -> None:
    path = Path(directory) / FILENAME
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def live(directory: Path) -> Optional[dict]:
    """What the live hub of this store announced (``pid``, ``ingestUrl``, ``dashboardUrl``, ``owner``...),
    or None when none runs (no file, or its process is gone)."""
    try:
        data = json.loads((Path(directory) / FILENAME).read_text())
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def ingest_url(directory: Path) -> Optional[str]:
    """The live dashboard's ingest URL (with its token), or None when none runs."""
    data = live(directory)
    url = data.get("ingestUrl") if data else None
    return url if isinstance(url, str) else None
