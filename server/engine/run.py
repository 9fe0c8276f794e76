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
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import statistics
import sys
import time
import uuid
from typing import Any, Iterable, Iterator, Optional, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from deepdive.engine import distributed as ddist
from deepdive.engine.checkpoint import Checkpointer
from deepdive.engine.compression import GradCompression, decide_auto
from deepdive.engine.fatal import record_fatal_errors
from deepdive.engine.fsdp import FsdpOptions, rebind_optimizer, require_forward, shard
from deepdive.engine.hparams import Hyperparameters, TrialPruned
from deepdive.engine.materialize import InitFn, Weights, init_empty, materialize, shared_seed
from deepdive.engine.precision import (
    DEFAULT_FP32_MODULES, LossScaler, OverflowGuard, Promotion, check_backward, keep_in_fp32, resolve_precision,
)
from deepdive.engine.precision import autocast as precision_autocast
from deepdive.engine.reporter import Reporter
from deepdive.engine.topology import describe_topology
from deepdive.throughput import ThroughputWindow
from deepdive.vocabulary import GRAD_COMPRESSIONS as COMPRESSIONS

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
        seed (int): seed torch (the same on every rank) for reproducible runs.
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


#: Set by ``deepdive train --precision`` / the editor's *Train…*: used where the script leaves ``"auto"``.
ENV_PRECISION = "DEEPDIVE_PRECISION"
#: Set by ``deepdive train --grad-compression`` / *Train…*: used where the script leaves ``"auto"``.
ENV_GRAD_COMPRESSION = "DEEPDIVE_GRAD_COMPRESSION"


def _launcher_choice(name: str, value: str, variable: str) -> str:
    """The script's own choice, else (where it left ``"auto"``) the launcher's from ``variable``.

    A script that fixes a value keeps it; when the launcher asked for another, stderr says which won."""
    asked = os.environ.get(variable, "").strip()
    if not asked or asked == value:
        return value
    if value == "auto":
        return asked
    print(f"deepdive: {variable}={asked} ignored: the script fixes {name}={value!r} in dd.setup() "
          f"(pass {name}=\"auto\" there to let the launcher choose)", file=sys.stderr, flush=True)
    return value


