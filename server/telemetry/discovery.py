"""Where a running ``deepdive dashboard`` listens, so ``deepdive train`` in another terminal finds it.

The dashboard writes ``hub.json`` into the per-user state folder (mode 0600: it holds the token),
atomically, and removes it when it stops. Readers ignore a file whose process is gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from deepdive.fsutil import atomic_write_bytes
from deepdive.protocol import HubInfo, to_wire

FILENAME = "hub.json"


def write(directory: Path, info: HubInfo) -> Path:
    path = Path(directory) / FILENAME
    data = json.dumps({"pid": os.getpid(), **to_wire(info)}).encode()
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


def ingest_url(directory: Path) -> Optional[str]:
    """The live dashboard's ingest URL (with its token), or None when none runs."""
    try:
        data = json.loads((Path(directory) / FILENAME).read_text())
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    url = data.get("ingestUrl")
    return url if isinstance(url, str) else None
