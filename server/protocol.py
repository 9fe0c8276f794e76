"""The one definition of Deepdive's custom LSP methods and their payloads.

Every custom request, its parameters and result, and every custom notification is declared here
as an ``attrs`` class. The daemon validates incoming params against these classes and serialises
results through :data:`CONVERTER`; the TypeScript side (``extension/src/protocol.ts``) is generated
from this module by ``python -m deepdive.protocol --typescript`` and a test fails when the
committed file drifts from what this module generates.

Wire format: JSON with camelCase keys (LSP's convention); Python attributes are snake_case.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any, Literal, Optional, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# Limits on the text a client sends, so that one oversized request cannot stall the daemon (issue
# #18: the code generator spent 11-14 s reading a 40 MB prompt, and other requests waited seconds).
# A str field of a request's params is at most MAX_NAME_CHARS long unless its metadata says otherwise.
MAX_CHARS = "deepdive.max_chars"
MAX_PROMPT_CHARS = 64 * 1024
"""A code-generation prompt: a sentence or a few paragraphs, never a file."""
MAX_DOCUMENT_CHARS = 2 * 1024 * 1024
"""A script's text (tune/applyBest): parsing 2 MB of Python takes about 0.7 s, and a training script is far smaller."""
MAX_NAME_CHARS = 4096
"""Kinds, ids, titles, paths, URLs and model names (PATH_MAX is 4096)."""


# --------------------------------------------------------------------------------------------
# deepdive/version
# --------------------------------------------------------------------------------------------


@attrs.define
class VersionResult:
    """The daemon's identity: answers `deepdive/version`."""

    version: str
    python: str
    pid: int
    started_at: float
    """Seconds since the epoch when the daemon process started."""
    protocol: int
    """Bumped whenever a payload in this module changes incompatibly."""


# --------------------------------------------------------------------------------------------
# deepdive/doctor
# --------------------------------------------------------------------------------------------


@attrs.define
class DoctorParams:
    refresh: bool = False
    """Probe torch again instead of answering from the daemon's cached probe."""


@attrs.define
class PythonInfo:
    version: str
    executable: str
    platform: str
    implementation: str


@attrs.define
class TorchInfo:
    installed: bool
    version: Optional[str] = None
    cuda_available: Optional[bool] = None
    cuda_version: Optional[str] = None
    device_count: Optional[int] = None
    error: Optional[str] = None
    """Why torch could not be inspected, when it could not."""


@attrs.define
class GpuDevice:
    index: int
    name: str
    uuid: str
    memory_total_mib: float
    compute_capability: Optional[str] = None


@attrs.define
class GpuInfo:
    available: bool
    devices: list[GpuDevice] = attrs.Factory(list)
    driver_version: Optional[str] = None
    nvml_version: Optional[str] = None
    reason: Optional[str] = None
    """The exact reason there are no GPUs, e.g. 'NVML library not found'."""


@attrs.define
class PackageInfo:
    name: str
    purpose: str
    installed: bool
    version: Optional[str] = None


@attrs.define
class HostInfo:
    hostname: str
    cpu_model: str
    physical_cores: Optional[int]
    logical_cores: int
    memory_total_gib: float
    cpu_bf16: bool
    """The CPU has native bf16 (avx512_bf16 or AMX): bf16 autocast pays off on it."""


@attrs.define
class MatmulFigure:
    """One matmul throughput the deep environment check measured."""

    device: str
    name: str
    dtype: str
    size: int
    gflops: float


@attrs.define
class DeepCheckSummary:
    """The newest successful deep environment check of this state folder (its job's result)."""

    job_id: str
    measured_at: float
    matmul: list[MatmulFigure] = attrs.Factory(list)
    torch: Optional[str] = None
    import_s: Optional[float] = None
    """Seconds `import torch` took in the check's process."""


@attrs.define
class DoctorReport:
    """Answers `deepdive/doctor` and `deepdive doctor --json`."""

    deepdive_version: str
    python: PythonInfo
    host: HostInfo
    torch: TorchInfo
    gpus: GpuInfo
    packages: list[PackageInfo]
    state_dir: Optional[str] = None
    """Where this daemon keeps its SQLite state (job history)."""
    probed_at: float = 0.0
    deep_check: Optional[DeepCheckSummary] = None
    """The newest successful deep check (Deepdive: Run Deep Check / `deepdive doctor --deep`), if any."""


# --------------------------------------------------------------------------------------------
# deepdive/jobs/*
# --------------------------------------------------------------------------------------------

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


@attrs.define
class JobStartParams:
    kind: str
    """One of the kinds the daemon knows (`deepdive/jobs/kinds`); no arbitrary command lines."""
    options: dict[str, Any] = attrs.Factory(dict)
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


