"""``torch.distributed.checkpoint`` into the checkpoint store: each rank's shards as chunks, one manifest a step.

Under FSDP no rank holds the whole model, so no rank can save it alone. :func:`save` runs
``torch.distributed.checkpoint.save`` with :class:`StoreWriter`: every rank hashes, compresses and
writes the shards it owns as chunks of the store (content-addressed like any chunk: a shard that did
not change since the last save costs a hash and no write); DCP gathers the write results (each
shard's chunk list) on rank 0, which commits the step with one manifest (``Store.save(...,
shards=...)``) only once every rank's writes succeeded. A rank that dies mid-save leaves chunks
that no manifest names (``gc`` removes them) and the earlier checkpoints as they were. Every rank
holds the store's lock shared for the whole save, so a ``gc`` never deletes a shard that its
manifest is about to name.

:func:`load` runs ``torch.distributed.checkpoint.load`` with :class:`StoreReader` into the layout of
the run that resumes: DTensor shards at another world size, or whole tensors in one process. DCP's
planner works out which pieces of which saved shards each rank needs (resharding); the reader
decodes only those shards and checks every chunk against its hash.

Only tensors go through DCP. DCP would store other values with pickle and load them with
``torch.load(weights_only=False)``, and loading a checkpoint of this store never runs code: the
caller splits its state with :func:`deepdive.engine.ckpt.shards.split`, gives the tensors to DCP by
key and keeps the rest (optimizer hyperparameters, counters) in the manifest's tree as JSON.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

import torch
import torch.distributed.checkpoint as dist_cp
from torch.distributed.checkpoint import (
    DefaultLoadPlanner,
    DefaultSavePlanner,
    Metadata,
    StorageReader,
    StorageWriter,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex, TensorProperties
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    SavePlan,
    SavePlanner,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from deepdive.engine.ckpt import shards as sharding
from deepdive.engine.ckpt.store import (
    Checkpoint,
    CheckpointError,
    StateMismatch,
    Store,
    _entry_chunks,
    _torch_dtype,
    checkpoint_name,
)

__all__ = ["StoreReader", "StoreWriter", "copy_to_cpu", "load", "save"]

FLUSH_BYTES = 256 << 20
"""A rank's shards are encoded and written in batches of about this many raw bytes (bounds the CPU
copies of GPU shards held at once)."""

Commit = Callable[[dict[str, Any]], Checkpoint]
"""Rank 0's commit: takes the ``dcp`` section, writes the manifest (``Store.save(..., shards=section)``)."""


class StoreWriter(StorageWriter):
    """A DCP storage writer that puts each rank's shards into a :class:`Store` as chunks.

    Every rank writes its own shards (:meth:`write_data`); the coordinator (rank 0) builds the
    manifest's ``dcp`` section from all ranks' results and hands it to ``commit`` (:meth:`finish`),
    which DCP calls only after every rank's writes succeeded.

    Args:
        store: the store the chunks go to.
        step: the checkpoint's step (int8-delta shards take the newest other checkpoint as their base).
        lossy: ``None``, ``"bf16"`` or ``"int8-delta"``, as for :meth:`Store.save`.
        commit: rank 0's commit (None on the other ranks).
    """

    def __init__(self, store: Store, *, step: int, lossy: Optional[str] = None, commit: Optional[Commit] = None):
        super().__init__()
        self.store, self.step, self.lossy, self.commit = store, step, lossy, commit
        self.rank = 0
        self.committed: Optional[Checkpoint] = None

    def reset(self, checkpoint_id: Any = None) -> None:
        """A new save begins: forget the previous one's commit."""
        self.committed = None

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.rank = int(kwargs.get("rank") or 0)
        if is_coordinator and self.commit is None:
            raise CheckpointError("the coordinating rank of a sharded save needs the commit that writes the manifest")

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        return plans

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        """Encode and write this rank's shards as chunks (reusing those already stored and intact)."""
        base_name, base_entries = self._delta_base()
        results: list[WriteResult] = []
        batch: list[tuple[Any, dict[str, Any], list[Any]]] = []
        pending = 0
        for item in plan.items:
            if item.type == WriteItemType.BYTE_IO:
                raise CheckpointError(f"'{item.index.fqn}' is not a tensor: a sharded save takes tensors only "
                                      "(the rest of the state goes into the manifest)")
            tensor = planner.resolve_data(item)
            path = sharding.shard_name(item.index.fqn, item.index.offset or ())
            entry, parts = self.store._prepare(path, tensor, self.lossy, None, base_entries.get(path), base_name)
            batch.append((item, entry, parts))
            pending += entry["nbytes"]
            if pending >= FLUSH_BYTES:
                results += self._write(batch)
                batch, pending = [], 0
        results += self._write(batch)
        future: Future[list[WriteResult]] = Future()
        future.set_result(results)
        return future

    def _delta_base(self) -> tuple[Optional[str], dict[str, dict[str, Any]]]:
        """For int8-delta: the newest other checkpoint's shard entries by name (empty otherwise)."""
        if self.lossy != "int8-delta":
            return None, {}
        base = self.store._latest_manifest(exclude=checkpoint_name(self.step))
        if base is None:
            return None, {}
        return base["name"], {e["path"]: e for e in (base.get(sharding.SECTION) or {}).get("shards", [])}

    def _write(self, batch: list[tuple[Any, dict[str, Any], list[Any]]]) -> list[WriteResult]:
        jobs = [(entry, key, raw, itemsize, is_float) for _, entry, parts in batch
                for key, raw, itemsize, is_float in parts]
        written = self.store._write_chunks(jobs, None)
        counted: set[str] = set()
        results = []
        for item, entry, _ in batch:
            new = [(key, size) for key, _, size in _entry_chunks(entry) if key in written and key not in counted]
            counted.update(key for key, _ in new)
            info = {"entry": entry, "rank": self.rank, "new_bytes": sum(size for _, size in new),
                    "new_chunks": len(new)}
            results.append(WriteResult(index=item.index, size_in_bytes=entry["nbytes"], storage_data=info))
        return results

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        """Rank 0, after every rank wrote: commit the step with the ``dcp`` section of all shards."""
        if self.commit is None:
            raise CheckpointError("only the coordinating rank commits a sharded save")
        self.committed = self.commit(section(metadata, results))

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
        return False   # never picked by DCP on its own: a store is given explicitly


