"""A content-addressed checkpoint store: deduplicated, compressed, atomic, verified.

Layout of a store directory::

    STORE.json                       format, hash, creation time, the last retention policy gc applied
    chunks/ab/ab12...ef              one chunk: up to ``chunk_size`` raw bytes of one tensor, encoded
                                     (byte planes + rANS/zstd, see codec.py), named by the xxh3-128 of the raw bytes
    manifests/step-0000001200.json   one checkpoint: the nested state as JSON, each tensor's dtype,
                                     shape and chunk list, metrics, sizes; a sharded checkpoint's
                                     ``dcp`` section lists the shards every rank wrote (shards.py)
    .lock                            flock: saves hold it shared, gc exclusive

A save writes each chunk that is not already there to a temp file, fsyncs them, renames them and
fsyncs their folders, then writes the manifest (temp file, fsync, rename, fsync the folder). On
Linux each chunk file's disk write starts as soon as it is written (``sync_file_range``), so the
disk works while the next chunks are encoded and the fsyncs find little left to flush. A
checkpoint exists once its manifest does: a save killed at any point leaves the earlier checkpoints
whole and, at worst, temp files and orphan chunks that :meth:`Store.gc` removes; a sharded save
(:mod:`deepdive.engine.ckpt.dcp`) likewise, whichever rank is killed, because rank 0 writes the
manifest only after every rank wrote its shards. Unchanged tensors (frozen layers, embeddings,
buffers) hash to chunks that exist, so they cost a hash and no write: a chunk file is reused only
once it is known intact (see :mod:`deepdive.engine.ckpt.chunks`), else it is written again.

What is verified: loading and :meth:`Store.verify` decode every chunk and check its hash (a
mismatch names the tensor), and check the manifest's own checksum (see
:mod:`deepdive.engine.ckpt.manifest`; manifests written before checksums load, reported unchecked).

Modules: this one holds :class:`Store`: creating a store, saving (the manifest last, after the
chunks' durable writes), loading, closing. Its other parts are mixed in from
:mod:`~deepdive.engine.ckpt.catalog` (finding and reading manifests),
:mod:`~deepdive.engine.ckpt.reading` (decoding and verifying chunks),
:mod:`~deepdive.engine.ckpt.collect` (gc), :mod:`~deepdive.engine.ckpt.entries` (a tensor as a
manifest entry: exact, bf16, int8-delta); errors and records are in
:mod:`~deepdive.engine.ckpt.records`, fsync helpers in :mod:`~deepdive.engine.ckpt.durable`. The
names callers import from here (errors, records, helpers) are re-exported.

Example::

    from deepdive.engine.ckpt import Store
    store = Store("ckpt")
    store.save({"model": model.state_dict(), "epoch": 3}, step=1200, metrics={"val_loss": 0.41})
    state = store.load("latest")
    store.gc(keep_last=3, keep_best=("val_loss", "min", 1))
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from deepdive.engine.ckpt import chunks, codec, shards as sharding, tree
from deepdive.engine.ckpt import manifest as mf
from deepdive.engine.ckpt.catalog import Catalog
from deepdive.engine.ckpt.collect import Collector, _size  # noqa: F401 - _size: ckpt_cli imports it from here
from deepdive.engine.ckpt.durable import _atomic_write, _fsync_dir, _fsync_path
from deepdive.engine.ckpt.entries import (
    DELTA_BLOCK,
    LOSSY_MIN_NUMEL,
    LOSSY_MODES,
    EntryCodec,
    chunk_refs,
)
from deepdive.engine.ckpt.entries import entry_chunks as _entry_chunks  # noqa: F401 - dcp imports it from here
from deepdive.engine.ckpt.entries import torch_dtype as _torch_dtype  # noqa: F401 - dcp, shards import it from here
from deepdive.engine.ckpt.reading import ChunkReader
from deepdive.engine.ckpt.records import (
    FORMAT,
    Checkpoint,
    CheckpointError,
    GcResult,
    ManifestUnusable,
    Problem,
    Progress,
    StateMismatch,
    as_dict,
    check_metrics,
    checkpoint_name,
    checkpoint_record,
)
from deepdive.engine.ckpt.retention import parse_best, select

__all__ = ["DEFAULT_CHUNK_SIZE", "DELTA_BLOCK", "FORMAT", "LOSSY_MIN_NUMEL", "LOSSY_MODES", "Checkpoint",
           "CheckpointError", "GcResult", "ManifestUnusable", "Problem", "Progress", "StateMismatch", "Store",
           "as_dict", "checkpoint_name", "parse_best", "select"]

DEFAULT_CHUNK_SIZE = 4 << 20


class Store(Catalog, ChunkReader, Collector, EntryCodec):
    """A checkpoint store in the directory ``root``; thread-safe (one instance may be shared).

    Args:
        root (str | Path): the store's directory.
        create (bool): make the store when ``root`` does not hold one (default). With ``False`` a
            missing store raises :class:`CheckpointError`.
        chunk_size (int): raw bytes per chunk for new saves (default 4 MiB).
        workers (int | None): threads that hash, compress and write chunks (default: CPU count, max 8).
        level (int): zstd level for non-float planes (float planes: rANS for the exponents, zstd's fast
            strategy for the rest).

    Raises:
        CheckpointError: ``root`` is missing (``create=False``) or is a non-empty directory that
            is not a store.
    """

    def __init__(self, root: Union[str, os.PathLike[str]], *, create: bool = True,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, workers: Optional[int] = None, level: int = 1) -> None:
        self.root = Path(root)
        if chunk_size < 4096 or chunk_size % 64:
            raise ValueError(f"chunk_size must be a multiple of 64 of at least 4096 bytes, not {chunk_size}")
        self.chunk_size = chunk_size
        self.level = level
        self.workers = workers or max(1, min(8, os.cpu_count() or 1))
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pool_lock = threading.Lock()
        self._checked = chunks.CheckedChunks()   # chunk files this object wrote or found intact
        info = self.root / "STORE.json"
        if not info.exists():
            if not create:
                why = "the directory does not exist" if not self.root.exists() else "it has no STORE.json"
                raise CheckpointError(f"no checkpoint store at {self.root}: {why}; give the directory "
                                      "a training run saved checkpoints to")
            ours = {".lock", "chunks", "manifests"}    # another process may be creating this store right now
            if self.root.exists() and any(p.name not in ours and not p.name.startswith(".STORE.json.")
                                          for p in self.root.iterdir()):
                raise CheckpointError(f"{self.root} is not a checkpoint store (no STORE.json) and is not empty: "
                                      "pick a new or empty directory")
            (self.root / "chunks").mkdir(parents=True, exist_ok=True)
            (self.root / "manifests").mkdir(exist_ok=True)
            _atomic_write(info, json.dumps({"format": FORMAT, "hash": codec.HASH_NAME,
                                            "created": time.time()}, indent=1).encode())
        try:
            self._info = json.loads(info.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{info} is unreadable ({exc}): restore it or pick another directory") from None
        if self._info.get("format") != FORMAT or self._info.get("hash") != codec.HASH_NAME:
            raise CheckpointError(f"{self.root} holds a store of format {self._info.get('format')!r}, "
                                  f"this version reads {FORMAT!r}: upgrade deepdive")
        (self.root / "chunks").mkdir(exist_ok=True)
        (self.root / "manifests").mkdir(exist_ok=True)

    # ---------------------------------------------------------------------------------------- public

    def save(self, state: Any, *, step: int, metrics: Optional[dict[str, float]] = None,
             lossy: Optional[str] = None, meta: Optional[dict[str, Any]] = None,
             lossy_filter: Optional[Callable[[str, Any], bool]] = None,
             progress: Optional[Progress] = None, shards: Optional[dict[str, Any]] = None) -> Checkpoint:
        """Save ``state`` as the checkpoint of ``step``; blocking, returns once it is durable.

        Args:
            state: nested dicts/lists/tuples of tensors, numpy arrays and plain values (see
                :mod:`deepdive.engine.ckpt.tree`). Tensors are read as they are during the call:
                hand in CPU copies when training goes on meanwhile.
            step (int): the checkpoint's step; saving a step that exists replaces it atomically.
                Chunks already in the store are reused only once known intact; a damaged one is
                written again (see :mod:`deepdive.engine.ckpt.chunks`). The manifest is written
                last, with its checksum (see :mod:`deepdive.engine.ckpt.manifest`).
            metrics (dict[str, float] | None): numbers gc's ``keep_best`` ranks by.
            lossy (str | None): ``None`` (default: bit-exact), ``"bf16"`` (fp32/fp64 tensors rounded
                to bfloat16, loaded back in their dtype) or ``"int8-delta"`` (float tensors stored as
                int8 differences, one scale per 4096 elements, from the same tensor's last exact copy;
                exact when there is none). Only float tensors of at least 4096 elements are affected.
            meta (dict | None): JSON-able data kept in the manifest.
            lossy_filter (callable | None): ``(path, tensor) -> bool``; lossy only where it is true.
            progress (callable | None): ``progress(done_bytes, total_bytes)``.
            shards (dict | None): the ``dcp`` section of a sharded checkpoint: shards whose chunks the
                ranks already wrote (see :mod:`deepdive.engine.ckpt.shards`); ``state`` then holds a
                ``ShardRef`` where each of them stands. The manifest commits them with the rest.

        Raises:
            ValueError: a bad ``step``, ``metrics``, ``lossy`` or ``shards``.
            TypeError: a value in ``state`` that cannot be stored (the message names its path).
        """
        started = time.perf_counter()
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be a non-negative int, not {step!r}")
        step = int(step)
        if lossy not in (None, *LOSSY_MODES):
            raise ValueError(f"lossy must be None, 'bf16' or 'int8-delta', not {lossy!r}")
        metrics = check_metrics(metrics)
        meta = dict(meta or {})
        json.dumps(meta)  # JSON-able, or TypeError now rather than after the chunks are written
        if shards is not None:
            sharding.check_section(shards)
        name = checkpoint_name(step)

        leaves: list[tuple[str, Any]] = []
        encoded = tree.encode(state, lambda path, arr: (leaves.append((path, arr)), len(leaves) - 1)[1])
        with self._lock(exclusive=False):
            base = self._latest_manifest(exclude=name) if lossy == "int8-delta" else None
            base_entries = {e["path"]: e for e in base["tensors"]} if base else {}
            entries: list[dict[str, Any]] = []
            jobs: list[tuple[dict[str, Any], str, np.ndarray, int, bool]] = []   # entry, key, raw, itemsize, float
            for path, arr in leaves:
                entry, parts = self._prepare(path, arr, lossy, lossy_filter, base_entries.get(path),
                                             base["name"] if base else None)
                entries.append(entry)
                jobs.extend((entry, key, raw, itemsize, is_float) for key, raw, itemsize, is_float in parts)
            written = self._write_chunks(jobs, progress)
            manifest = {
                "format": FORMAT, "name": name, "step": step, "time": time.time(), "metrics": metrics,
                "meta": meta, "lossy": lossy, "hash": codec.HASH_NAME, "byteorder": "little",
                "chunk_size": self.chunk_size, "tree": encoded, "tensors": entries,
            }
            ranks: list[dict[str, Any]] = []
            if shards is not None:
                manifest[sharding.SECTION] = shards
                ranks = shards["ranks"]
            refs = chunk_refs(manifest)
            manifest["stats"] = {
                "tensors": len(entries) + len(shards["tensors"] if shards else ()),
                "raw_bytes": sum(e["nbytes"] for e in sharding.entries(manifest)),
                "stored_bytes": sum(size for _, size in refs.values()),
                "chunks": len(refs),
                "new_bytes": sum(written.values()) + sum(int(r["new_bytes"]) for r in ranks),
                "new_chunks": len(written) + sum(int(r["new_chunks"]) for r in ranks),
                "seconds": time.perf_counter() - started,
            }
            _atomic_write(self._manifest_path(name), mf.encode(manifest))
        return checkpoint_record(manifest)

    def load(self, which: Union[str, int] = "latest", *, map_location: Any = None,
             progress: Optional[Progress] = None, assemble: bool = True) -> Any:
        """The nested state of a checkpoint (``"latest"``: the most recently saved; a step or a name).

        Verified: the manifest against its checksum and its file name (a manifest written before
        checksums is checked against its file name only), and every chunk decoded and hashed.
        Tensors come back as CPU torch tensors (moved with ``.to(map_location)`` when given),
        numpy arrays as numpy arrays, tied tensors as one object.

        A sharded checkpoint (saved under FSDP) comes back whole: each sharded tensor assembled
        from its shards. With ``assemble=False`` its tensors stay ``ShardRef`` placeholders and their
        shards are not read (a resume reads them rank by rank, see :mod:`deepdive.engine.ckpt.dcp`).

        Raises:
            CheckpointError: no such checkpoint; its manifest is unreadable, fails its checksum or
                disagrees with its name (:class:`ManifestUnusable`, the message says "its manifest");
                a chunk is missing or corrupt (the message names the checkpoint and the tensor).
        """
        import torch

        manifest = self._read_manifest(self.resolve(which))
        name = manifest["name"]
        if manifest.get("byteorder", "little") != "little" or np.little_endian is False:
            raise CheckpointError(f"{name} was written on a big-endian machine: load it there")
        outputs: list[Any] = []
        tasks: list[tuple[dict, list, np.ndarray]] = []
        finish: list[Callable[[], None]] = []
        for index, entry in enumerate(manifest["tensors"]):
            outputs.append(self._allocate(entry, tasks, finish, outputs, index))
        self._read_chunks(name, tasks, progress)
        for step in finish:
            step()
        if map_location is not None:
            outputs = [t.to(map_location) if isinstance(t, torch.Tensor) else t for t in outputs]
        state = tree.decode(manifest["tree"], outputs)
        if assemble and manifest.get(sharding.SECTION):
            whole = sharding.assemble(self, manifest, progress)
            if map_location is not None:
                whole = {k: t.to(map_location) for k, t in whole.items()}
            state = sharding.fill(state, whole)
        return state

    def export(self, which: Union[str, int], path: Union[str, os.PathLike[str]], *, format: Optional[str] = None,
               key: Optional[str] = None, progress: Optional[Progress] = None) -> dict[str, Any]:
        """Write a checkpoint's tensors as a plain state_dict (``.pt`` or ``.safetensors``); see
        :func:`deepdive.engine.ckpt.export.export`."""
        from deepdive.engine.ckpt.export import export

        return export(self, which, path, format=format, key=key, progress=progress)

    def close(self) -> None:
        """Stop the worker threads (a later call starts them again)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ---------------------------------------------------------------------------------------- saving
    def _write_chunks(self, jobs: list[tuple[dict[str, Any], str, np.ndarray, int, bool]],
                      progress: Optional[Progress]) -> dict[str, int]:
        """Hash, encode and write the chunks (reusing those present and known intact, see
        :class:`~deepdive.engine.ckpt.chunks.CheckedChunks`); fill each entry's chunk lists.

        Three phases, so that no worker waits on the disk while there are chunks to encode:
        the workers hash, encode and write each new chunk to a temp file (its disk write started);
        then the temp files are fsynced (in parallel); then renamed to their names and their folders
        fsynced. A chunk therefore never has its name before its bytes are durable. Returns ``{chunk id: stored
        bytes}`` of the chunks this call wrote.
        """
        claimed: dict[str, Future] = {}
        claim_lock = threading.Lock()
        total = sum(raw.size for _, _, raw, _, _ in jobs)

        def work(raw: np.ndarray, itemsize: int, is_float: bool) -> tuple[str, int, Optional[str]]:
            key = codec.chunk_id(raw)
            with claim_lock:   # the same bytes twice in one save (zeros, tied copies): written once
                first = key not in claimed
                if first:
                    claimed[key] = mine = Future()
            if not first:
                return key, -1, None
            try:
                target = self._chunk_path(key)
                size, tmp = self._checked.reusable(key, target, raw.size), None   # a known-intact file, or None
                if size is None:
                    size, tmp = self._write_temp(target.parent, codec.encode_parts(raw, itemsize, is_float, self.level))
                mine.set_result(size)
                return key, size, tmp
            except BaseException as exc:
                mine.set_exception(exc)
                raise

        pool = self._executor()
        futures = [pool.submit(work, raw, itemsize, is_float) for _, _, raw, itemsize, is_float in jobs]
        written: dict[str, int] = {}
        temps: dict[str, str] = {}
        done = 0
        try:
            for (entry, key, raw, _, _), fut in zip(jobs, futures):
                chunk, size, tmp = fut.result()
                if size < 0:
                    size = claimed[chunk].result()
                entry[key].append([chunk, int(raw.size), size])
                if tmp is not None:
                    written[chunk] = size
                    temps[chunk] = tmp
                done += raw.size
                if progress is not None:
                    progress(done, total)
            list(pool.map(_fsync_path, temps.values()))
            for chunk, tmp in temps.items():
                os.replace(tmp, self._chunk_path(chunk))
                self._checked.remember(chunk, self._chunk_path(chunk).stat())
        except BaseException:
            for fut in futures:
                fut.cancel()
            for fut in futures:
                if not fut.cancelled():
                    try:
                        _, _, tmp = fut.result()
                    except BaseException:
                        continue
                    if tmp is not None:
                        Path(tmp).unlink(missing_ok=True)
            raise
        shards = {self._chunk_path(k).parent for k in written}
        for shard in shards:
            _fsync_dir(shard)
        if shards:
            _fsync_dir(self.root / "chunks")
        return written

    def _write_temp(self, folder: Path, parts: list[Any]) -> tuple[int, str]:
        """Write ``parts`` to a new temp file in ``folder`` (not yet fsynced); (size, path)."""
        folder.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        size = 0
        try:
            try:
                for part in parts:
                    view = memoryview(part).cast("B")
                    size += len(view)
                    while view:
                        view = view[os.write(fd, view):]
                _start_writeback(fd)
            finally:
                os.close(fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size, tmp

    # ---------------------------------------------------------------------------------------- helpers

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="deepdive-ckpt")
            return self._pool

    def _chunk_path(self, key: str) -> Path:
        return self.root / "chunks" / key[:2] / key

    @contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        """flock on ROOT/.lock: saves share it, gc holds it alone. A fresh open file per call, so
        threads of one process exclude each other too; a killed process releases it."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)



def _load_sync_file_range() -> Optional[Callable[..., int]]:
    """Linux's sync_file_range through ctypes (Python's os module does not have it), or None."""
    if sys.platform != "linux":
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint], ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2   # <fcntl.h>: start writing the dirty pages out, do not wait


def _start_writeback(fd: int) -> None:
    """Start the disk write of a chunk file just written, without waiting (Linux sync_file_range):
    the fsyncs at the end of the save then find the bytes on their way instead of flushing them all
    after the last chunk is encoded (bf16 BERT-base: 0.23 s a save against 0.32 s). Advisory:
    durability still comes from the fsyncs, so its result is not checked."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)
