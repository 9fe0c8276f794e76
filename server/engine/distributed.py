"""Process groups and model wrapping: the same script under `python`, `torchrun` and `deepdive train`.

The process group comes from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``): NCCL when the process has a GPU, gloo otherwise. Every collective
is bounded by the group's timeout, and :func:`teardown` meets at a barrier before destroying the
group, so no process is left waiting for a peer that already left.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Optional

import attrs
import torch
import torch.distributed as dist
from torch import nn

from deepdive.vocabulary import DEVICES

DEFAULT_TIMEOUT_S = 300.0


@attrs.define
class DistInfo:
    """Where this process stands.

    Attributes:
        rank (int): global rank.
        local_rank (int): rank on this node.
        world_size (int): number of processes.
        backend (str | None): ``gloo``, ``nccl`` or None when not distributed.
        device (torch.device): the device this process computes on.
    """

    rank: int
    local_rank: int
    world_size: int
    backend: Optional[str]
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def init_from_env(device: str = "auto", backend: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistInfo:
    """Join torchrun's process group when there is one; pick this process's device.

    Args:
        device (str): ``auto`` (the local GPU when CUDA is available, else the CPU), ``cpu``, ``cuda``.
        backend (str): ``auto`` (NCCL with GPUs, gloo otherwise), ``gloo`` or ``nccl``.
        timeout_s (float): limit on every collective.

    Raises:
        ValueError: an unknown device or backend, or CUDA asked for where there is none.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if backend not in ("auto", "gloo", "nccl"):
        raise ValueError(f"backend must be auto, gloo or nccl, got {backend!r}")
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device: use device='auto' or 'cpu'")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if world <= 1:
        return DistInfo(rank=0, local_rank=0, world_size=1, backend=None, device=dev)
    chosen = ("nccl" if use_cuda else "gloo") if backend == "auto" else backend
    if chosen == "nccl" and not use_cuda:
        raise ValueError("backend='nccl' needs GPUs: use backend='gloo' on the CPU")
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": chosen, "timeout": timedelta(seconds=timeout_s)}
        if use_cuda:
            kwargs["device_id"] = dev
        store = _attempt_store(world, timeout_s)
        if store is not None:
            kwargs.update(store=store, rank=rank, world_size=world)
        dist.init_process_group(**kwargs)
    return DistInfo(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(),
                    backend=dist.get_backend(), device=dev)


def _attempt_store(world: int, timeout_s: float) -> Optional[dist.Store]:
    """Under torchrun, the agent's store with a prefix per restart of the worker group.

    ``init_process_group("env://")`` reuses the agent's store as is; after ``--max-restarts``
    restarted the group (a preemption checkpoint exits with status 75), gloo then reads the
    previous attempt's addresses and fails ("connectFullMesh ... Connection refused"; seen with
    torch 2.13). A key prefix per attempt keeps the rounds apart."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "MASTER_ADDR" not in os.environ:
        return None
    attempt = _env_int("TORCHELASTIC_RESTART_COUNT", 0)
    client = dist.TCPStore(os.environ["MASTER_ADDR"], _env_int("MASTER_PORT", 29500), world, is_master=False,
                           timeout=timedelta(seconds=timeout_s))
    return dist.PrefixStore(f"deepdive/attempt_{attempt}", client)


def teardown() -> None:
    """Barrier, then destroy the process group (a no-op when not distributed).

    With gloo the ranks then leave one at a time, in rank order, through the group's store: gloo
    closes its connections with a reset, and a rank whose own teardown runs while a peer's reset
    arrives can abort (SIGABRT; seen under torchrun on a loaded 2-core machine, where the report
    then named the abort instead of the preemption's exit status). Each rank destroys its group
    while the others wait on the store, not in gloo, and rank 0 (which may host the store) leaves
    last."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    store = _store_for_leaving()
    try:
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    if store is None:
        dist.destroy_process_group()
        return
    leave_in_turn(store, dist.get_rank(), dist.get_world_size(), dist.destroy_process_group)


def _store_for_leaving() -> Optional[dist.Store]:
    if dist.get_backend() != "gloo" or dist.get_world_size() < 2:
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):  # no store to meet on: leave together after the barrier
        return None


def leave_in_turn(store: dist.Store, rank: int, world: int, leave: Any) -> None:
    """Call ``leave`` on each rank in rank order; every rank returns once the last has left.

    A round number from the store keeps a later teardown on the same store apart from this one."""
    round_ = (int(store.add("deepdive/leave/arrived", 1)) - 1) // world

    def key(r: int) -> str:
        return f"deepdive/leave/{round_}/{r}"

    if rank > 0:
        store.wait([key(rank - 1)])
    try:
        leave()
    finally:
        store.set(key(rank), b"1")
    if rank == 0:
        store.wait([key(world - 1)])  # the store may live in this process: stay until every rank has left


