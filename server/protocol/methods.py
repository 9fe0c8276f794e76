"""The custom LSP methods: each request's params and result, each notification's params.

The daemon registers a handler per method (``deepdive.daemon``); the extension's requests are typed by
the generated ``RequestTypes`` and ``NotificationTypes``.
"""

from __future__ import annotations

from typing import Optional

import attrs

from deepdive.protocol.checkpoints import (
    CheckpointExportParams, CheckpointExportResult, CheckpointList, CheckpointListParams, CheckpointResumeParams,
    CheckpointVerifyParams, CheckpointVerifyResult,
)
from deepdive.protocol.doctor import DoctorParams, DoctorReport, VersionResult
from deepdive.protocol.generate import GenerateParams, GeneratePartial, GenerateResult
from deepdive.protocol.jobs import (
    JobEvent, JobIdParams, JobInfo, JobKindList, JobList, JobListParams, JobLog, JobStartParams,
)
from deepdive.protocol.models import ModelList, ModelListParams, ModelSetDefaultParams
from deepdive.protocol.telemetry import HubInfo, TelemetrySummary
from deepdive.protocol.tune import TuneApplyParams, TuneApplyResult

PROTOCOL_VERSION = 1
"""Bumped whenever a payload of the protocol changes incompatibly."""


@attrs.frozen
class Request:
    method: str
    params: Optional[type]
    result: type
    doc: str


@attrs.frozen
class Notification:
    method: str
    params: type
    doc: str


VERSION = Request("deepdive/version", None, VersionResult, "The daemon's version and identity.")
DOCTOR = Request(
    "deepdive/doctor", DoctorParams, DoctorReport, "Environment report: Python, torch, GPUs, packages."
)
JOBS_START = Request("deepdive/jobs/start", JobStartParams, JobInfo, "Start a job of a known kind.")
JOBS_LIST = Request("deepdive/jobs/list", JobListParams, JobList, "Jobs, newest first, past ones too.")
JOBS_CANCEL = Request(
    "deepdive/jobs/cancel", JobIdParams, JobInfo, "Cancel a job: its whole process group is killed."
)
JOBS_LOG = Request("deepdive/jobs/log", JobIdParams, JobLog, "The stored output of a job.")
JOBS_KINDS = Request("deepdive/jobs/kinds", None, JobKindList, "The kinds of job the daemon can start.")
JOBS_EVENT = Notification("deepdive/jobs/event", JobEvent, "Something happened to a job.")
HUB = Request("deepdive/hub", None, HubInfo, "Where the telemetry hub listens, with its token.")
GENERATE = Request(
    "deepdive/generate",
    GenerateParams,
    GenerateResult,
    "Write a program from a sentence and verify it; partial results stream as GeneratePartial.",
)
TUNE_APPLY = Request(
    "deepdive/tune/applyBest",
    TuneApplyParams,
    TuneApplyResult,
    "The edits that set a script's suggest() defaults to the given (best) parameters.",
)
MODELS_LIST = Request(
    "deepdive/models/list",
    ModelListParams,
    ModelList,
    "The local code models: registered ones with their measured speed, and found ones not added yet.",
)
MODELS_SET_DEFAULT = Request(
    "deepdive/models/setDefault",
    ModelSetDefaultParams,
    ModelList,
    "Choose the code model `auto` uses (adding a found one first); null: the builtin generator.",
)
CHECKPOINTS_LIST = Request(
    "deepdive/checkpoints/list",
    CheckpointListParams,
    CheckpointList,
    "The checkpoint stores of the workspace: each run's checkpoints with sizes, dedup ratio and verified status.",
)
CHECKPOINTS_VERIFY = Request(
    "deepdive/checkpoints/verify",
    CheckpointVerifyParams,
    CheckpointVerifyResult,
    "Verify a store's checkpoints (`deepdive ckpt verify`, in a subprocess); the result is remembered for list.",
)
CHECKPOINTS_EXPORT = Request(
    "deepdive/checkpoints/export",
    CheckpointExportParams,
    CheckpointExportResult,
    "Write a checkpoint's tensors as a plain state_dict file (`deepdive ckpt export`, in a subprocess).",
)
CHECKPOINTS_RESUME = Request(
    "deepdive/checkpoints/resume",
    CheckpointResumeParams,
    JobInfo,
    "Start a train job on the store: it resumes from the newest checkpoint that loads.",
)
TELEMETRY_SUMMARY = Notification(
    "deepdive/telemetry/summary", TelemetrySummary, "GPU utilisation and run throughput for the status bar."
)

REQUESTS: tuple[Request, ...] = (
    VERSION,
    DOCTOR,
    JOBS_START,
    JOBS_LIST,
    JOBS_CANCEL,
    JOBS_LOG,
    JOBS_KINDS,
    HUB,
    GENERATE,
    TUNE_APPLY,
    MODELS_LIST,
    MODELS_SET_DEFAULT,
    CHECKPOINTS_LIST,
    CHECKPOINTS_VERIFY,
    CHECKPOINTS_EXPORT,
    CHECKPOINTS_RESUME,
)
NOTIFICATIONS: tuple[Notification, ...] = (JOBS_EVENT, TELEMETRY_SUMMARY)
# Payloads that travel inside standard LSP messages (`$/progress` values), not as params or results.
PROGRESS_VALUES: tuple[type, ...] = (GeneratePartial,)