# --------------------------------------------------------------------------------------------
# deepdive/hub
# --------------------------------------------------------------------------------------------


@attrs.define
class HubInfo:
    """Where the daemon's telemetry hub listens (127.0.0.1; the token is new at each daemon start)."""

    running: bool
    url: Optional[str] = None
    ingest_url: Optional[str] = None
    """What jobs get in DEEPDIVE_HUB: the /ingest websocket URL with the token."""
    stream_url: Optional[str] = None
    """The /stream websocket URL with the token, for dashboards."""
    token: Optional[str] = None
    reason: Optional[str] = None
    """Why the hub is not running, when it is not."""
    dashboard_url: Optional[str] = None
    """The dashboard page for a browser (http://127.0.0.1:PORT/?token=...): *Open Dashboard in Browser*."""


# --------------------------------------------------------------------------------------------
# deepdive/telemetry/summary
# --------------------------------------------------------------------------------------------


@attrs.define
class RunThroughput:
    """The newest throughput figure of a training run that reports to the hub."""

    run_id: str
    value: float
    unit: str
    """`samples/s`, or `steps/s` when the run does not report its batch size."""
    job_id: Optional[str] = None
    step: Optional[int] = None
    label: Optional[str] = None
    """What `value` is, with its window: `samples/s over the last 10 s, all ranks` (the engine's figure, the
    one the dashboard and the terminal show; deepdive.telemetry.throughput)."""


@attrs.define
class TelemetrySummary:
    """The `deepdive/telemetry/summary` notification: what the status bar shows, about once a second."""

    t: float
    gpu_util: Optional[float] = None
    """Mean GPU utilisation over the GPUs, percent; null when there is no GPU (see `gpu_reason`)."""
    gpu_count: int = 0
    gpu_reason: Optional[str] = None
    """Why there is no GPU reading ("no NVIDIA GPU: NVML library not found")."""
    gpu_memory_used: Optional[float] = None
    """Fraction 0..1 of GPU memory in use, over all GPUs."""
    host_cpu: Optional[float] = None
    """Host CPU utilisation, percent."""
    runs: list[RunThroughput] = attrs.Factory(list)
    """Runs that reported in the last few seconds, newest first."""


# --------------------------------------------------------------------------------------------
# deepdive/generate
# --------------------------------------------------------------------------------------------


@attrs.define
class GenerateParams:
    prompt: str = attrs.field(metadata={MAX_CHARS: MAX_PROMPT_CHARS})
    """What to write, in a sentence (English or Chinese); at most 65,536 characters."""
    framework: Optional[Literal["torch", "tensorflow"]] = None
    """Overrides what the prompt says; null: the prompt's choice, else PyTorch."""
    backend: Optional[Literal["auto", "builtin", "transformers", "llamacpp", "openai-compatible"]] = None
    """`auto` or null: the default model of the registry (`deepdive model default`), else `builtin`."""
    model_path: Optional[str] = None
    """`transformers`: a local Hugging Face model directory; `llamacpp`: a GGUF file."""
    endpoint: Optional[str] = None
    """`openai-compatible`: the server's base URL (localhost unless `allow_remote`)."""
    model: Optional[str] = None
    """`openai-compatible`: the model name the server knows; `auto`: a registered model's name instead of the default."""
    allow_remote: bool = False
    verify: bool = True
    """Run the generated program's checks (parse, imports, `--smoke` in a sandbox, properties)."""
    allow_gpu: bool = False
    """Let the `--smoke` run see the GPU."""
    work_done_token: Optional[Union[int, str]] = None
    partial_result_token: Optional[Union[int, str]] = None
    """Chunks of code and check results arrive as `$/progress` with this token (GeneratePartial)."""


@attrs.define
class GenerateCheck:
    """One verification check of a generated program."""

    name: str
    ok: bool
    detail: str = ""
    seconds: Optional[float] = None


@attrs.define
class PropertyCheck:
    """One property the prompt states, judged against the generated program (see deepdive.codegen.spec)."""

    name: str
    """The property: task, framework, input_shape, outputs, family, layer_count, has_layer, no_layer,
    precision, distributed or loss."""
    expected: Any
    """Its stated value (JSON): "semantic-segmentation", [1, 28, 28], 10, "Dropout", ["Conv2d", 3], true, ..."""
    status: Literal["met", "failed", "not_checked"]
    """`met`: checked and holds; `failed`: checked and does not hold; `not_checked`: no check could tell."""
    detail: str = ""
    """What was seen, in one line: "model has 2 Dropout modules (features.3, head.1)"."""
    text: str = ""
    """The prompt's words that state it ("without dropout")."""
    label: str = ""
    """The property and its value in a few words, for lists: "no_layer Dropout", "outputs 10",
    "input_shape 1×28×28", "layer_count 3 Conv2d"."""


