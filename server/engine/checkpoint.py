"""Preemption-safe training state: everything an exact resume needs, saved in the background.

``dd.setup(checkpoint_dir="ckpt")`` turns it on; the run then saves, into a content-addressed store
(:mod:`deepdive.engine.ckpt`: deduplicated, byte-grouped + zstd, atomic manifests):

- the model and the optimizer through ``torch.distributed.checkpoint``'s state-dict API, keyed by
  parameter name. One process and DDP: full state dicts, written by rank 0. FSDP: sharded, no rank
  ever gathers the whole model: every rank writes its own shards as chunks of the store through
  ``torch.distributed.checkpoint.save`` (:mod:`deepdive.engine.ckpt.dcp`), and rank 0 commits the
  step with one manifest once every rank has written (a rank killed mid-save leaves the previous
  checkpoint the newest, intact). Only tensors go through DCP; the optimizer's hyperparameters
  stay in the manifest as JSON;
- the loss scaler, the objects given to :meth:`Run.track` (LR schedulers, EMA, anything with
  ``state_dict``/``load_state_dict``), the engine's counters (step, epoch, batch);
- every rank's RNG states (python, numpy, torch, CUDA, the loader's and the sampler's generators),
  both now and at the start of the epoch: a resumed epoch rebuilds the same shuffle and skips the
  batches already trained by index (no data is loaded for them), then continues with the RNG
  exactly where it was — the loss sequence is bitwise the uninterrupted run's.

When: at the end of every epoch, every ``checkpoint_every`` steps, on :meth:`Run.checkpoint` and on
SIGTERM/SIGINT (a spot notice): the current step finishes, the checkpoint is written (blocking) and
the process exits with :data:`PREEMPTED_EXIT_CODE`, which ``torchrun --max-restarts`` (``deepdive
train --max-restarts K``) answers by restarting the group; the restarted script resumes at the next
batch. With several processes the ranks agree on the stop with one small all-reduce per step, so
they all save the same step.

Saving is asynchronous by default: the state is copied to CPU memory at the step boundary (the
only part training waits for) and a background thread writes it; a second save waits for the first.
Rank 0 writes the rest of the state; the other ranks send it their RNG states. A sharded save's
background threads coordinate over a gloo process group of their own (made at the first sharded
save), never the one training communicates on. Loading reads the store on every rank (a shared
file system, as torchrun's elastic restarts assume).

Resume takes the newest checkpoint that loads (:mod:`deepdive.engine.ckpt.resume`): a newer one
with a corrupt chunk or a manifest that fails its checksum is skipped and named on stderr and in the
``resumed`` event; when none loads, one :class:`CheckpointError` names the fixes (``deepdive train
--fresh``, ``resume=False``). ``deepdive train --fresh`` ignores the checkpoints saved before the job
started, so the job's own torchrun restarts still resume.

Elastic: a checkpoint written by N processes resumes on M, FSDP or not. A full state dict is loaded
into whatever layout the run has; a sharded one through ``torch.distributed.checkpoint.load``, which
reshards: each rank reads only the pieces of saved shards its own parameters cover (one process
without FSDP reads them all). The data position is converted through the number of samples the
group had consumed in the epoch (the resumed group skips as many); RNG states are the writer's
rank's when it exists, else rank 0's — exact (bitwise) only for the same world size.

Here: :class:`Checkpointer`. RNG states: :mod:`deepdive.engine.rng` (re-exported); a resumed epoch's
batches: :mod:`deepdive.engine.resume_batches`; model and optimizer loading: :mod:`deepdive.engine.restore`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Iterator, Optional

import torch
from torch import nn

from deepdive.engine.ckpt import LOSSY_MODES, CheckpointError, Store, parse_best
from deepdive.engine.ckpt import shards as sharding
from deepdive.engine.ckpt.resume import all_damaged, newest_intact
from deepdive.engine.restore import load_model_optimizer, load_shards
from deepdive.engine.resume_batches import resume_iterator
from deepdive.engine.rng import rng_state, set_rng_state

__all__ = ["PREEMPTED_EXIT_CODE", "CheckpointError", "Checkpointer", "resume_iterator", "rng_state", "set_rng_state"]

PREEMPTED_EXIT_CODE = 75
"""Exit status after a preemption checkpoint (EX_TEMPFAIL: "try again"); torchrun restarts on it."""


# -- the async snapshot ----------------------------------------------------------------------


def cpu_copy(tree: Any) -> Any:
    """A deep copy with every tensor on the CPU, detached and owning its memory (the async snapshot)."""
    if isinstance(tree, torch.Tensor):
        t = tree.detach()
        return t.to("cpu", copy=True) if t.device.type != "cpu" else t.clone()
    if isinstance(tree, dict):
        return {k: cpu_copy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [cpu_copy(v) for v in tree]
    return tree



# -- the checkpointer ---------------------------------------------------------------------------


class Checkpointer:
    """Saves and restores a :class:`deepdive.engine.run.Run`'s state; see the module docstring."""

    def __init__(self, run: Any, directory: str, *, every: Optional[int], keep_last: int,
                 keep_best: Optional[str], async_save: bool, resume: bool, lossy: Optional[str] = None,
                 fresh_since: Optional[float] = None):
        if every is not None and every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 step, got {every}")
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.run = run
        self.directory = directory
        self.every = every
        self.keep_last = keep_last
        self.keep_best = parse_best(keep_best)  # ValueError now, not at the first save
        self.async_save = async_save
        self.resume_enabled = resume
        self.fresh_since = fresh_since   # ignore checkpoints saved before this Unix time (deepdive train --fresh)
        if lossy not in (None, *LOSSY_MODES):
            raise ValueError(f"checkpoint_lossy must be None, {' or '.join(repr(m) for m in LOSSY_MODES)}, got {lossy!r}")
        self.lossy = lossy
        # rank 0 creates the store and writes; the others read it to resume, and write their shards under FSDP
        self.store: Optional[Store] = Store(directory) if run.is_main else None
        self._save_group: Any = None   # the gloo group sharded saves coordinate on (made at the first one)
        self._writer: Optional[Store] = None   # a rank other than 0's store, for its shards
        self.model: Optional[nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.tracked: dict[str, Any] = {}
        self.epoch_rng: Optional[dict[str, Any]] = None
        self.loader: Any = None
        self.batch_in_epoch = 0
        self.samples_in_epoch = 0
        self.in_batch = False
        self.restored: Optional[dict[str, Any]] = None
        self._late_tracked: dict[str, Any] = {}
        self.saves = 0
        self.last_save: Optional[dict[str, Any]] = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._preempt = 0
        self._previous: dict[int, Any] = {}
        self._install_signals()

    # -- signals --------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. a tune worker's trial)
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._on_signal)
            except (ValueError, OSError):
                continue

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._preempt:  # a second signal: the user means it
            self.restore_signals()
            raise KeyboardInterrupt
        self._preempt = signum

    def restore_signals(self) -> None:
        for signum, handler in self._previous.items():
            try:
                signal.signal(signum, handler)
            except (ValueError, OSError, TypeError):
                continue
        self._previous = {}

    # -- what is saved ---------------------------------------------------------------------------

    def watch(self, model: Optional[nn.Module] = None, optimizer: Optional[torch.optim.Optimizer] = None,
              **objects: Any) -> None:
        if model is not None:
            self.model = model
        if optimizer is not None:
            self.optimizer = optimizer
        for name, obj in objects.items():
            if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
                raise ValueError(f"run.track({name}=...) needs an object with state_dict() and load_state_dict()")
            self.tracked[name] = obj
            if name in self._late_tracked:  # tracked after the restore: load it now
                obj.load_state_dict(self._late_tracked.pop(name))

    def _model_optimizer_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        if self.model is None:
            return {}, {}
        options = StateDictOptions(full_state_dict=True, cpu_offload=self.run.dist.distributed)
        optimizers = [self.optimizer] if self.optimizer is not None else []
        model_state, optim_state = get_state_dict(self.model, optimizers, options=options)
        return model_state, (optim_state if self.optimizer is not None else {})

    @property
    def sharded(self) -> bool:
        """Whether saves are sharded: several processes and a model whose parameters are DTensors (FSDP)."""
        if self.model is None or not self.run.dist.distributed:
            return False
        from torch.distributed.tensor import DTensor

        return any(isinstance(p, DTensor) for p in self.model.parameters())

    def _sharded_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """This rank's model and optimizer state without gathering anything: (model skeleton,
        optimizer skeleton, this rank's tensors by key). The skeletons hold a ShardRef for each
        tensor and the optimizer's hyperparameters as values."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, \
            get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=False)
        state: dict[str, Any] = {"model": get_model_state_dict(self.model, options=options), "optimizer": {}}
        if self.optimizer is not None:
            # torch initialises an empty optimizer's state with a step of its own: not before the first step
            state["optimizer"] = (get_optimizer_state_dict(self.model, self.optimizer, options=options)
                                  if self.optimizer.state else
                                  {"state": {}, "param_groups": self.optimizer.state_dict()["param_groups"]})
        tensors, skeleton = sharding.split(state)
        return skeleton["model"], skeleton["optimizer"], tensors

    def _position(self, epoch_done: bool) -> dict[str, Any]:
        run = self.run
        epoch, batch, samples = run.epoch, self.batch_in_epoch, self.samples_in_epoch
        if self.in_batch:  # run.checkpoint() in the loop's body: the batch's update is in the model
            batch, samples = batch + 1, samples + run._batch_size * run.world_size
        if epoch_done:
            epoch, batch, samples = run.epoch + 1, 0, 0
        return {"step": run.step_count, "epoch": epoch, "batch_in_epoch": batch, "samples_in_epoch": samples,
                "batch_index": run.batch_index, "world_size": run.world_size}

    def snapshot(self, epoch_done: bool = False) -> tuple[Optional[dict[str, Any]], Optional[dict[str, Any]]]:
        """The state to save (every rank takes part): (the tree on rank 0, else None; this rank's
        shards by key when saves are sharded, else None). Copied to the CPU for an async save."""
        run = self.run
        shards: Optional[dict[str, Any]] = None
        if self.sharded:
            model_state, optim_state, shards = self._sharded_state()
            if self.async_save:
                from deepdive.engine.ckpt.dcp import copy_to_cpu

                shards = copy_to_cpu(shards)
        else:
            model_state, optim_state = self._model_optimizer_state()
        rng = rng_state(self.loader)
        epoch_rng = self.epoch_rng if not epoch_done else rng
        ranks = [{"rng": rng, "epoch_rng": epoch_rng}]
        if run.dist.distributed:
            import torch.distributed as dist

            ranks = [None] * run.world_size
            dist.all_gather_object(ranks, {"rng": rng, "epoch_rng": epoch_rng})
        if not run.is_main:
            return None, shards
        state = {
            "model": model_state, "optimizer": optim_state, "scaler": run.scaler.state_dict(),
            "tracked": {name: obj.state_dict() for name, obj in self.tracked.items()},
            "position": self._position(epoch_done), "ranks": ranks,
            "engine": {"precision": run.plan.mode, "kept_fp32": list(run.kept_fp32),
                       "compression": run.compression.mode if run.compression else "none",
                       "strategy": run.strategy, "run_id": run.run_id, "sharded": shards is not None},
        }
        return (cpu_copy(state) if self.async_save else state), shards

    # -- saving -----------------------------------------------------------------------------------

    def save(self, *, metrics: Optional[dict[str, Any]] = None, epoch_done: bool = False, blocking: bool = False,
             reason: str = "periodic") -> None:
        """Checkpoint now (every rank calls it at the same step)."""
        self.wait()  # one save at a time; it also raises a background failure
        started = time.perf_counter()
        group = self._sharded_group() if self.sharded else None   # made here, in step on every rank
        state, shards = self.snapshot(epoch_done)
        if state is None and shards is None:
            return
        step = self.run.step_count
        # the metrics logged since the previous save (a stale evaluation must not rank a later step)
        given = {**self.run._last_metrics, **(metrics or {})}
        self.run._last_metrics = {}
        numbers = {k: float(v) for k, v in given.items()
                   if (isinstance(v, (int, float)) and not isinstance(v, bool)) or isinstance(v, torch.Tensor)}
        snapshot_s = time.perf_counter() - started

        def commit(section: Optional[dict[str, Any]] = None) -> Any:
            """Rank 0: write the manifest of the step (with the shards every rank wrote, if sharded)."""
            position = state["position"]
            return self.store.save(state, step=step, metrics=numbers, lossy=self.lossy, shards=section,
                                   meta={"reason": reason, "epoch": position["epoch"],
                                         "batch_in_epoch": position["batch_in_epoch"],
                                         "world_size": position["world_size"], "sharded": section is not None})

        def write() -> None:
            begun = time.perf_counter()
            try:
                if shards is None:
                    saved = commit()
                else:
                    from deepdive.engine.ckpt import dcp

                    saved = dcp.save(self.store or self._shard_store(), shards, step=step, lossy=self.lossy,
                                     commit=commit if state is not None else None, process_group=group)
                if saved is None:
                    return   # a rank other than 0: its shards are written and committed
                self.store.gc(keep_last=self.keep_last, keep_best=self.keep_best)
            except BaseException as exc:  # noqa: BLE001 - surfaced at the next save or at finish
                self._error = exc
                return
            self.saves += 1
            self.last_save = {"step": step, "reason": reason, "snapshot_s": snapshot_s,
                              "write_s": time.perf_counter() - begun, "name": saved.name,
                              "raw_bytes": saved.raw_bytes, "new_bytes": saved.new_bytes,
                              "stored_bytes": saved.stored_bytes, "sharded": shards is not None}
            self.run.event("checkpoint", **self.last_save,
                           message=f"checkpoint at step {step} ({reason}"
                                   f"{', sharded' if shards is not None else ''}): {saved.new_bytes / 1e6:.2f} MB "
                                   f"new of {saved.raw_bytes / 1e6:.2f} MB, snapshot {snapshot_s * 1e3:.0f} ms, "
                                   f"written in {self.last_save['write_s']:.2f} s")

        if self.async_save and not blocking:
            self._thread = threading.Thread(target=write, name="deepdive-checkpoint", daemon=False)
            self._thread.start()
        else:
            write()
            self._raise_error()

    def _sharded_group(self) -> Any:
        """The gloo process group sharded saves coordinate on, apart from training's (so a background
        save's collectives never interleave with the training step's); made by every rank at its
        first sharded save, which all ranks reach at the same step."""
        if self._save_group is None:
            import torch.distributed as dist

            self._save_group = dist.new_group(backend="gloo")
        return self._save_group

    def _shard_store(self) -> Store:
        """The store on a rank other than 0, opened for writing its shards (rank 0 made it at setup)."""
        if self._writer is None:
            self._writer = Store(self.directory)
        return self._writer

    def wait(self) -> None:
        """Wait for the background save; raise what it failed with."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, CheckpointError):
                raise error
            raise CheckpointError(f"checkpoint to {self.directory} failed: {type(error).__name__}: {error} "
                                  "(check free space and permissions there)") from error

    # -- the loop's hooks ------------------------------------------------------------------------

    def epoch_iterator(self, loader: Any, epoch: int) -> Iterator[Any]:
        """The epoch's batches: all of them, or after a restart the ones the checkpoint had not
        trained, in the same order and with the RNG where the save left it."""
        self.loader = loader
        self.batch_in_epoch = self.samples_in_epoch = 0
        resume = self.restored
        if resume is None or epoch != resume["epoch"]:
            self.epoch_rng = rng_state(loader)
            return iter(loader)
        self.restored = None
        set_rng_state(resume["epoch_rng"], loader)
        self.epoch_rng = rng_state(loader)
        skip = int(resume["batch_in_epoch"])
        if int(resume.get("world_size", 1)) != self.run.world_size and resume["samples_in_epoch"]:
            # elastic: skip as many samples as the old group had trained, in this group's batches
            per_batch = max(1, int(getattr(loader, "batch_size", None) or 1) * self.run.world_size)
            skip = -(-int(resume["samples_in_epoch"]) // per_batch)
        it = resume_iterator(loader, skip) if skip else iter(loader)
        self.batch_in_epoch, self.samples_in_epoch = skip, int(resume["samples_in_epoch"])
        set_rng_state(resume["rng"], loader)
        return it

    def after_step(self, batch_size: int) -> None:
        """After the user's code for a batch: count it, then save if due or stop if preempted."""
        run = self.run
        self.in_batch = False
        self.batch_in_epoch += 1
        self.samples_in_epoch += batch_size * run.world_size
        stop = self._agreed_stop()
        if stop:
            self.save(blocking=True, reason=f"preempted ({signal.Signals(stop).name})")
            run.event("preempted", signal=signal.Signals(stop).name, step=run.step_count,
                      message=f"{signal.Signals(stop).name}: step {run.step_count} saved; exiting "
                              f"{PREEMPTED_EXIT_CODE} for a restart")
            self.restore_signals()
            _leave_group()  # every rank agreed to stop: meet, then leave, so no rank's exit aborts another's
            raise SystemExit(PREEMPTED_EXIT_CODE)
        if self.every and run.step_count and run.step_count % self.every == 0:
            self.save(reason=f"every {self.every} steps")

    def epoch_ended(self) -> None:
        self.save(epoch_done=True, reason="end of epoch")

    def _agreed_stop(self) -> int:
        if not self.run.dist.distributed:
            return self._preempt
        import torch.distributed as dist

        flag = torch.tensor([self._preempt], dtype=torch.int64,
                            device=self.run.device if self.run.dist.backend == "nccl" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    # -- restoring ---------------------------------------------------------------------------------

    def restore(self) -> Optional[dict[str, Any]]:
        """Load the newest intact checkpoint into the watched objects; its position, or None (a fresh start).

        Checkpoints are tried from the most recently saved; one that does not load (a corrupt or
        missing chunk, a manifest that fails its checksum) is skipped, and the skip is said on stderr
        and in the ``resumed`` event. With ``fresh_since`` (``deepdive train --fresh``) checkpoints
        saved before it are ignored, so the job's own restarts still resume. Every checkpoint
        damaged: one :class:`CheckpointError`, one line naming the fixes.
        """
        if not self.resume_enabled:
            return None
        store = self.store
        if store is None and os.path.exists(os.path.join(self.directory, "STORE.json")):
            store = Store(self.directory, create=False)
        if store is None or not store.has_checkpoints():
            return None
        choice = newest_intact(store, since=self.fresh_since, assemble=False,
                               check=lambda name, state: self._load_shards(store, name, state))
        if choice.name is None:
            if choice.skipped:
                raise all_damaged(self.directory, choice.skipped)
            self._say_fresh(choice.ignored)
            return None
        self._load_state(choice.state)
        return self._resume_position(choice)

    def _say(self, text: str) -> None:
        """One line on stderr (rank 0): what the resume did that the user did not ask for."""
        if self.run.is_main:
            print(f"deepdive: {text}", file=sys.stderr, flush=True)

    def _say_fresh(self, ignored: list[str]) -> None:
        if not ignored:
            return
        message = (f"starting fresh: {len(ignored)} checkpoint(s) saved in {self.directory} before this job started "
                   f"are ignored (--fresh); retention deletes them once {self.keep_last} newer ones are saved")
        self._say(message)
        self.run.event("fresh_start", directory=self.directory, ignored=ignored, message=message)

    def _load_shards(self, store: Store, name: str, state: dict[str, Any]) -> None:
        """Load a sharded checkpoint's model and optimizer state into this run's layout (every rank
        takes part; see :func:`deepdive.engine.restore.load_shards`)."""
        load_shards(self.model, self.optimizer, store, name, state, distributed=self.run.dist.distributed)

    def _load_state(self, state: dict[str, Any]) -> None:
        """Put a checkpoint's state into the model, optimizer, scaler and tracked objects (a sharded
        checkpoint's model and optimizer tensors are already in: :meth:`_load_shards`)."""
        load_model_optimizer(self.model, self.optimizer, state)
        if state.get("scaler"):
            self.run.scaler.load_state_dict(state["scaler"])
        self._late_tracked = dict(state.get("tracked") or {})
        for name, obj in self.tracked.items():
            if name in self._late_tracked:
                obj.load_state_dict(self._late_tracked.pop(name))

    def _resume_position(self, choice: Any) -> dict[str, Any]:
        """Set the run's counters from the loaded checkpoint; report the resume (and any skips)."""
        run = self.run
        position = dict(choice.state["position"])
        ranks = choice.state["ranks"]
        mine = ranks[run.rank] if run.rank < len(ranks) else ranks[0]
        position["rng"], position["epoch_rng"] = mine["rng"], mine["epoch_rng"]
        saved_world = int(position.get("world_size", 1))
        self.restored = position
        run.step_count = int(position["step"])
        run.batch_index = int(position["batch_index"])
        skipped = "".join(f"; skipped {s['checkpoint']}: {s['reason']}" for s in choice.skipped)
        for s in choice.skipped:
            self._say(f"skipped checkpoint {s['checkpoint']}: {s['reason']}; resuming from {choice.name} instead "
                      f"(`deepdive ckpt verify {self.directory}` lists the damage)")
        run.event("resumed", step=run.step_count, epoch=position["epoch"], batch_in_epoch=position["batch_in_epoch"],
                  from_world_size=saved_world, world_size=run.world_size, directory=self.directory,
                  checkpoint=choice.name, skipped=choice.skipped, ignored=choice.ignored,
                  message=f"resumed after step {run.step_count} (epoch {position['epoch']}, batch "
                          f"{position['batch_in_epoch']}) from {self.directory} ({choice.name})"
                          + (f", written by {saved_world} processes" if saved_world != run.world_size else "")
                          + skipped)
        return dict(position)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.restore_signals()



def _leave_group() -> None:
    """Barrier and destroy the process group before a preempted exit.

    Left to the interpreter's exit, the gloo group of a rank that leaves first can make a peer still in
    its last collective abort (SIGABRT), and torchrun then reports that instead of the preemption."""
    from deepdive.engine import distributed as ddist

    try:
        ddist.teardown()
    except Exception as exc:  # noqa: BLE001 - the checkpoint is saved; the exit status still says preempted
        print(f"deepdive: leaving the process group after the preemption checkpoint: {exc}", file=sys.stderr)