def wrap_ddp(model: nn.Module, info: DistInfo, *, bucket_cap_mb: float = 25.0, gradient_as_bucket_view: bool = True,
             static_graph: bool = False, find_unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on ``info.device``)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=device_ids, bucket_cap_mb=bucket_cap_mb,
               gradient_as_bucket_view=gradient_as_bucket_view, static_graph=static_graph,
               find_unused_parameters=find_unused_parameters)


#: Optimizer state tensors per trainable parameter, by class (options that add one are counted where used).
OPTIMIZER_STATES = {"SGD": 0, "Adam": 2, "AdamW": 2, "NAdam": 2, "RAdam": 2, "Adamax": 2, "Adadelta": 2,
                    "Rprop": 2, "Adagrad": 1, "RMSprop": 1, "ASGD": 1, "SparseAdam": 2}
#: A memory budget per process in GB (10^9 bytes), where ``dd.setup(memory_budget_gb=...)`` leaves it open.
ENV_MEMORY_BUDGET = "DEEPDIVE_MEMORY_BUDGET_GB"


def model_bytes(model: nn.Module) -> int:
    """Bytes of the parameters, counted from shapes: a model on ``meta`` is measured without memory."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def optimizer_states(optimizer: Optional[torch.optim.Optimizer]) -> tuple[int, str]:
    """State tensors per trainable parameter that ``optimizer`` will hold, and where the count comes from."""
    if optimizer is None:
        return 2, "no optimizer given: 2 states per parameter assumed, as Adam"
    name = type(optimizer).__name__
    if name not in OPTIMIZER_STATES:
        return 2, f"{name}: 2 states per parameter assumed"
    flags = optimizer.defaults
    count = OPTIMIZER_STATES[name] + bool(flags.get("amsgrad")) + bool(flags.get("centered"))
    count += bool(flags.get("momentum")) if name in ("SGD", "RMSprop") else 0
    return count, f"{name}: {count} per parameter"


def training_bytes(model: nn.Module, optimizer: Optional[torch.optim.Optimizer] = None) -> dict[str, Any]:
    """Parameter, gradient and optimizer-state bytes of one full replica, from shapes alone."""
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    states, basis = optimizer_states(optimizer)
    params = model_bytes(model)
    return {"parameters": params, "gradients": trainable, "optimizer": states * trainable,
            "total": params + trainable + states * trainable, "optimizer_basis": basis}


def memory_budget(info: DistInfo, budget_gb: Optional[float] = None) -> tuple[Optional[int], str]:
    """Bytes one process may hold for training state, and where that figure comes from.

    ``budget_gb``, else ``$DEEPDIVE_MEMORY_BUDGET_GB``, else 80 % of the GPU's memory; on the CPU
    without either, None.

    Raises:
        ValueError: a budget that is not a positive number.
    """
    source = "memory_budget_gb"
    if budget_gb is None and os.environ.get(ENV_MEMORY_BUDGET, "").strip():
        source, raw = f"${ENV_MEMORY_BUDGET}", os.environ[ENV_MEMORY_BUDGET].strip()
        try:
            budget_gb = float(raw)
        except ValueError:
            raise ValueError(f"{ENV_MEMORY_BUDGET}={raw!r} must be a number of GB, e.g. 12") from None
    if budget_gb is not None:
        if not budget_gb > 0:
            raise ValueError(f"{source} must be a positive number of GB, got {budget_gb!r}")
        return int(budget_gb * 1e9), f"{source}={budget_gb:g}"
    if info.device.type == "cuda":
        total = torch.cuda.get_device_properties(info.device).total_memory
        return int(0.8 * total), f"80 % of the GPU's {total / 1e9:.1f} GB"
    return None, "no memory budget on the CPU"


def fits_one_device(model: nn.Module, info: DistInfo, optimizer: Optional[torch.optim.Optimizer] = None,
                    budget_gb: Optional[float] = None) -> tuple[bool, str]:
    """Whether one full replica's parameters, gradients and optimizer states fit one process's budget.

    Measured from shapes before anything is moved (a model on ``meta`` included), against
    :func:`memory_budget`. On the CPU without a budget it fits (data parallel, as before) and says so.
    """
    need = training_bytes(model, optimizer)
    budget, source = memory_budget(info, budget_gb)
    figures = (f"parameters {need['parameters'] / 1e9:.2f} GB, gradients {need['gradients'] / 1e9:.2f} GB and "
               f"optimizer states {need['optimizer'] / 1e9:.2f} GB ({need['optimizer_basis']}) need "
               f"{need['total'] / 1e9:.2f} GB per process")
    if budget is None:
        return True, (f"{source} (set memory_budget_gb= in dd.setup or ${ENV_MEMORY_BUDGET} for auto to shard a "
                      f"model that does not fit): {figures}")
    ok = need["total"] <= budget
    return ok, f"{figures}, {'within' if ok else 'over'} the budget of {budget / 1e9:.2f} GB ({source})"


def all_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """The mean over ranks of each value (the same dict on every rank)."""
    if not info.distributed:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                          device=info.device if info.backend == "nccl" else "cpu")
    dist.all_reduce(tensor)
    tensor /= info.world_size
    return dict(zip(keys, tensor.tolist()))