def section(metadata: Metadata, results: list[list[WriteResult]]) -> dict[str, Any]:
    """The manifest's ``dcp`` section (see :mod:`deepdive.engine.ckpt.shards`) from DCP's metadata and
    every rank's write results (``results[r]``: rank r's)."""
    by_index: dict[tuple[str, tuple[int, ...]], str] = {}
    shards: list[dict[str, Any]] = []
    ranks: list[dict[str, Any]] = []
    for rank, rank_results in enumerate(results):
        raw = new = new_chunks = 0
        for result in rank_results:
            info = result.storage_data
            shards.append(info["entry"])
            by_index[(result.index.fqn, tuple(result.index.offset or ()))] = info["entry"]["path"]
            raw += info["entry"]["nbytes"]
            new += info["new_bytes"]
            new_chunks += info["new_chunks"]
        ranks.append({"rank": rank, "shards": len(rank_results), "raw_bytes": raw, "new_bytes": new,
                      "new_chunks": new_chunks})
    tensors: dict[str, Any] = {}
    for key, meta in metadata.state_dict_metadata.items():
        if not isinstance(meta, TensorStorageMetadata):
            raise CheckpointError(f"'{key}' is not a tensor: a sharded save takes tensors only")
        tensors[key] = {"dtype": str(meta.properties.dtype).removeprefix("torch."), "shape": list(meta.size),
                        "chunks": [{"offsets": list(c.offsets), "sizes": list(c.sizes),
                                    "shard": by_index[(key, tuple(c.offsets))]} for c in meta.chunks]}
    return {"tensors": tensors, "shards": shards, "ranks": ranks}


class StoreReader(StorageReader):
    """A DCP storage reader over one sharded checkpoint of a :class:`Store`.

    DCP asks each rank for the pieces of saved shards that its own tensors cover; each shard read is
    decoded once, every chunk checked against its hash (a damaged one raises :class:`CheckpointError`).

    Args:
        store: the store.
        manifest: the checkpoint's manifest (``Store.manifest(name)``), with its ``dcp`` section.
    """

    def __init__(self, store: Store, manifest: dict[str, Any]):
        super().__init__()
        layout = manifest.get(sharding.SECTION)
        if not layout:
            raise CheckpointError(f"checkpoint {manifest.get('name')} is not sharded: load it with Store.load")
        self.store, self.manifest, self.layout = store, manifest, layout
        self.entries = {entry["path"]: entry for entry in layout["shards"]}
        self.storage: dict[MetadataIndex, str] = {}
        self.read_bytes = 0

    def reset(self, checkpoint_id: Any = None) -> None:
        """A new load begins: count its bytes from zero."""
        self.read_bytes = 0

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """DCP's metadata, rebuilt from the manifest's ``dcp`` section (no pickle)."""
        state: dict[str, Any] = {}
        storage: dict[MetadataIndex, str] = {}
        for key, meta in self.layout["tensors"].items():
            dtype = _torch_dtype({"path": key, "dtype": meta["dtype"]})
            chunks = [ChunkStorageMetadata(offsets=torch.Size(c["offsets"]), sizes=torch.Size(c["sizes"]))
                      for c in meta["chunks"]]
            state[key] = TensorStorageMetadata(properties=TensorProperties(dtype=dtype), size=torch.Size(meta["shape"]),
                                               chunks=chunks)
            for c in meta["chunks"]:
                storage[MetadataIndex(key, c["offsets"])] = c["shard"]
        return Metadata(state_dict_metadata=state, planner_data={key: (key,) for key in state}, storage_data=storage)

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.storage = metadata.storage_data

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        """Decode each saved shard this rank needs once; copy the pieces into the planner's tensors."""
        by_shard: dict[str, list[Any]] = {}
        for item in plan.items:
            if item.type == LoadItemType.BYTE_IO:
                raise CheckpointError(f"'{item.storage_index.fqn}' is not a tensor in {self.manifest['name']}")
            by_shard.setdefault(self.storage[item.storage_index], []).append(item)
        for name, items in by_shard.items():
            data = self.store.read_entry(self.manifest["name"], self.entries[name])
            self.read_bytes += self.entries[name]["nbytes"]
            for item in items:
                target = planner.resolve_tensor(item).detach()
                target.copy_(sharding.narrow(data, item.storage_offsets, item.lengths))
                planner.commit_tensor(item, target)
        future: Future[None] = Future()
        future.set_result(None)
        return future

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
        return False