def _process_facts() -> dict[str, Any]:
    """Which script this is and where it runs: the editor lists a run started in a terminal by these."""
    import socket

    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else ""
    return {"script": os.path.abspath(script) if script else "", "argv": [str(a) for a in sys.argv[1:21]],
            "pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd()}


def _fresh_since_from_env() -> Optional[float]:
    """``$DEEPDIVE_CHECKPOINT_FRESH_SINCE`` (set by ``deepdive train --fresh``): a Unix time, or None.

    Raises:
        ValueError: it is set to something other than a number of seconds.
    """
    value = os.environ.get("DEEPDIVE_CHECKPOINT_FRESH_SINCE", "").strip()
    if not value:
        return None
    try:
        since: Optional[float] = float(value)
    except ValueError:
        since = None
    if since is None or not math.isfinite(since):
        raise ValueError(f"DEEPDIVE_CHECKPOINT_FRESH_SINCE must be a Unix time in seconds (deepdive train --fresh "
                         f"sets it to the job's start), not {value!r}")
    return since


class Run:
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

    # -- prepare --------------------------------------------------------------------------------

    def prepare(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
                loader: Optional[DataLoader] = None, *, init: Optional[InitFn] = None,
                weights: Optional[Weights] = None) -> Any:
        """Put the model on the device with its precision policy, wrap it for DDP/FSDP, shard the loader.

        Returns the objects given, in the same order (the model alone when only it is given). Use
        the returned ones. Where prepare replaces parameters (FSDP2 shards, a model built on ``meta``)
        the optimizer's groups are pointed at the new ones.

        A model built under :meth:`init_empty` (parameters on ``meta``) is allocated here: under FSDP2
        one unit at a time, each sharded before the next is allocated, so no process holds the whole
        model; otherwise in one piece. Each module built on meta is initialised by ``init(module)``,
        else its Hugging Face model's ``_init_weights``, else its ``reset_parameters()``, seeded from the
        run's seed and the module's name (the same weights at any world size), unless ``weights`` has
        its tensors.

        Args:
            init (callable): ``init(module)`` for each module built on meta, in place of its own init.
            weights (str | Path | dict): a full state dict of the model (a ``torch.save`` file, read
                memory-mapped, a ``.safetensors`` file, or the dict), loaded tensor by tensor into each
                unit before it is sharded; every parameter and persistent buffer must be in it.

        Raises:
            ValueError: compression asked for with FSDP; an optimizer that already stepped or holds
                parameters the model does not have; a model without forward() or already wrapped; a
                module on meta that nothing initialises; weights that are not this model's.
            RuntimeError: FSDP2 refused to shard a module, with the fix.
        """
        require_forward(model)
        names = {id(p): name for name, p in model.named_parameters()}
        self.guard = None
        self.kept_fp32 = []
        if self.plan.autocast_enabled:
            self.kept_fp32 = keep_in_fp32(model, self._options["keep_fp32"], self.plan.device_type)
            self.guard = OverflowGuard(model, self.plan.device_type, self._options["overflow_check_every"],
                                       self._on_promote)
        placed: dict[str, Any] = {}
        if self.dist.distributed and self._options["strategy"] != "none":
            model, placed = self._wrap(model, optimizer, init, weights)
        else:
            materialised = materialize(model, self.device, init=init, weights=weights)
            placed = {"materialised": materialised} if materialised else {}
            model = model.to(self.device)
        if optimizer is not None:
            bare = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
            rebind_optimizer(optimizer, names, bare)
        if loader is not None and self.dist.distributed:
            loader = self._shard(loader)
        self.event("prepare", strategy=self.strategy, strategy_reason=self.strategy_reason,
                   compression=self.compression.mode if self.compression else "none",
                   compression_reason=self.compression_reason, kept_fp32=self.kept_fp32,
                   parameters=sum(p.numel() for p in model.parameters()), **placed)
        if self.ckpt is not None:
            self.ckpt.watch(model, optimizer)
        given = [obj for obj in (model, optimizer, loader) if obj is not None]
        return given[0] if len(given) == 1 else tuple(given)

    def init_empty(self) -> contextlib.AbstractContextManager[None]:
        """Build a model too big for one process: ``with run.init_empty(): model = Net()`` puts its
        parameters on the ``meta`` device (no memory; buffers stay real) and :meth:`prepare` allocates
        them (see :func:`deepdive.engine.materialize.init_empty`)."""
        return init_empty()

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

    def _wrap(self, model: nn.Module, optimizer: Optional[torch.optim.Optimizer], init: Optional[InitFn],
              weights: Optional[Weights]) -> tuple[nn.Module, dict[str, Any]]:
        """DDP or FSDP2, decided from the bytes one replica needs, measured before anything is moved."""
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise ValueError("run.prepare got a model already wrapped in DistributedDataParallel: pass the bare model; "
                             "prepare wraps it")
        requested = self._options["strategy"]
        fits, why = ddist.fits_one_device(model, self.dist, optimizer, self._options["memory_budget_gb"])
        if requested == "fsdp" or (requested == "auto" and not fits):
            if self._options["compression"] not in ("auto", "none"):
                raise ValueError("gradient compression hooks are for DDP: use strategy='ddp' or grad_compression='none'")
            report = shard(model, self.dist, self._options["fsdp"], self.plan,
                           fp32_classes=self._options["keep_fp32"], init=init, weights=weights)
            if report.casts_parameters:
                self.guard = None  # bf16 has fp32's range: nothing to promote, and gathered weights are bf16
            chosen = "asked for" if requested == "fsdp" else f"the model does not fit one process: {why}"
            self.strategy = "fsdp"
            self.strategy_reason = f"{chosen}; {report.summary()}"
            self.compression_reason = "FSDP shards gradients with reduce-scatter: no DDP compression hook"
            return model, {"fsdp": report.describe()}
        self.strategy = "ddp"
        self.strategy_reason = ("asked for" if requested == "ddp"
                                else f"data parallel: the model fits one process ({why})")
        materialised = materialize(model, self.device, init=init, weights=weights, seed=shared_seed(self.dist))
        model = ddist.wrap_ddp(model.to(self.device), self.dist, **self._options["ddp"])
        requested_compression = self._options["compression"]
        mode = "none" if requested_compression == "auto" else requested_compression
        self.compression = GradCompression(mode, **self._options["compression_options"])
        self.compression.register(model)
        self.compression_reason = (
            f"measuring the first {self._options['auto_steps']} steps before deciding"
            if requested_compression == "auto" else "asked for"
        )
        return model, {"materialised": materialised} if materialised else {}

    def _shard(self, loader: DataLoader) -> DataLoader:
        if isinstance(loader.sampler, DistributedSampler):
            return loader
        if loader.batch_sampler is not None and not hasattr(loader.batch_sampler, "batch_size"):
            raise ValueError("a custom batch_sampler cannot be sharded automatically: give it a DistributedSampler")
        sampler = DistributedSampler(loader.dataset, num_replicas=self.world_size, rank=self.rank,
                                     shuffle=isinstance(loader.sampler, RandomSampler),
                                     seed=torch.initial_seed() % 2**31, drop_last=loader.drop_last)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                          num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                          pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                          persistent_workers=loader.persistent_workers if loader.num_workers else False)

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

    # -- telemetry ------------------------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> None:
        """A rare, important message (on rank 0) for the dashboard and the metrics file."""
        if self.reporter.enabled and self.is_main:
            self.reporter.event(kind, **fields)

    def _on_promote(self, promotion: Promotion) -> None:
        self.event("promotion", module=promotion.module, module_type=promotion.module_type, step=promotion.step,
                   message=f"{promotion.module} ({promotion.module_type}) overflowed in {self.plan.mode}: "
                           "it runs in fp32 from now on")

    def _end_step(self) -> None:
        if self._step_start is None:
            return
        sampled = self.reporter.enabled and self.batch_index % self.log_every == 0
        if sampled and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        step_time = time.perf_counter() - self._step_start
        self._step_times.append(step_time)
        self._throughput.add(self._batch_size, self._data_wait + step_time)
        if self.hparams.binding is not None:
            self.hparams.binding.step_seconds += step_time
        if sampled:
            self.reporter.record(self._sample(step_time))
        self._metrics = {}

    def _sample(self, step_time: float) -> dict[str, Any]:
        sample: dict[str, Any] = {
            "step": self.batch_index, "epoch": self.epoch, "total_steps": self.total_steps,
            "step_time_s": step_time, "data_wait_s": self._data_wait,
            **self._throughput.figures(),  # samples/s over the last 10 s, all ranks, loader wait included
            "lr": self._lr, "loss_scale": self.scaler.scale,
            "skipped_steps": self.scaler.skipped_steps, "precision": self.plan.mode,
        }
        if self._loss is not None and "loss" not in self._metrics:
            sample["loss"] = float(self._loss)
        for key, value in self._metrics.items():
            sample[key] = float(value.detach()) if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        sample.update(self._comm)
        sample.update(_memory(self.device))
        return sample

    def _decide_compression(self) -> None:
        """Decide from the measured steps (the same decision on every rank: figures are averaged)."""
        assert self.compression is not None
        measured = self._comm_history[1:] or self._comm_history  # the first step builds buckets
        times = self._step_times[1:] or self._step_times
        local = {
            "step_time_s": statistics.fmean(times),
            "comm_time_s": statistics.fmean(c["comm_time_s"] for c in measured),
            "comm_exposed_s": statistics.fmean(c["comm_exposed_s"] for c in measured),
            "comm_bytes_uncompressed": statistics.fmean(c["comm_bytes_uncompressed"] for c in measured),
        }
        evidence: dict[str, Any] = ddist.all_mean(local, self.dist)
        evidence.update(backend=self.dist.backend, world_size=self.world_size, link=self.topology.get("link"))
        mode, reason = decide_auto(evidence)
        self._evidence = evidence
        if mode != self.compression.mode:
            self.compression.set_mode(mode, **self._options["compression_options"])
            # on trial: kept only if the compressed steps are measurably shorter
            self._trial_from = len(self._step_times)
        self.compression_reason = reason
        self.event("compression", mode=mode, reason=reason, evidence=evidence, step=self.step_count,
                   trial=mode != "none")

    def _judge_trial(self) -> None:
        """After the trial steps with compression on: keep it only if it shortened the step."""
        assert self.compression is not None and self._trial_from is not None
        trial = [t for t, c in zip(self._step_times[self._trial_from:], self._comm_history[self._trial_from:])
                 if not c.get("comm_warmup")]
        if len(trial) < max(3, self._options["auto_steps"] // 2):
            return
        figures = ddist.all_mean({"step_time_s": statistics.fmean(trial)}, self.dist)
        mode, reason = decide_auto(self._evidence, trial=figures)
        self._trial_from = None
        if mode != self.compression.mode:
            self.compression.set_mode(mode, **self._options["compression_options"])
        self.compression_reason = reason
        self.event("compression", mode=mode, reason=reason, evidence={**self._evidence, "trial": figures},
                   step=self.step_count, trial=False)

    # -- the end --------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The run's figures so far."""
        times = self._step_times[2:] or self._step_times
        comm = self._comm_history[2:] or self._comm_history
        mean_step = statistics.fmean(times) if times else None
        out: dict[str, Any] = {
            "run": self.run_id, "steps": self.step_count, "epochs": self.epoch + 1 if self.step_count else 0,
            "world_size": self.world_size, "backend": self.dist.backend, "device": str(self.device),
            "topology": self.topology.get("summary"), "strategy": self.strategy,
            "precision": self.plan.mode, "precision_reason": self.plan.reason,
            "mean_step_time_s": mean_step,
            **self._throughput.figures(),  # the same figure as the last sample's
            "final_loss": float(self._loss) if self._loss is not None else None,
            "skipped_steps": self.scaler.skipped_steps, "loss_scale": self.scaler.scale,
            "scale_changes": self.scaler.scale_changes,
            "promoted_to_fp32": [p.module for p in self.guard.promotions] if self.guard else [],
            "kept_fp32": self.kept_fp32,
            "compression": self.compression.mode if self.compression else "none",
            "compression_reason": self.compression_reason,
        }
        if comm:
            for key in ("comm_bytes_uncompressed", "comm_bytes_sent", "comm_time_s", "comm_overlap"):
                out[f"{key}_per_step"] = statistics.fmean(c[key] for c in comm)
        out.update(_memory(self.device))
        return out

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


def _memory(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        stats = torch.cuda.memory_stats(device)
        return {
            "mem_allocated_mib": stats.get("allocated_bytes.all.current", 0) / 2**20,
            "mem_reserved_mib": stats.get("reserved_bytes.all.current", 0) / 2**20,
            "mem_peak_mib": stats.get("allocated_bytes.all.peak", 0) / 2**20,
            # the caching allocator freed its cache and retried a cudaMalloc: memory pressure
            "alloc_retries": stats.get("num_alloc_retries", 0),
        }
    import psutil

    return {"mem_rss_mib": psutil.Process().memory_info().rss / 2**20}
