"""The engine's one object: :func:`setup` returns a :class:`Run` with a handful of verbs.

Example::

    import deepdive.engine as dd

    run = dd.setup(precision="auto", grad_compression="auto")
    lr = run.suggest("lr", 1e-4, 1e-1, log=True, default=3e-3)
    model, opt, loader = run.prepare(model, torch.optim.AdamW(model.parameters(), lr=lr), loader)
    for x, y in run.batches(loader, epochs=3):
        with run.autocast():
            loss = F.cross_entropy(model(x), y)
        run.backward(loss)
        run.step(opt)
        run.log(loss=loss)
    run.finish()

The same script runs under ``python`` (one process), ``torchrun`` (DDP over gloo or NCCL) and
``deepdive train``. No base class, no trainer: the loop stays the user's.

The modules
-----------
This module holds :func:`setup` and :class:`Run`'s state, its training loop, checkpoints and end;
``Run``'s other verbs live in two base classes that hold no state of their own:
:mod:`~deepdive.engine.run_prepare` (``prepare``: device, precision policy, DDP or FSDP2, the loader)
and :mod:`~deepdive.engine.run_telemetry` (per-step samples, events, the summary, the ``auto``
compression decision). :mod:`~deepdive.engine.launcher` reads what ``deepdive train`` passes through
the environment.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import time
import uuid
from typing import Any, Iterable, Iterator, Optional, Sequence

import torch
from torch import nn

from deepdive.engine import distributed as ddist
from deepdive.engine.checkpoint import Checkpointer
from deepdive.engine.compression import GradCompression
from deepdive.engine.fatal import record_fatal_errors
from deepdive.engine.fsdp import FsdpOptions
from deepdive.engine.hparams import Hyperparameters, TrialPruned, current_trial
from deepdive.engine.launcher import (ENV_GRAD_COMPRESSION, ENV_PRECISION, _fresh_since_from_env, _launcher_choice,
                                      _process_facts)
from deepdive.engine.precision import DEFAULT_FP32_MODULES, LossScaler, OverflowGuard, check_backward, resolve_precision
from deepdive.engine.precision import autocast as precision_autocast
from deepdive.engine.reporter import Reporter
from deepdive.engine.run_prepare import RunPreparation
from deepdive.engine.run_telemetry import RunTelemetry
from deepdive.engine.topology import describe_topology
from deepdive.throughput import ThroughputWindow
from deepdive.vocabulary import GRAD_COMPRESSIONS as COMPRESSIONS

__all__ = ["COMPRESSIONS", "ENV_GRAD_COMPRESSION", "ENV_PRECISION", "STRATEGIES", "Run", "setup"]

STRATEGIES = ("auto", "ddp", "fsdp", "none")


def setup(
    precision: str = "auto",
    grad_compression: str = "auto",
    strategy: str = "auto",
    *,
    keep_fp32: Optional[Sequence[type[nn.Module]]] = None,
    hysteresis: int = 1,
    overflow_check_every: int = 100,
    compression_options: Optional[dict[str, Any]] = None,
    auto_compression_steps: int = 20,
    device: str = "auto",
    backend: str = "auto",
    bucket_cap_mb: float = 25.0,
    static_graph: bool = False,
    find_unused_parameters: bool = False,
    fsdp: Optional[dict[str, Any]] = None,
    memory_budget_gb: Optional[float] = None,
    metrics_out: Optional[str] = None,
    log_every: int = 1,
    seed: Optional[int] = None,
    checkpoint_dir: Optional[str] = None,
    checkpoint_every: Optional[int] = None,
    keep_last: int = 3,
    keep_best: Optional[str] = None,
    async_checkpoint: bool = True,
    resume: bool = True,
    checkpoint_lossy: Optional[str] = None,
) -> "Run":
    """Set up a run: process group, device, precision, telemetry.

    Args:
        precision (str): ``auto`` (bf16 on GPUs with compute capability >= 8.0 and on CPUs with
            native bf16; fp16 with loss scaling on older GPUs; fp32 otherwise), ``fp32``, ``bf16``, ``fp16``.
            Left at ``auto``, ``$DEEPDIVE_PRECISION`` (``deepdive train --precision``) decides instead;
            likewise ``$DEEPDIVE_GRAD_COMPRESSION`` for ``grad_compression``.
        grad_compression (str): DDP gradient compression: ``auto`` (measure the first
            ``auto_compression_steps`` steps, compress only when communication is not hidden by
            backward), ``none``, ``fp16``, ``bf16``, ``powersgd``, ``topk``.
        strategy (str): ``auto`` (DDP, or FSDP2 when one replica's parameters, gradients and optimizer
            states do not fit one process's memory budget, measured before anything is moved; see
            ``memory_budget_gb``), ``ddp``, ``fsdp``, ``none`` (no wrapping even under torchrun).
        keep_fp32 (sequence of module classes): run in fp32 under autocast; default: normalisation layers.
        hysteresis (int): overflows in a row before the fp16 loss scale backs off (1 = every overflow).
        overflow_check_every (int): sample forward hooks every N steps to find modules that overflow
            in low precision and switch them to fp32 (0: only after an overflow).
        compression_options (dict): ``rank`` and ``warmup_steps`` for PowerSGD, ``topk_ratio`` for top-k.
        auto_compression_steps (int): steps measured before ``grad_compression="auto"`` decides.
        device (str): ``auto``, ``cpu`` or ``cuda``.
        backend (str): ``auto`` (NCCL with GPUs, else gloo), ``gloo`` or ``nccl``.
        bucket_cap_mb (float), static_graph (bool), find_unused_parameters (bool): DDP options.
        fsdp (dict): FSDP2 options (:class:`deepdive.engine.fsdp.FsdpOptions`):
            ``activation_checkpointing`` (False: recompute each block's activations in backward),
            ``cpu_offload`` (False: sharded state and the optimizer step in host memory),
            ``blocks`` (more layer classes or class names to shard one unit each; the classes held in
            ``nn.ModuleList``/``nn.ModuleDict`` and a Hugging Face model's ``_no_split_modules`` are found
            without it), ``min_unit_params`` (1,000,000: a module with at least this many parameters of
            its own, e.g. an embedding, is a unit), ``reshard_after_forward`` (True). The units, the
            mixed-precision policy (bf16 parameters with fp32 reduction when the precision is bf16) and
            the options are reported in the ``prepare`` event and ``run.strategy_reason``.
        memory_budget_gb (float): GB (10^9 bytes) one process may hold for parameters, gradients and
            optimizer states: ``strategy="auto"`` shards with FSDP2 above it. Default
            ``$DEEPDIVE_MEMORY_BUDGET_GB``, else 80 % of the GPU's memory; on the CPU without either,
            ``auto`` stays data parallel and says so.
        metrics_out (str): also write telemetry to this JSONL file (rank 0's; other ranks add ``.rankN``).
        log_every (int): telemetry period in steps.
        seed (int): seed torch (the same on every rank) for reproducible runs; ``run.seed`` says which.
            Under ``deepdive tune`` the trial's seed replaces it (the study's ``--seed``, or a ``--confirm``
            re-training's fresh one), so seed anything else a run should vary by (a DataLoader's
            shuffling) from ``run.seed``, and what must stay fixed (a data split) from your own.
        checkpoint_dir (str): checkpoint the complete training state into this store
            (:mod:`deepdive.engine.checkpoint`): at the end of every epoch, every ``checkpoint_every``
            steps, on :meth:`Run.checkpoint`, and on SIGTERM/SIGINT (then exit with status 75 for
            ``torchrun --max-restarts`` to restart). The next run with the same folder resumes at
            the exact next batch. Default: ``$DEEPDIVE_CHECKPOINT_DIR``, else no checkpoints.
        checkpoint_every (int): also save every this many optimizer steps.
        keep_last (int), keep_best (str): retention: the last K checkpoints plus the best by a
            logged metric (``"val_acc:max"``, ``"val_loss:min"``; a bare name: max unless it looks
            like a loss); unreferenced chunks are deleted.
        async_checkpoint (bool): copy the state to CPU memory at the step and write it in a
            background thread (False: training waits for the write).
        resume (bool): resume from the newest intact checkpoint in ``checkpoint_dir`` when there is
            one: a newer one that does not load (a corrupt chunk, a manifest that fails its checksum)
            is skipped and named on stderr and in the ``resumed`` event; when none loads,
            :class:`~deepdive.engine.ckpt.CheckpointError`. ``False``: start from step 0 in every
            attempt, torchrun's restarts included. ``deepdive train --fresh`` instead sets
            ``$DEEPDIVE_CHECKPOINT_FRESH_SINCE`` (the job's start, Unix time): checkpoints saved before
            it are ignored, those the job saves are resumed from after a restart.
        checkpoint_lossy (str): ``None`` (bit-exact, the default), ``"bf16"`` or ``"int8-delta"``:
            smaller checkpoints of float tensors of at least 4096 values, at the price of an inexact
            resume (see :meth:`deepdive.engine.ckpt.Store.save`).

    Raises:
        ValueError: an unknown option value, with the allowed ones.
    """
    record_fatal_errors()  # under torchrun: the exception that ends this worker goes to its error file
    precision = _launcher_choice("precision", precision, ENV_PRECISION)
    grad_compression = _launcher_choice("grad_compression", grad_compression, ENV_GRAD_COMPRESSION)
    trial = current_trial()
    if seed is not None and trial is not None and trial.seed is not None:
        seed = trial.seed  # a tune trial's training seed: --confirm's fresh seeds must reach a self-seeding script
    return Run(precision=precision, grad_compression=grad_compression, strategy=strategy, keep_fp32=keep_fp32,
               hysteresis=hysteresis, overflow_check_every=overflow_check_every,
               compression_options=compression_options or {}, auto_compression_steps=auto_compression_steps,
               device=device, backend=backend, bucket_cap_mb=bucket_cap_mb, static_graph=static_graph,
               find_unused_parameters=find_unused_parameters, fsdp=fsdp, memory_budget_gb=memory_budget_gb,
               metrics_out=metrics_out, log_every=log_every,
               seed=seed, checkpoint=dict(directory=checkpoint_dir or os.environ.get("DEEPDIVE_CHECKPOINT_DIR") or None,
                                          every=checkpoint_every, keep_last=keep_last, keep_best=keep_best,
                                          async_save=async_checkpoint, resume=resume, lossy=checkpoint_lossy,
                                          fresh_since=_fresh_since_from_env()))


class Run(RunPreparation, RunTelemetry):
    """A training run. Create it with :func:`setup`."""

    def __init__(self, *, precision: str, grad_compression: str, strategy: str,
                 keep_fp32: Optional[Sequence[type[nn.Module]]], hysteresis: int, overflow_check_every: int,
                 compression_options: dict[str, Any], auto_compression_steps: int, device: str, backend: str,
                 bucket_cap_mb: float, static_graph: bool, find_unused_parameters: bool,
                 metrics_out: Optional[str], log_every: int, seed: Optional[int],
                 checkpoint: Optional[dict[str, Any]] = None, fsdp: Optional[dict[str, Any]] = None,
                 memory_budget_gb: Optional[float] = None):
        if grad_compression not in COMPRESSIONS:
            raise ValueError(f"grad_compression must be one of {', '.join(COMPRESSIONS)}, got {grad_compression!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if log_every < 1 or auto_compression_steps < 2 or overflow_check_every < 0:
            raise ValueError("log_every >= 1, auto_compression_steps >= 2 and overflow_check_every >= 0, please")
        unknown = set(compression_options) - {"rank", "warmup_steps", "topk_ratio"}
        if unknown:
            raise ValueError(f"unknown compression_options {sorted(unknown)}: use rank, warmup_steps, topk_ratio")
        if seed is not None:
            torch.manual_seed(seed)
        self.seed = seed
        """The seed torch was given (``setup(seed=...)``, or a tune trial's in its place), None when none was."""
        self.dist = ddist.init_from_env(device, backend)
        self.device = self.dist.device
        self.plan = resolve_precision(precision, self.device)
        self.scaler = LossScaler(self.plan.device_type, self.plan.needs_loss_scaling, hysteresis=hysteresis)
        self.hparams = Hyperparameters()
        self.run_id = (os.environ.get("DEEPDIVE_RUN_ID") or os.environ.get("DEEPDIVE_JOB_ID")
                       or os.environ.get("TORCHELASTIC_RUN_ID") or uuid.uuid4().hex[:12])
        if metrics_out and not self.dist.is_main:
            metrics_out = f"{metrics_out}.rank{self.dist.rank}"
        self.reporter = Reporter.from_env(self.run_id, self.dist.rank, metrics_out)
        self.topology = describe_topology()

        self._options = dict(
            keep_fp32=tuple(DEFAULT_FP32_MODULES if keep_fp32 is None else keep_fp32),
            overflow_check_every=overflow_check_every, compression=grad_compression,
            compression_options=compression_options, auto_steps=auto_compression_steps, strategy=strategy,
            ddp=dict(bucket_cap_mb=bucket_cap_mb, static_graph=static_graph,
                     find_unused_parameters=find_unused_parameters),
            fsdp=FsdpOptions.from_dict(fsdp), memory_budget_gb=memory_budget_gb,
        )
        ddist.memory_budget(self.dist, memory_budget_gb)  # a bad budget fails here, not at prepare
        self.log_every = log_every
        self.strategy = "none"
        self.strategy_reason = "single process"
        self.compression: Optional[GradCompression] = None
        self.compression_reason = "single process: nothing to communicate"
        self.guard: Optional[OverflowGuard] = None
        self.kept_fp32: list[str] = []

        self.step_count = 0
        self.batch_index = -1  # the batch being processed, counted over the whole run
        self.epoch = 0
        self._epochs_started = 0  # across batches() calls
        self.total_steps: Optional[int] = None
        self._metrics: dict[str, Any] = {}
        self._loss: Optional[torch.Tensor] = None
        self._step_start: Optional[float] = None
        self._data_wait = 0.0
        self._batch_size = 0
        self._step_times: list[float] = []
        self._throughput = ThroughputWindow(self.dist.world_size)  # samples/s: the one definition
        self._comm: dict[str, Any] = {}
        self._comm_history: list[dict[str, Any]] = []
        self._lr: Optional[float] = None
        self._evidence: dict[str, Any] = {}
        self._trial_from: Optional[int] = None
        self._finished = False
        self._last_metrics: dict[str, Any] = {}
        self.ckpt: Optional[Checkpointer] = None
        self._resume: Optional[dict[str, Any]] = None
        self._restore_checked = False
        if checkpoint and checkpoint.get("directory"):
            options = dict(checkpoint)
            self.ckpt = Checkpointer(self, options.pop("directory"), **options)
        atexit.register(self._atexit)

        self.event("setup", precision=self.plan.mode, precision_reason=self.plan.reason,
                   world_size=self.dist.world_size, backend=self.dist.backend, device=str(self.device),
                   topology=self.topology.get("summary"), link=self.topology.get("link"), **_process_facts())

    # -- properties -----------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def precision(self) -> str:
        return self.plan.mode

    # -- hyperparameters ------------------------------------------------------------------------

    def suggest(self, name: str, low: Any = None, high: Any = None, *, default: Any = None, log: bool = False,
                step: Optional[float] = None, choices: Optional[Sequence[Any]] = None) -> Any:
        """A hyperparameter: its default here, the trial's value under ``deepdive tune``."""
        return self.hparams.suggest(name, low, high, default=default, log=log, step=step, choices=choices)

    # -- checkpoints ----------------------------------------------------------------------------

    def track(self, **objects: Any) -> None:
        """Save and restore these objects with the checkpoints (``run.track(scheduler=sched)``): anything
        with ``state_dict()`` and ``load_state_dict()``: LR schedulers, an EMA of the weights, a
        custom sampler. Call it before the first ``run.batches``; a resumed run loads them there."""
        if self.ckpt is not None:
            self.ckpt.watch(**objects)

    def checkpoint(self, metrics: Optional[dict[str, Any]] = None, blocking: bool = False) -> None:
        """Save a checkpoint now (every process calls it at the same step), e.g. after an evaluation
        with its ``metrics`` for ``keep_best`` (the metrics logged since the previous checkpoint count
        too). At the end of the loop's body it records the batch as trained. Asynchronous unless ``blocking``. Raises ValueError without ``checkpoint_dir``."""
        if self.ckpt is None:
            raise ValueError("no checkpoint store: pass checkpoint_dir='ckpt' to dd.setup (or set DEEPDIVE_CHECKPOINT_DIR)")
        self.ckpt.save(metrics=metrics, blocking=blocking, reason="asked for")

    @property
    def resumed_step(self) -> Optional[int]:
        """The step this run resumed after (None: a fresh start, or no checkpoint_dir)."""
        self._restore_once(need_model=True)
        return int(self._resume["step"]) if self._resume else None

    @property
    def start_epoch(self) -> int:
        """The epoch a resumed run continues in (0 on a fresh start): ``for epoch in range(run.start_epoch, E)``."""
        self._restore_once(need_model=True)
        return int(self._resume["epoch"]) if self._resume else 0

    def _restore_once(self, need_model: bool = False) -> None:
        if self.ckpt is not None and not self._restore_checked:
            if need_model and self.ckpt.model is None:
                raise ValueError("call run.prepare(model, optimizer, ...) first: a resumed run loads them when it "
                                 "finds where it stopped")
            self._restore_checked = True
            self._resume = self.ckpt.restore()

    # -- the loop -------------------------------------------------------------------------------

    def batches(self, loader: Iterable[Any], epochs: int = 1) -> Iterator[Any]:
        """Iterate ``epochs`` times over ``loader``, batches moved to the device; times every step.

        Calling it once per epoch (``for epoch in ...: for b in run.batches(loader)``) works too:
        epochs count on across calls, so a DistributedSampler reshuffles each epoch.
        """
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        try:
            self.total_steps = len(loader) * epochs  # type: ignore[arg-type]
        except TypeError:
            self.total_steps = None
        self._restore_once()
        ckpt = self.ckpt
        first = self._epochs_started
        for epoch in range(first, first + epochs):
            self._epochs_started = epoch + 1
            if self._resume is not None and epoch < self._resume["epoch"]:
                continue  # trained before the restart
            self.epoch = epoch
            sampler = getattr(loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)  # type: ignore[union-attr]
            waited_from = time.perf_counter()
            for batch in (ckpt.epoch_iterator(loader, epoch) if ckpt is not None else loader):
                self.batch_index += 1
                self._step_start = time.perf_counter()
                self._data_wait = self._step_start - waited_from
                batch = _to_device(batch, self.device)
                self._batch_size = _batch_size(batch)
                if ckpt is not None:
                    ckpt.in_batch = True
                yield batch
                self._end_step()
                if ckpt is not None:
                    ckpt.after_step(self._batch_size)
                waited_from = time.perf_counter()
            if ckpt is not None:
                ckpt.epoch_ended()

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision for the forward pass (and the loss), per the run's precision plan."""
        if self.guard is not None:
            self.guard.before_forward(self.step_count)
        with precision_autocast(self.plan):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        """Backward with loss scaling; communication is measured when the model is DDP-wrapped."""
        if self.guard is not None:
            self.guard.after_forward(self.step_count)
        self._loss = loss.detach()
        if self.compression is not None:
            self.compression.stats.begin_step()
        self.scaler.scale_loss(loss).backward()
        if self.compression is not None:
            self._comm = self.compression.stats.end_step()
            self._comm_history.append(self._comm)

    def step(self, optimizer: torch.optim.Optimizer, clip_grad_norm: Optional[float] = None) -> bool:
        """Optimizer step (skipped when fp16 gradients overflowed), then zero the gradients.

        Returns:
            bool: True when the step was skipped because of an overflow.

        Raises:
            RuntimeError: the loss of this step did not go through ``run.backward`` under fp16 loss
                scaling or DDP (:func:`deepdive.engine.precision.check_backward`), in one line.
        """
        warning = check_backward(self.scaler, optimizer, measures_comm=self.compression is not None)
        if warning is not None and self.is_main:
            print(f"deepdive: {warning}", file=sys.stderr, flush=True)
        if clip_grad_norm is not None:
            self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
        skipped = self.scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        if skipped:
            if self.guard is not None:
                self.guard.overflowed()
            self.event("overflow", step=self.step_count, loss_scale=self.scaler.scale,
                       skipped_steps=self.scaler.skipped_steps)
        self._lr = optimizer.param_groups[0].get("lr")
        self.step_count += 1
        if self._options["compression"] == "auto" and self.compression is not None:
            if self.step_count == self._options["auto_steps"]:
                self._decide_compression()
            elif self._trial_from is not None:
                self._judge_trial()
        return skipped

    def log(self, **metrics: Any) -> None:
        """Record metrics of this step (tensors are read only when telemetry is on).

        Under ``deepdive tune``, the study's metric (``--metric``) is also reported to the search as
        an intermediate value at step *n*, the number of earlier reports of that metric: a script
        that evaluates once per epoch reports at its epoch index, so the pruner compares trials at
        equal training whatever their batch size (optimizer steps would not be comparable when the
        batch size is searched). The last value reported is the trial's value (the best one with
        ``deepdive tune --value best``). When the pruner
        stops the trial this raises :class:`deepdive.engine.hparams.TrialPruned`.
        """
        self._metrics.update(metrics)
        if self.ckpt is not None:
            for name, value in metrics.items():  # for keep_best; a tensor is read only when a save needs it
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._last_metrics[name] = value
                elif isinstance(value, torch.Tensor) and value.numel() == 1:
                    self._last_metrics[name] = value.detach()
        binding = self.hparams.binding
        if binding is not None and binding.metric in metrics:
            self._report_trial(binding, metrics[binding.metric])

    def _report_trial(self, binding: Any, raw: Any) -> None:
        value = float(raw.detach()) if isinstance(raw, torch.Tensor) else float(raw)
        step = binding.reports
        binding.reports += 1
        binding.record(value)
        if binding.report is None:
            return
        if binding.report(step, value):
            raise TrialPruned(f"pruned at step {step} ({binding.metric} {value:.6g})")

    # -- the end --------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Report the summary, flush telemetry, leave the process group. Safe to call twice."""
        if self._finished:
            return self.summary()
        self._finished = True
        if self.ckpt is not None:
            self.ckpt.close()  # the last background save is on disk before the process group goes
        summary = self.summary()
        binding = self.hparams.binding
        if binding is not None and binding.last is None and isinstance(summary.get(binding.metric), (int, float)):
            binding.record(float(summary[binding.metric]))  # under `deepdive tune`: the summary's figure
        self.event("summary", **summary)
        self.reporter.close()
        ddist.teardown()
        return summary

    def _atexit(self) -> None:
        if not self._finished:
            self._finished = True
            if self.ckpt is not None:
                try:
                    self.ckpt.close()
                except Exception as exc:  # noqa: BLE001 - the process is ending: say it, do not mask the exit
                    print(f"deepdive: {exc}", file=sys.stderr)
            self.reporter.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else 1
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return 0
