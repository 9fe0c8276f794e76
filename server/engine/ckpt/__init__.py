"""Checkpoints that deduplicate, compress and survive a kill: a content-addressed store.

:class:`Store` saves nested training state (tensors, numpy arrays, plain values) as chunks named by
the hash of their raw bytes (unchanged tensors are stored once across checkpoints; a chunk file is
reused only once known intact), compressed losslessly with byte grouping, rANS for float exponents
and zstd, committed atomically by a manifest written last that carries its own checksum, verified on
load (the manifest's checksum and every chunk's hash), and garbage-collected under "keep the last K
saved plus the best by a metric". A resume takes the newest checkpoint that loads
(:mod:`.resume`). ``deepdive ckpt ls | verify | gc | export`` works on the same directories.

A checkpoint saved under FSDP is sharded: every rank writes its own shards as chunks through
``torch.distributed.checkpoint`` (:mod:`.dcp`) and rank 0 commits one manifest for the step; it
resumes at any world size, and loads or exports whole like any other (:mod:`.shards`).

Modules: :mod:`.store` (the store: create, save, load), with its parts :mod:`.catalog` (finding and
reading manifests), :mod:`.reading` (decoding and verifying chunks), :mod:`.collect` (gc),
:mod:`.entries` (a tensor as a manifest entry: exact, bf16, int8-delta), :mod:`.records` (errors and
records), :mod:`.durable` (fsyncs); :mod:`.manifest` (manifest checksum), :mod:`.chunks` (checking
chunk files, reuse), :mod:`.retention` (what gc keeps), :mod:`.resume` (which checkpoint a run
resumes from), :mod:`.shards` (the sharded layout), :mod:`.dcp` (the DCP storage writer and
reader), :mod:`.export`, :mod:`.codec`, :mod:`.tree`.

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
    StateMismatch,
    Store,
    checkpoint_name,
    parse_best,
)

__all__ = ["LOSSY_MODES", "Checkpoint", "CheckpointError", "GcResult", "Problem", "StateMismatch", "Store",
           "checkpoint_name", "parse_best"]
