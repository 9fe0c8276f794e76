"""Putting a checkpoint's model and optimizer state into a run's model and optimizer.

A checkpoint of full state dicts (one process, DDP) is loaded with ``set_state_dict`` into
whatever layout the run has; a sharded one (FSDP) through ``torch.distributed.checkpoint.load``,
which reshards: each rank reads only the saved pieces its own parameters cover. The rest of a
resume (scaler, tracked objects, counters, RNG) is :class:`deepdive.engine.checkpoint.Checkpointer`'s.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from deepdive.engine.ckpt import CheckpointError, StateMismatch, Store
from deepdive.engine.ckpt import shards as sharding

__all__ = ["load_model_optimizer", "load_shards"]


def load_shards(model: Optional[nn.Module], optimizer: Optional[torch.optim.Optimizer], store: Store, name: str,
                state: dict[str, Any], *, distributed: bool) -> None:
    """Load a sharded checkpoint's model and optimizer state into this run's layout (every rank
    takes part); nothing for a checkpoint of full state dicts.

    ``torch.distributed.checkpoint.load`` fills this run's own tensors (FSDP shards at any world
    size, or whole tensors in one process), reading only the saved pieces they cover; the
    optimizer's hyperparameters come from the manifest.

    Raises:
        StateMismatch: the checkpoint's tensors are not this model's and optimizer's.
        CheckpointError: a shard's chunk is missing or corrupt (the resume tries an older checkpoint).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, \
        get_optimizer_state_dict, set_state_dict

    from deepdive.engine.ckpt import dcp

    saved = {"model": state.get("model"), "optimizer": state.get("optimizer") or {}}
    if model is None or not sharding.refs(saved["model"]):
        return
    options = StateDictOptions(full_state_dict=False)
    with_optimizer = optimizer is not None and bool(saved["optimizer"].get("state"))
    target: dict[str, Any] = {"model": get_model_state_dict(model, options=options)}
    if with_optimizer:
        target["optimizer"] = get_optimizer_state_dict(model, optimizer, options=options)
    else:
        saved["optimizer"] = {}
    tensors, _ = sharding.split(target)
    _check_layout(name, sharding.refs(saved), tensors)
    wanted = {key: tensors[key] for key in sharding.refs(saved)}
    dcp.load(store, store.manifest(name), wanted, distributed=distributed)
    loaded = sharding.fill(saved, tensors)
    set_state_dict(model, [optimizer] if with_optimizer else [], model_state_dict=loaded["model"],
                   optim_state_dict=loaded["optimizer"], options=options)


def load_model_optimizer(model: Optional[nn.Module], optimizer: Optional[torch.optim.Optimizer],
                         state: dict[str, Any]) -> None:
    """Put a checkpoint's model and optimizer state into ``model`` and ``optimizer``: full state
    dicts, or only the optimizer's group settings for a sharded checkpoint (its tensors are already
    in: :func:`load_shards`)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    optim_state = state.get("optimizer") or {}
    if model is not None and sharding.refs(state.get("model")):
        if optimizer is not None and optim_state and not optim_state.get("state"):
            _load_param_groups(optimizer, optim_state.get("param_groups") or [])
    elif model is not None and state.get("model"):
        optimizers = [optimizer] if optimizer is not None and optim_state else []
        if optimizers and not optim_state.get("state"):
            # no per-parameter state yet (plain SGD, or saved before the first step): torch's
            # set_state_dict needs a tensor to place it, so only the groups' settings are loaded
            _load_param_groups(optimizer, optim_state.get("param_groups") or [])
            optimizers = []
        set_state_dict(model, optimizers, model_state_dict=state["model"],
                       optim_state_dict=optim_state if optimizers else {},
                       options=StateDictOptions(full_state_dict=True))


def _load_param_groups(optimizer: torch.optim.Optimizer, saved: list[dict[str, Any]]) -> None:
    """Set each parameter group's settings (lr, momentum, ...) from a saved state dict's groups."""
    if len(saved) != len(optimizer.param_groups):
        raise CheckpointError(f"the checkpoint's optimizer has {len(saved)} parameter group(s), this one "
                              f"{len(optimizer.param_groups)}: build the optimizer as the saved run did, "
                              "or start fresh (resume=False)")
    for group, values in zip(optimizer.param_groups, saved):
        group.update({k: v for k, v in values.items() if k != "params"})


def _check_layout(name: str, saved: list[str], tensors: dict[str, Any]) -> None:
    """Raise StateMismatch unless the sharded checkpoint's model tensors are exactly this model's and
    its optimizer's are among this optimizer's (one line naming the first difference)."""
    model_saved = {k for k in saved if k.startswith("model.")}
    model_here = {k for k in tensors if k.startswith("model.")}
    missing = sorted(set(saved) - set(tensors)) + sorted(model_here - model_saved)
    if missing:
        key = missing[0]
        where = "this run's model or optimizer has no" if key in saved else "the checkpoint has no"
        raise StateMismatch(f"cannot resume from {name}: {where} '{key}' ({len(missing)} difference(s)): build the "
                            "model and optimizer as the saved run did, or start fresh (resume=False)")

