"""Checkpoint stores of the workspace: `deepdive/checkpoints/*`."""

from __future__ import annotations

from typing import Literal, Optional

import attrs


@attrs.define
class CheckpointListParams:
    paths: list[str] = attrs.Factory(list)
    """Checkpoint stores outside the workspace to list too (absolute, or relative to the workspace)."""


@attrs.define
class CheckpointStep:
    """One checkpoint of a run, as its manifest describes it (sizes in bytes)."""

    name: str
    step: int
    time: float
    """Seconds since the epoch when it was saved."""
    stored_bytes: int
    """The chunks it references, on disk (chunks shared with other checkpoints counted in full)."""
    new_bytes: int
    """What this save added to the store (the chunks it wrote); the rest was deduplicated."""
    raw_bytes: int
    """Its tensors' bytes, uncompressed: the logical size."""
    tensors: int
    metrics: dict[str, float]
    latest: bool
    """The most recently saved checkpoint (what a resume tries first)."""
    lossy: Optional[str] = None
    verified: Optional[Literal["ok", "corrupt"]] = None
    """The last `deepdive/checkpoints/verify` of this checkpoint, as it is now on disk; null: not verified
    since it was saved (or since its manifest changed)."""
    verified_at: Optional[float] = None
    problem: Optional[str] = None
    """With `corrupt`: the first problem found, in one line."""


@attrs.define
class CheckpointRun:
    """A checkpoint store: the `checkpoint_dir` of a training run."""

    path: str
    """The store's directory (absolute)."""
    name: str
    """The directory relative to the workspace (absolute when outside it)."""
    checkpoints: list[CheckpointStep]
    """Oldest step first."""
    disk_bytes: int
    """Chunks and manifests on disk."""
    raw_bytes: int
    """The checkpoints' tensors, uncompressed, summed over the checkpoints."""
    damaged: list[str]
    """Checkpoints not listed: their manifest is unreadable or fails its checksum (verify says why)."""
    args: list[str]
    """The script arguments of the train job named by `script`."""
    nproc: int
    """That job's processes per node (1 when no job is known)."""
    max_restarts: int
    """That job's torchrun restarts (0 when no job is known)."""
    ratio: Optional[float] = None
    """raw_bytes / disk_bytes: what deduplication and compression save together (as `deepdive ckpt ls`)."""
    script: Optional[str] = None
    """The training script of the newest train job of this workspace that was running when a checkpoint
    here was saved: what `deepdive/checkpoints/resume` runs when given no script."""
    error: Optional[str] = None
    """Why this store could not be read, in one line."""


@attrs.define
class CheckpointList:
    runs: list[CheckpointRun]
    truncated: bool
    """The workspace scan stopped at its limit of folders: stores deeper or further may be missing."""


@attrs.define
class CheckpointVerifyParams:
    store: str
    """The store's directory."""
    checkpoint: Optional[str] = None
    """A step, a name or `latest`; null: every checkpoint."""


@attrs.define
class CheckpointProblem:
    checkpoint: str
    tensor: str
    """Empty: the manifest itself (unreadable, or it fails its checksum)."""
    chunk: str
    reason: str


@attrs.define
class CheckpointVerifyResult:
    store: str
    checkpoints: list[str]
    ok: bool
    problems: list[CheckpointProblem]
    unchecked: list[str]
    """Manifests written before manifests carried a checksum: their chunks are checked, they pass."""
    seconds: float


@attrs.define
class CheckpointExportParams:
    store: str
    checkpoint: str
    """A step, a name or `latest`."""
    out: str
    """FILE.pt or FILE.safetensors (absolute, or relative to the workspace)."""
    key: Optional[str] = None
    """Export only this part of the state, e.g. `model` (names then fit model.load_state_dict)."""
    force: bool = False
    """Overwrite `out`."""


@attrs.define
class CheckpointExportResult:
    path: str
    checkpoint: str
    tensors: int
    bytes: int
    format: str


@attrs.define
class CheckpointResumeParams:
    store: str
    path: Optional[str] = None
    """The training script; null: the run's `script` (the one a train job saved there with)."""
    args: Optional[list[str]] = None
    """The script's arguments; null: the run's `args` when `path` is null, else none."""
    nproc: Optional[int] = None
