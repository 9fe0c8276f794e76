"""Garbage collection: ``gc`` keeps the last K checkpoints plus the best by a metric (chosen by
:mod:`deepdive.engine.ckpt.retention`) and deletes the rest, the chunks no kept checkpoint
references and the temp files of killed saves.

:class:`Collector` is mixed into :class:`~deepdive.engine.ckpt.store.Store`: it takes the store's
lock exclusively, reads manifests through its catalog and forgets deleted chunks in its record of
chunks known intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from deepdive.engine.ckpt.durable import _atomic_write, _fsync_dir
from deepdive.engine.ckpt.entries import chunk_refs
from deepdive.engine.ckpt.records import CheckpointError, GcResult
from deepdive.engine.ckpt.retention import parse_best, select


class Collector:
    """``gc`` and the retention policy it last applied (a mixin of :class:`~deepdive.engine.ckpt.store.Store`)."""

    root: Path
    _info: dict[str, Any]

    def gc(self, keep_last: int = 1, keep_best: Union[str, tuple, None] = None, *,
           dry_run: bool = False) -> GcResult:
        """Keep the last ``keep_last`` checkpoints plus the best by a metric; delete the rest and
        every chunk no kept checkpoint references (and temp files of killed saves).

        Args:
            keep_last (int): how many of the most recently saved checkpoints to keep.
            keep_best (str | tuple | None): ``(metric, "max" | "min", n)``, ``(metric, mode)`` (n = 1)
                or ``"metric[:max|min]"``: also keep the ``n`` best checkpoints by ``metric`` (among
                those that recorded it). Without a mode, names with loss/error/perplexity/wer are
                minimized, others maximized.
            dry_run (bool): report only.

        "The last ``keep_last``" are the most recently saved (see :mod:`.retention`); all of them
        while fewer exist. Waits for saves in progress (they hold the store's lock shared). Chunks are
        only deleted when every manifest could be read and passed its checksum: a damaged one might
        reference any of them (it is kept, and listed in ``unreadable``).
        """
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise ValueError(f"keep_last must be an int >= 0, not {keep_last!r}")
        keep_best = parse_best(keep_best)
        with self._lock(exclusive=True):
            manifests, unreadable = {}, []
            for name in self._names():
                try:
                    manifests[name] = self._read_manifest(name)
                except CheckpointError:        # unreadable, failed checksum, or deleted meanwhile
                    if self._manifest_path(name).exists():
                        unreadable.append(name)
            kept, best = select(list(manifests.values()), keep_last, keep_best)
            deleted = [n for n in manifests if n not in kept]
            referenced: set[str] = set()
            for name in kept:
                referenced.update(chunk_refs(manifests[name]))
            orphans: list[Path] = []
            temps: list[Path] = [p for p in (self.root / "manifests").glob(".*.tmp")]
            for shard in (self.root / "chunks").iterdir():
                if not shard.is_dir():
                    continue
                for path in shard.iterdir():
                    if path.name.startswith("."):
                        temps.append(path)
                    elif path.name not in referenced:
                        orphans.append(path)
            freed = sum(_size(path) for path in orphans + temps)
            if unreadable:
                freed -= sum(_size(p) for p in orphans)
                orphans = []
            result = GcResult(kept=[n for n in manifests if n in kept], best=best, deleted=deleted,
                              deleted_chunks=len(orphans), freed_bytes=freed, dry_run=dry_run,
                              temp_files=len(temps), unreadable=unreadable)
            if dry_run:
                return result
            for name in deleted:   # manifests first: a checkpoint never points at a deleted chunk
                self._manifest_path(name).unlink(missing_ok=True)
            _fsync_dir(self.root / "manifests")
            for path in orphans + temps:
                path.unlink(missing_ok=True)
            for path in orphans:
                self._checked.forget(path.name)
            for shard in {p.parent for p in orphans + temps}:
                _fsync_dir(shard)
            self._info["retention"] = {"keep_last": keep_last, "keep_best": list(keep_best) if keep_best else None}
            _atomic_write(self.root / "STORE.json", json.dumps(self._info, indent=1).encode())
            return result

    def retention(self) -> Optional[dict[str, Any]]:
        """The policy the last gc applied (``{"keep_last": K, "keep_best": [metric, mode, n] | None}``)."""
        return self._info.get("retention")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

