"""Jobs: `deepdive/jobs/*` requests, the job events the daemon sends, the kinds it can start."""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs

from deepdive.protocol.base import TS_TYPE

JobState = Literal["running", "succeeded", "failed", "cancelled", "lost"]
JOB_FINAL_STATES: tuple[str, ...] = ("succeeded", "failed", "cancelled", "lost")


@attrs.define
class JobInfo:
    id: str
    kind: str
    title: str
    state: JobState
    argv: list[str]
    cwd: str
    created_at: float
    pid: Optional[int] = None
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    exit_code: Optional[int] = None
    reason: Optional[str] = None
    """Why it ended the way it did (cancelled by the user, timed out, out of memory, exit code)."""
    progress: Optional[float] = None
    """Last reported fraction done, 0..1."""
    message: Optional[str] = None
    """Last progress message."""
    result: Optional[dict[str, Any]] = None
    """The job's structured result (its last `result` event)."""
    options: Optional[dict[str, Any]] = None
    """The options it was started with (its kind's `JobOptionTypes`, as sent); null for jobs older than this field."""


@attrs.define
class JobStartParams:
    kind: str
    """One of the kinds the daemon knows (`deepdive/jobs/kinds`); no arbitrary command lines."""
    options: dict[str, Any] = attrs.field(factory=dict, metadata={TS_TYPE: "JobOptions"})
    """The kind's options (`JobOptionTypes[kind]`); the daemon checks them when the job starts."""
    title: Optional[str] = None
    timeout_s: Optional[float] = None
    """Wall-clock limit; the job's process group is killed when it passes."""
    memory_limit_mib: Optional[float] = None
    """Resident-memory limit of the job's whole process tree."""
    progress: bool = True
    """Show LSP work-done progress (with cancel) when the client supports it."""


@attrs.define
class JobListParams:
    limit: int = 50


@attrs.define
class JobList:
    jobs: list[JobInfo]


@attrs.define
class JobIdParams:
    id: str


@attrs.define
class JobKind:
    kind: str
    title: str
    description: str
    runs_user_code: bool
    """Jobs that run workspace code are refused in an untrusted workspace."""


@attrs.define
class JobKindList:
    kinds: list[JobKind]


@attrs.define
class OutputLine:
    stream: Literal["stdout", "stderr"]
    text: str
    t: float


@attrs.define
class JobLog:
    id: str
    lines: list[OutputLine]
    truncated: bool
    """Older lines were dropped: the store keeps the last lines of each job only."""


@attrs.define
class JobProgress:
    fraction: Optional[float] = None
    message: Optional[str] = None


@attrs.define
class JobEvent:
    """The `deepdive/jobs/event` notification: something happened to a job."""

    job_id: str
    type: Literal["started", "output", "progress", "data", "finished"]
    seq: int
    """Increases by one per event of a job: the client can tell if it missed one."""
    job: Optional[JobInfo] = None
    """With `started` and `finished`."""
    lines: Optional[list[OutputLine]] = None
    """With `output`: lines are batched so a chatty job cannot flood the editor."""
    dropped_lines: Optional[int] = None
    """With `output`: lines dropped because the job printed faster than the client reads."""
    progress: Optional[JobProgress] = None
    data: Optional[dict[str, Any]] = None
    """With `data`: a structured event the job emitted (its name is under `data['event']`)."""