@attrs.define
class GeneratePartial:
    """A `$/progress` value on the request's partial-result token while a program is generated."""

    kind: Literal["text", "reset", "check", "phase"]
    """`text`: append `text`; `reset`: discard what came so far (a repair round starts over);
    `check`: a verification check finished; `phase`: a new stage started (`text` names it)."""
    text: Optional[str] = None
    check: Optional[GenerateCheck] = None


@attrs.define
class GenerateResult:
    code: str
    """The complete program."""
    backend: str
    framework: str
    intent: dict[str, Any]
    """What the prompt was understood as (task, architecture, shapes, features)."""
    verified: bool
    """True only when every check passed, every property the prompt states was checked and met, and
    nothing of the prompt was left not understood."""
    checks: list[GenerateCheck] = attrs.Factory(list)
    rounds: int = 0
    """Repair rounds a model backend needed (0: the first program passed)."""
    seconds: float = 0.0
    filename: Optional[str] = None
    """A suggested file name for "Generate into New File"."""
    message: Optional[str] = None
    """Why the result is not verified (a failed check or property, properties not checked, words not
    understood, verification skipped), or why there is no program, in one line."""
    properties: list[PropertyCheck] = attrs.Factory(list)
    """Each property the prompt states, checked-and-met, checked-and-failed or not checked."""
    understood_as: Optional[dict[str, Any]] = None
    """The request's stated properties as the parser read them (a Spec's JSON)."""
    not_understood: list[str] = attrs.Factory(list)
    """Words of the prompt no property took: unknown task or architecture words, unplaced numbers."""
    gaps: list[str] = attrs.Factory(list)
    """Stated properties the builtin generator cannot honour; with the builtin backend there is then
    no program, and the message says what a local model would add."""


# --------------------------------------------------------------------------------------------
# deepdive/tune/applyBest
# --------------------------------------------------------------------------------------------


@attrs.define
class TuneApplyParams:
    """Rewrite the defaults of a script's `suggest(...)` calls to a study's best parameters."""

    path: str
    """The script (absolute, or relative to the workspace)."""
    params: dict[str, Any]
    """Parameter name -> value, e.g. a finished tune job's `result['bestParams']`."""
    text: Optional[str] = attrs.field(default=None, metadata={MAX_CHARS: MAX_DOCUMENT_CHARS})
    """The document's current text when the editor has unsaved changes (else the file is read); at most
    2,097,152 characters."""


@attrs.define
class TextEditData:
    """A replacement in the document: zero-based lines and UTF-16 character offsets, as in LSP."""

    start_line: int
    start_character: int
    end_line: int
    end_character: int
    new_text: str


@attrs.define
class TuneApplyResult:
    edits: list[TextEditData]
    """Only the default values change; nothing else in the file moves."""
    changed: list[str]
    """Parameters whose default was rewritten."""
    unchanged: list[str] = attrs.Factory(list)
    """Parameters whose default already had the best value."""
    missing: list[str] = attrs.Factory(list)
    """Parameters with no `suggest("name", ...)` call in the script."""


# --------------------------------------------------------------------------------------------
# deepdive/models/*
# --------------------------------------------------------------------------------------------


@attrs.define
class ModelSpeed:
    """Speed measured on this machine (`deepdive model bench`), cached in the model registry."""

    ttft_s: float
    """Seconds from the request to the first token, the model already loaded."""
    tokens_per_s: float
    """Tokens per second after the first."""
    tokens: int
    device: str
    measured_at: float
    threads: Optional[int] = None


@attrs.define
class ModelInfo:
    """A local code model: registered, or found (on disk, in Ollama) and not added yet."""

    name: str
    kind: Literal["gguf", "hf-folder", "ollama"]
    registered: bool
    is_default: bool = False
    title: str = ""
    """What the model says it is ("Qwen2.5 Coder 0.5B Instruct · qwen2 · Q4_K_M")."""
    size_bytes: Optional[int] = None
    path: Optional[str] = None
    """The GGUF file or model folder (gguf, hf-folder)."""
    endpoint: Optional[str] = None
    """The server's URL (ollama)."""
    model: Optional[str] = None
    """The model's name on the server (ollama)."""
    speed: Optional[ModelSpeed] = None
    problem: Optional[str] = None
    """Why it cannot be used now (its file was deleted), in one line."""


