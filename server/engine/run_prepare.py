"""The ``prepare`` half of :class:`deepdive.engine.run.Run`: device, precision policy, DDP or FSDP2, the loader.

:class:`RunPreparation` is a base class of ``Run`` and holds no state of its own: its methods use the
attributes ``Run.__init__`` sets (``dist``, ``device``, ``plan``, ``_options``, ``ckpt``, ...). It is a
module of its own because choosing and applying the strategy (measuring the bytes one replica needs,
sharding, materialising a model built on ``meta``, registering the compression hook) is a concern
apart from the training loop.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from deepdive.engine import distributed as ddist
from deepdive.engine.compression import GradCompression
from deepdive.engine.fsdp import rebind_optimizer, require_forward, shard
from deepdive.engine.materialize import InitFn, Weights, init_empty, materialize, shared_seed
from deepdive.engine.precision import OverflowGuard, keep_in_fp32


class RunPreparation:
    """``Run.prepare`` and what it needs; see the module docstring."""

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