def save(store: Store, tensors: dict[str, Any], *, step: int, lossy: Optional[str] = None,
         commit: Optional[Commit] = None, process_group: Any = None) -> Optional[Checkpoint]:
    """Save ``tensors`` (this rank's: DTensors and plain tensors by key) as the shards of checkpoint ``step``.

    Every rank of ``process_group`` calls it with its own tensors; rank 0 passes ``commit``. Returns
    the checkpoint on rank 0 (None elsewhere).

    Raises:
        CheckpointError: a rank failed to write, or the commit failed (one line, naming the rank).
    """
    writer = StoreWriter(store, step=step, lossy=lossy, commit=commit)
    try:
        with store._lock(exclusive=False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")   # one process: no group
            dist_cp.save(tensors, storage_writer=writer, planner=DefaultSavePlanner(), process_group=process_group)
    except CheckpointException as exc:
        raise _one_line(exc, f"saving the shards of step {step} to {store.root}",
                        hint=" (check free space and permissions there)") from None
    except RuntimeError as exc:   # the process group broke: a rank died or stopped answering mid-save
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"saving the shards of step {step} to {store.root} failed: another rank stopped "
                              f"answering ({first}); the earlier checkpoints are intact") from exc
    return writer.committed


def load(store: Store, manifest: dict[str, Any], targets: dict[str, Any], *, distributed: bool,
         process_group: Any = None) -> int:
    """Read checkpoint ``manifest``'s shards into ``targets`` (this rank's tensors by key, in any
    layout: DTensor shards or whole tensors); every rank of the group calls it. Returns the bytes
    of saved shards this rank decoded.

    Raises:
        StateMismatch: a saved tensor's shape differs from its target's.
        CheckpointError: a chunk is missing or corrupt, or another failure (one line, naming the rank).
    """
    reader = StoreReader(store, manifest)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dist_cp.load(targets, storage_reader=reader, planner=DefaultLoadPlanner(), process_group=process_group,
                         no_dist=not distributed)
    except CheckpointException as exc:
        raise _one_line(exc, f"loading {manifest['name']} from {store.root}") from None
    return reader.read_bytes


def copy_to_cpu(tensors: dict[str, Any]) -> dict[str, Any]:
    """A copy of this rank's tensors on the CPU that training can no longer change (the async save's
    snapshot). A DTensor's own copy keeps its mesh and placements around a CPU copy of its local
    shard, as torch's async stager does (``DTensor.from_local`` would move it back to a GPU mesh's
    device); no communication."""
    return {key: t.detach().to("cpu", copy=True) for key, t in tensors.items()}


def _one_line(exc: CheckpointException, doing: str, hint: str = "") -> CheckpointError:
    """DCP's exception (a traceback per failed rank) as one line: the first failure, its rank named.
    A damaged chunk stays a plain CheckpointError; a shape that does not fit becomes StateMismatch."""
    failures = sorted(exc.failures.items())
    if not failures:
        return CheckpointError(f"{doing} failed")
    rank, (error, _) = failures[0]
    if isinstance(error, StateMismatch) or (isinstance(error, ValueError) and "Size mismatch" in str(error)):
        return StateMismatch(f"{doing}: {error} (rank {rank}): build the model as the saved run did, "
                             "or start fresh (resume=False)")
    if isinstance(error, CheckpointError):
        return CheckpointError(str(error))
    return CheckpointError(f"{doing} failed on rank {rank}: {type(error).__name__}: {error}{hint}")
