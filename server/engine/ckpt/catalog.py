"""Finding and reading checkpoints: manifest names and paths, ``latest``, the newest first,
manifests read with their checksum checked.

:class:`Catalog` is mixed into :class:`~deepdive.engine.ckpt.store.Store`; it needs only the
store's ``root``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from deepdive.engine.ckpt import manifest as mf
from deepdive.engine.ckpt.records import (
    FORMAT,
    NAME_PATTERN,
    Checkpoint,
    CheckpointError,
    ManifestUnusable,
    checkpoint_name,
    checkpoint_record,
)


class Catalog:
    """The checkpoints of a store directory (a mixin of :class:`~deepdive.engine.ckpt.store.Store`)."""

    root: Path

    def list(self) -> list[Checkpoint]:
        """The checkpoints, oldest step first. Manifests that are unreadable or fail their checksum
        are left out: :meth:`verify` names them."""
        found = []
        for name in self._names():
            try:
                found.append(checkpoint_record(self._read_manifest(name)))
            except (CheckpointError, KeyError, TypeError):
                continue
        return sorted(found, key=lambda c: (c.step, c.time))

    def newest_first(self) -> list[tuple[str, float]]:
        """Every checkpoint's name and save time, the most recently saved first (ties: higher step first).

        Damaged checkpoints are included, ordered by the time their manifest records (unverified) or,
        when it is unreadable, by the file's modification time: a caller that falls back to an older
        checkpoint can then say which newer ones it skipped.
        """
        rows: list[tuple[str, float]] = []
        for name in self._names():
            path = self._manifest_path(name)
            try:
                when = mf.saved_time(path.read_bytes())
                rows.append((name, when if when is not None else path.stat().st_mtime))
            except OSError:
                try:
                    rows.append((name, path.stat().st_mtime))
                except OSError:
                    continue   # deleted meanwhile
        return sorted(rows, key=lambda row: (row[1], row[0]), reverse=True)

    def resolve(self, which: Union[str, int] = "latest") -> str:
        """The name of a checkpoint given as ``"latest"`` (the most recently saved, whether intact or
        not: loading it says), a step (int or digits) or a name."""
        if isinstance(which, str) and which == "latest":
            newest = self.newest_first()
            if not newest:
                raise CheckpointError(f"no checkpoint in {self.root} yet")
            return newest[0][0]
        if isinstance(which, (int, np.integer)) and not isinstance(which, bool) or \
                (isinstance(which, str) and which.isdigit()):
            name = checkpoint_name(int(which))
        else:
            name = str(which).removesuffix(".json")
        if not NAME_PATTERN.match(name) or not self._manifest_path(name).exists():
            raise CheckpointError(f"no checkpoint {which!r} in {self.root}: `deepdive ckpt ls {self.root}` lists them")
        return name

    def manifest(self, which: Union[str, int] = "latest") -> dict[str, Any]:
        """The raw manifest (JSON) of a checkpoint."""
        return self._read_manifest(self.resolve(which))

    def has_checkpoints(self) -> bool:
        """Whether the store holds at least one checkpoint (a manifest)."""
        return any((self.root / "manifests").glob("step-*.json"))

    def _manifest_path(self, name: str) -> Path:
        return self.root / "manifests" / f"{name}.json"

    def _names(self) -> list[str]:
        """The names of the manifest files, in step order (readable or not)."""
        return sorted(p.stem for p in (self.root / "manifests").glob("step-*.json") if NAME_PATTERN.match(p.stem))

    def _read_manifest(self, name: str) -> dict[str, Any]:
        """The manifest of checkpoint ``name``, its checksum and fields checked (see :mod:`.manifest`)."""
        return self._read_manifest_checked(name)[0]

    def _read_manifest_checked(self, name: str) -> tuple[dict[str, Any], bool]:
        """The manifest and whether it carried a checksum (False: written before checksums).

        Raises:
            CheckpointError: no such checkpoint; :class:`ManifestUnusable` when its manifest is
                unreadable, fails its checksum or disagrees with its file name.
        """
        try:
            data = self._manifest_path(name).read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"no checkpoint {name!r} in {self.root}: `deepdive ckpt ls {self.root}` lists them") from None
        except OSError as exc:
            raise ManifestUnusable(name, f"is unreadable ({exc.strerror})", self.root) from None
        try:
            return mf.read(data, name, FORMAT, checkpoint_name)
        except mf.ManifestError as exc:
            raise ManifestUnusable(name, str(exc), self.root) from None

    def unchecked_manifests(self, which: Union[str, int, None] = None) -> list[str]:
        """The checkpoints (all, or ``which``) whose manifest has no checksum: written before
        manifests carried one. They load; only their chunks can be verified."""
        names = self._names() if which is None else [self.resolve(which)]
        unchecked = []
        for name in names:
            try:
                if not self._read_manifest_checked(name)[1]:
                    unchecked.append(name)
            except CheckpointError:
                continue   # verify reports it as a problem
        return unchecked

    def _latest_manifest(self, exclude: str) -> Optional[dict[str, Any]]:
        for name in (n for n, _ in self.newest_first() if n != exclude):
            try:
                return self._read_manifest(name)
            except CheckpointError:
                continue
        return None