@attrs.define
class ModelListParams:
    discover: bool = True
    """Also look for models not added yet: a running Ollama, LM Studio's folders, the Hugging Face cache."""


@attrs.define
class ModelList:
    models: list[ModelInfo]
    registry: str
    """The registry file."""
    default: Optional[str] = None
    """The model `auto` uses; null: the builtin generator."""
    ollama: Optional[str] = None
    """What was found at Ollama's address, or why nothing was, in one line."""


@attrs.define
class ModelSetDefaultParams:
    name: Optional[str] = None
    """The model `auto` uses from now on; null: the builtin generator."""
    path: Optional[str] = None
    """A found GGUF file or model folder to add first (as `name`)."""
    endpoint: Optional[str] = None
    """A found Ollama's URL, with `model`, to add first (as `name`)."""
    model: Optional[str] = None


# --------------------------------------------------------------------------------------------
# deepdive/checkpoints/*
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Method registry
# --------------------------------------------------------------------------------------------

PROTOCOL_VERSION = 1

#: Lists both sides show, generated into the extension as ``Vocabularies`` (a test checks the engine's own
#: lists agree: the engine imports nothing of the daemon's).
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "trainPrecisions": ("auto", "fp32", "bf16", "fp16"),
    "gradCompressions": ("auto", "none", "fp16", "bf16", "powersgd", "topk"),
}


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


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


class InvalidPayload(ValueError):
    """Params that do not match their declared shape; the message says which field and why."""


def _attrs_classes() -> list[type]:
    """Every payload class, leaves before the classes that contain them."""
    seen: dict[type, None] = {}
    visiting: set[type] = set()

    def visit(tp: Any) -> None:
        if attrs.has(tp):
            if tp in seen or tp in visiting:
                return
            visiting.add(tp)
            attrs.resolve_types(tp, globalns=globals())
            for field in attrs.fields(tp):
                visit(field.type)
            seen[tp] = None
        for arg in typing.get_args(tp):
            visit(arg)

    for req in REQUESTS:
        visit(req.params)
        visit(req.result)
    for note in NOTIFICATIONS:
        visit(note.params)
    for cls in PROGRESS_VALUES:
        visit(cls)
    return list(seen)


def _strict(tp: type, accepts: tuple[type, ...]):
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and tp is not bool:
            raise TypeError(f"expected {tp.__name__}, got a boolean")
        if not isinstance(value, accepts):
            raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
        return tp(value)

    return structure


def _progress_token(value: Any, _: Any) -> Any:
    """LSP's ProgressToken: an integer or a string."""
    if value is None or (isinstance(value, (int, str)) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected a progress token (integer or string), got {type(value).__name__}")


class TooLong(ValueError):
    """A string in a request's params over its limit; the message gives its length and the limit."""


def _bounded(limit: int):
    """A str field of a request's params: a string (or null where optional) of at most ``limit`` characters."""
    strict = _strict(str, (str,))

    def structure(value: Any, tp: Any) -> Any:
        if value is None and tp is not str:
            return None
        text = strict(value, str)
        if len(text) > limit:
            raise TooLong(f"too long: {len(text):,} characters, the limit is {limit:,} characters")
        return text

    return structure


def _string_limits(cls: type) -> dict[str, Any]:
    """Structure overrides that bound each str and Optional[str] field of a params class."""
    limits = {}
    for field in attrs.fields(cls):
        if field.type is str or field.type == Optional[str]:
            limit = field.metadata.get(MAX_CHARS, MAX_NAME_CHARS)
            limits[field.name] = override(rename=_camel(field.name), struct_hook=_bounded(limit))
    return limits


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    # JSON types only, no silent coercion: a number where a string belongs is an error.
    conv.register_structure_hook(str, _strict(str, (str,)))
    conv.register_structure_hook(int, _strict(int, (int,)))
    conv.register_structure_hook(float, _strict(float, (int, float)))
    conv.register_structure_hook(bool, _strict(bool, (bool,)))
    conv.register_structure_hook(Optional[Union[int, str]], _progress_token)
    params_classes = {req.params for req in REQUESTS if req.params is not None}
    for cls in _attrs_classes():
        renames = {f.name: override(rename=_camel(f.name)) for f in attrs.fields(cls)}
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **renames))
        inbound = {**renames, **_string_limits(cls)} if cls in params_classes else renames
        conv.register_structure_hook(
            cls, make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **inbound)
        )
    return conv


CONVERTER = _make_converter()


def to_wire(obj: Any) -> Any:
    """An attrs payload as JSON-ready data with camelCase keys."""
    return CONVERTER.unstructure(obj)


