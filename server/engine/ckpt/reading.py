"""Reading chunks back: decoding them into tensors' buffers, each one's hash checked, and
``verify``, which checks every chunk of one checkpoint or all.

:class:`ChunkReader` is mixed into :class:`~deepdive.engine.ckpt.store.Store`: it uses the
store's worker pool, chunk paths and record of chunks known intact (see
:mod:`deepdive.engine.ckpt.chunks`), and its catalog (:mod:`deepdive.engine.ckpt.catalog`).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from deepdive.engine.ckpt import chunks, shards as sharding
from deepdive.engine.ckpt.entries import entry_chunks, total_bytes
from deepdive.engine.ckpt.records import CheckpointError, ManifestUnusable, Problem, Progress


class ChunkReader:
    """Decoding and verifying chunks (a mixin of :class:`~deepdive.engine.ckpt.store.Store`)."""

    def read_entry(self, name: str, entry: dict[str, Any]) -> Any:
        """One tensor entry (of the tree or a shard) of checkpoint ``name``, decoded and verified.

        Raises:
            CheckpointError: a chunk is missing or corrupt (the message names the entry).
        """
        outputs: list[Any] = [None]
        tasks: list[tuple[dict, list, np.ndarray]] = []
        finish: list[Callable[[], None]] = []
        outputs[0] = self._allocate(entry, tasks, finish, outputs, 0)
        self._read_chunks(name, tasks, None)
        for step in finish:
            step()
        return outputs[0]

    def verify(self, which: Union[str, int, None] = None, *, progress: Optional[Progress] = None) -> list[Problem]:
        """Check one checkpoint (or all, with ``None``); the problems found.

        Each manifest is checked against its checksum and its file name (a problem with an empty
        ``tensor``: the manifest); manifests written before checksums pass unchecked
        (:meth:`unchecked_manifests` names them). Every chunk is decoded and its hash compared with
        its name; a chunk shared by several checkpoints is read once and reported for each tensor
        using it.
        """
        names = self._names() if which is None else [self.resolve(which)]
        problems: list[Problem] = []
        users: dict[str, list[tuple[str, str]]] = {}
        sizes: dict[str, int] = {}
        for name in names:
            try:
                manifest = self._read_manifest(name)
            except ManifestUnusable as exc:
                problems.append(Problem(name, "", "", exc.reason))
                continue
            except CheckpointError:
                problems.append(Problem(name, "", "", "missing (deleted while being verified)"))
                continue
            for entry in sharding.entries(manifest):
                for key, raw_len, _ in entry_chunks(entry):
                    users.setdefault(key, []).append((name, entry["path"]))
                    sizes[key] = raw_len
        for key, reason in self._check_chunks(list(sizes), sizes, progress, sum(sizes.values())):
            for name, path in dict.fromkeys(users[key]):
                problems.append(Problem(name, path, key, reason))
        return sorted(problems, key=lambda p: (p.checkpoint, p.tensor))

    def _read_chunks(self, name: str, tasks: list[tuple[dict, list, np.ndarray]], progress: Optional[Progress]) -> None:
        """Decode each task's chunks into its output buffer, verifying every hash."""
        jobs = []
        for entry, chunks, out in tasks:
            if total_bytes(chunks) != out.size:
                raise CheckpointError(f"checkpoint {name}: tensor '{entry['path']}': its chunks hold "
                                      f"{total_bytes(chunks)} bytes, {out.size} expected; the manifest is damaged")
            pos = 0
            for key, raw_len, _ in chunks:
                jobs.append((entry["path"], key, out[pos:pos + raw_len]))
                pos += raw_len
        total = sum(o.size for _, _, o in jobs)

        def work(key: str, out: np.ndarray) -> Optional[str]:
            return self._decode_into(key, out)

        futures = [self._executor().submit(work, key, out) for _, key, out in jobs]
        done = 0
        error: Optional[str] = None
        for (path, key, out), fut in zip(jobs, futures):
            reason = fut.result()
            if reason and error is None:
                error = (f"checkpoint {name}: tensor '{path}' is corrupt (chunk {key[:12]}: {reason}); "
                         f"load an earlier checkpoint or restore {self._chunk_path(key)} from a copy")
            done += out.size
            if progress is not None:
                progress(done, total)
        if error:
            raise CheckpointError(error)

    def _decode_into(self, key: str, out: np.ndarray) -> Optional[str]:
        """Decode chunk ``key`` into ``out``; the reason it is bad, or None (then a save may reuse it)."""
        reason, st = chunks.check(self._chunk_path(key), key, out)
        if reason is None and st is not None:
            self._checked.remember(key, st)
        else:
            self._checked.forget(key)
        return reason

    def _check_chunks(self, keys: list[str], sizes: dict[str, int], progress: Optional[Progress],
                      total: int) -> Iterator[tuple[str, str]]:
        def work(key: str) -> Optional[str]:
            return self._decode_into(key, np.empty(sizes[key], dtype=np.uint8))

        done = 0
        # bounded: at most 2 x workers chunks decoded at once
        window = 2 * self.workers
        pending: list[tuple[str, Future]] = []
        it = iter(keys)
        while True:
            while len(pending) < window:
                key = next(it, None)
                if key is None:
                    break
                pending.append((key, self._executor().submit(work, key)))
            if not pending:
                break
            key, fut = pending.pop(0)
            reason = fut.result()
            done += sizes[key]
            if progress is not None:
                progress(done, total)
            if reason:
                yield key, reason

