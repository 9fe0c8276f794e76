"""Making writes durable: fsync a file or a folder, write a small file atomically.

The store's chunk writes start their disk write early (``sync_file_range``, in
:mod:`deepdive.engine.ckpt.store`); these are the fsyncs that make them, and the manifests, durable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from deepdive.fsutil import atomic_write_bytes


def _fsync_path(path: Union[str, Path]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder."""
    atomic_write_bytes(path, data)