def _describe(exc: BaseException, tp: Any) -> str:
    """cattrs' wording for a field's error, except a limit's own message, which names the limit."""
    return str(exc) if isinstance(exc, TooLong) else cattrs.v.format_exception(exc, tp)


def from_wire(data: Any, cls: type[Any]) -> Any:
    """Validate wire data into ``cls``; raises :class:`InvalidPayload` naming the bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidPayload(f"params must be an object ({cls.__name__}), got {type(data).__name__}")
    try:
        return CONVERTER.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = cattrs.transform_error(exc, path="params", format_exception=_describe)
        raise InvalidPayload(f"invalid {cls.__name__}: " + "; ".join(problems)) from None


# --------------------------------------------------------------------------------------------
# TypeScript generation
# --------------------------------------------------------------------------------------------


def _ts_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return "unknown"
    if tp is type(None):
        return "null"
    if tp is str:
        return "string"
    if tp in (int, float):
        return "number"
    if tp is bool:
        return "boolean"
    if attrs.has(tp):
        return tp.__name__
    if origin is Literal:
        return " | ".join(f"'{a}'" for a in args)
    if origin in (Union, types.UnionType):
        parts = [_ts_type(a) for a in args if a is not type(None)]
        return " | ".join(parts)
    if origin is list:
        inner = _ts_type(args[0])
        return f"({inner})[]" if " " in inner else f"{inner}[]"
    if origin is dict:
        return f"Record<string, {_ts_type(args[1])}>"
    raise TypeError(f"no TypeScript mapping for {tp!r}")


def _is_optional(field: attrs.Attribute) -> bool:
    return field.default is not attrs.NOTHING


def _field_doc(cls: type, name: str) -> Optional[str]:
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return None
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == name
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            return " ".join(nxt.value.value.split())
    return None


def typescript() -> str:
    """The TypeScript declarations of every payload and method, as committed in the extension."""
    out = [
        "// Generated by `python -m deepdive.protocol --typescript` from server/protocol.py.",
        "// Do not edit: change the Python definition and regenerate (a test checks they agree).",
        "",
        f"export const PROTOCOL_VERSION = {PROTOCOL_VERSION};",
        "",
        "/** Lists both sides show (server/protocol.py VOCABULARIES). */",
        "export const Vocabularies = {",
        *[f"  {name}: [{', '.join(repr(v) for v in values)}] as const," for name, values in VOCABULARIES.items()],
        "};",
        "",
    ]
    for cls in _attrs_classes():
        if cls.__doc__:
            out.append(f"/** {' '.join(cls.__doc__.split())} */")
        out.append(f"export interface {cls.__name__} {{")
        for field in attrs.fields(cls):
            doc = _field_doc(cls, field.name)
            if doc:
                out.append(f"  /** {doc} */")
            ts = _ts_type(field.type)
            opt = "?" if _is_optional(field) else ""
            if typing.get_origin(field.type) in (Union, types.UnionType) and type(None) in typing.get_args(
                field.type
            ):
                ts += " | null"
            out.append(f"  {_camel(field.name)}{opt}: {ts};")
        out.append("}")
        out.append("")
    out.append("/** Custom requests: method name, params and result types. */")
    out.append("export const Requests = {")
    for req in REQUESTS:
        key = _camel(req.method.removeprefix("deepdive/").replace("/", "_"))
        out.append(f"  /** {req.doc} */")
        out.append(f"  {key}: '{req.method}',")
    out.append("} as const;")
    out.append("")
    out.append("export interface RequestTypes {")
    for req in REQUESTS:
        params = req.params.__name__ if req.params else "Record<string, never>"
        out.append(f"  '{req.method}': {{ params: {params}; result: {req.result.__name__} }};")
    out.append("}")
    out.append("")
    out.append("/** Custom notifications from the daemon. */")
    out.append("export const Notifications = {")
    for note in NOTIFICATIONS:
        key = _camel(note.method.removeprefix("deepdive/").replace("/", "_"))
        out.append(f"  /** {note.doc} */")
        out.append(f"  {key}: '{note.method}',")
    out.append("} as const;")
    out.append("")
    out.append("export interface NotificationTypes {")
    for note in NOTIFICATIONS:
        out.append(f"  '{note.method}': {note.params.__name__};")
    out.append("}")
    out.append("")
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepdive.protocol")
    parser.add_argument("--typescript", action="store_true", help="print the TypeScript declarations")
    parser.add_argument("--write", metavar="PATH", help="write the TypeScript declarations to PATH")
    args = parser.parse_args(argv)
    text = typescript()
    if args.write:
        from deepdive.fsutil import atomic_write_text

        atomic_write_text(args.write, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
