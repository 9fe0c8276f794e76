"""Checkpoints that deduplicate, compress and survive a kill: a content-addressed store.

:class:`Store` saves nested training state (tensors, numpy arrays, plain values) as chunks named by
the hash of their raw bytes (unchanged tensors are stored once across checkpoints), compressed
losslessly with byte grouping, rANS for float exponents and zstd, committed atomically by a manifest written last, verified
on load, and garbage-collected under "keep the last K plus the best by a metric".
``deepdive ckpt ls | verify | gc | export`` works on the same directories.

Example::

    from deepdive.engine.ckpt import Store
    store = Store("ckpt")
    store.save({"model": model.state_dict(), "opt": opt.state_dict()}, step=step, metrics={"val_loss": v})
    state = store.load("latest")
    store.gc(keep_last=3, keep_best=("val_loss", "min", 1))
"""

from __future__ import annotations

from deepdive.engine.ckpt.store import (
    LOSSY_MODES,
    Checkpoint,
    CheckpointError,
    GcResult,
    Problem,
    Store,
    checkpoint_name,
    parse_best,
)

__all__ = ["LOSSY_MODES", "Checkpoint", "CheckpointError", "GcResult", "Problem", "Store", "checkpoint_name", "parse_best"]
