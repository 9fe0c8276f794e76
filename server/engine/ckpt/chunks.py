"""Checking chunk files, and remembering which ones were checked so that a save can reuse them cheaply.

A chunk is named by the xxh3-128 of its raw bytes: :func:`check` decodes a chunk file and hashes the
result, which proves the file holds the chunk. Loading and ``verify`` check every chunk they read.

Deduplication reuses a chunk file that already exists instead of writing it again. A damaged file
must not be reused (the new checkpoint would be born corrupt while the save reports success), so a
save reuses a file only if this store object has seen it intact:

- :class:`CheckedChunks` records, for each chunk this store object wrote or checked (on load, verify
  or an earlier save), the file's identity and change stamps: size, inode, device, modification and
  status-change times in nanoseconds. A file whose stamps are unchanged is reused after one
  ``stat`` (no read): the common case, where a run saves again and again through one store.
- Any other existing file (stamps changed: rewritten, edited, ``touch``-ed; or not seen by this store
  object, e.g. the first save after a restart that did not load it) is decoded and hashed first; if
  it fails, the save writes the chunk again (atomically replacing the damaged file, which also heals
  the older checkpoints that share it).

What this does not see: damage that changes neither the size nor the time stamps of a file this
store object already checked (bits rotting under the file system while the process runs). Loading
and ``deepdive ckpt verify`` read and check every chunk, so such damage is still found there.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from deepdive.engine.ckpt import codec

Stamp = tuple[int, int, int, int, int]


def stamp(st: os.stat_result) -> Stamp:
    """What changes when a file is written, replaced, truncated or has its times set."""
    return st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns


def check(path: Path, key: str, out: np.ndarray) -> tuple[Optional[str], Optional[os.stat_result]]:
    """Decode chunk file ``path`` into ``out`` and compare the hash with ``key``.

    Returns:
        (reason, stat): the reason it is bad (``None`` when it holds the chunk) and the file's
        ``fstat`` taken with the read (``None`` when it could not be opened).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return "missing", None
    except OSError as exc:
        return f"unreadable: {exc.strerror}", None
    try:
        st = os.fstat(fd)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError as exc:
        return f"unreadable: {exc.strerror}", None
    finally:
        os.close(fd)
    try:
        codec.decode(data, out)
    except codec.CodecError as exc:
        return f"undecodable: {exc}", st
    if codec.chunk_id(out) != key:
        return "hash mismatch", st
    return None, st


class CheckedChunks:
    """The chunk files one store object wrote or found intact, with the stamps they had then."""

    def __init__(self) -> None:
        self._stamps: dict[str, Stamp] = {}
        self._lock = threading.Lock()

    def remember(self, key: str, st: os.stat_result) -> None:
        with self._lock:
            self._stamps[key] = stamp(st)

    def forget(self, key: str) -> None:
        with self._lock:
            self._stamps.pop(key, None)

    def unchanged(self, key: str, st: os.stat_result) -> bool:
        """Whether chunk ``key`` was seen intact and its file has the same stamps now."""
        with self._lock:
            return self._stamps.get(key) == stamp(st)

    def reusable(self, key: str, path: Path, raw_len: int) -> Optional[int]:
        """The stored size of chunk file ``path`` if a save may point at it, else None (write it again).

        One ``stat`` when the file is unchanged since this store saw it intact; otherwise the file is
        decoded and hashed (see the module docstring).
        """
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if self.unchanged(key, st):
            return st.st_size
        reason, checked = check(path, key, np.empty(raw_len, dtype=np.uint8))
        if reason is not None or checked is None:
            self.forget(key)
            return None
        self.remember(key, checked)
        return checked.st_size
