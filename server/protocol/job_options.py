"""The options of each job kind (`deepdive/jobs/start`'s ``options``), typed, and their check.

A client sends ``{"kind": "compress", "options": {...}}``; the daemon reads the options with
:func:`parse_options` into the kind's class before it builds the job's command line
(``deepdive.jobs.kinds``), and a wrong option is refused in one line that names it and says what it
must be. The extension builds its options as the generated ``JobOptionTypes[kind]``.

Keys are the attribute names (the job store keeps past jobs' options under them; one compress
option has a camelCase key). ``null`` for an option is the same as leaving it out: its default.
"""

from __future__ import annotations

import math
import typing
from typing import Any, Literal, Optional, Union

import attrs

from deepdive.protocol.base import (
    WIRE_NAME, CompressTarget, Device, GradCompression, PruneImportance, QuantizeMode, TrainPrecision, TuneDirection,
    TunePruner, TuneSampler, TuneValue, keys_as_named, wire_name,
)

MUST = "deepdive.must"
"""Field metadata: what the option must be, as the refusal says it (``name the model file``)."""
RANGE = "deepdive.range"
"""Field metadata: ``(low, high, exclusive)``, the numbers an option takes."""


class InvalidOptions(ValueError):
    """Options a job kind cannot take; the message names the option and says what it must be."""


def option(default: Any = None, *, must: Optional[str] = None, low: Optional[float] = None,
           high: Optional[float] = None, exclusive: bool = False, wire: Optional[str] = None) -> Any:
    """An optional option: its default, what it must be (strings), its range (numbers), its wire key."""
    metadata: dict[str, Any] = {}
    if must:
        metadata[MUST] = must
    if low is not None and high is not None:
        metadata[RANGE] = (low, high, exclusive)
    if wire:
        metadata[WIRE_NAME] = wire
    if isinstance(default, list):
        return attrs.field(factory=lambda: list(default), metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def required(*, must: str) -> Any:
    """An option the job cannot start without (a string: the file it works on)."""
    return attrs.field(metadata={MUST: must})


@keys_as_named
@attrs.define(kw_only=True)
class DeepCheckOptions:
    """`doctor-deep`: import torch in a subprocess and measure matmul throughput."""

    seconds: float = option(2.0, low=0.1, high=120.0)
    """Time budget per measurement."""
    size: int = option(1024, low=32, high=16384)
    """The matrices' side."""
    device: Device = option("auto")


@keys_as_named
@attrs.define(kw_only=True)
class ScriptOptions:
    """`script`: run a Python file of the workspace (and the script of a train or tune job)."""

    path: str = required(must="name a Python file")
    """The script, relative to the workspace (or absolute, inside it)."""
    args: list[str] = option([])
    """The script's own arguments."""


@keys_as_named
@attrs.define(kw_only=True)
class TrainOptions(ScriptOptions):
    """`train`: a training script under torchrun (elastic)."""

    nproc: int = option(1, low=1, high=1024)
    """Processes per node."""
    nnodes: str = option("1", must="be N or MIN:MAX")
    """Nodes, or an elastic range; more than one needs `rdzv_endpoint`."""
    rdzv_endpoint: Optional[str] = option(must="be HOST:PORT")
    max_restarts: int = option(0, low=0, high=1000)
    """Restarts of the worker group on failure (a preempted script checkpoints and resumes)."""
    metrics_out: Optional[str] = option(must="be a file path")
    """The telemetry JSONL file the workers write."""
    checkpoint_dir: Optional[str] = option(must="be a folder path")
    """dd.setup's default checkpoint folder (relative to the workspace): a restart resumes from it."""
    fresh: bool = option(False)
    """Start from step 0: ignore the checkpoints saved before this job."""
    precision: Optional[TrainPrecision] = option()
    """Where the script's dd.setup() leaves precision 'auto'."""
    grad_compression: Optional[GradCompression] = option()
    """Where the script's dd.setup() leaves grad_compression 'auto'."""


@keys_as_named
@attrs.define(kw_only=True)
class TuneOptions(ScriptOptions):
    """`tune`: Bayesian search (Optuna) over a script's run.suggest() declarations."""

    trials: int = option(20, low=1, high=100000)
    """Finished trials the study should hold."""
    parallel: int = option(1, low=1, high=1024)
    storage: Optional[str] = option(must="be a non-empty string")
    study: Optional[str] = option(must="be a non-empty string")
    sampler: Optional[TuneSampler] = option()
    pruner: Optional[TunePruner] = option()
    metric: Optional[str] = option(must="be a non-empty string")
    direction: Optional[TuneDirection] = option()
    value: Optional[TuneValue] = option()
    patience: Optional[int] = option(low=0, high=100000)
    """Reports without a new best that end a trial (default: 2 unless trials are scored by their last report; 0: off)."""
    timeout: Optional[float] = option(low=0.001, high=1e9)
    trial_timeout: Optional[float] = option(low=0.001, high=1e9)
    seed: Optional[int] = option(low=0, high=2**32 - 1)
    retry_failed: bool = option(False)
    pack: bool = option(False)
    confirm: int = option(0, low=0, high=100)
    """After the search, re-train the top K trials with fresh seeds; the best mean is the answer (0: off)."""
    confirm_seeds: int = option(3, low=2, high=100)
    """Fresh training seeds per confirmed trial."""
    apply: bool = option(False)
    """Write the best parameters into the script's suggest() defaults when the study ends (with
    ``confirm``: the confirmed answer's)."""


@keys_as_named
@attrs.define(kw_only=True)
class CompressOptions:
    """`compress`: prune, reduce depth, distil and/or quantize a trained model, measuring each step."""

    model: str = required(must="name the model file")
    """A torch.save file (relative to the workspace, or absolute)."""
    eval: str = required(must="name the evaluation script")
    """It defines evaluate(model), example_inputs(batch_size) and train_loader()."""
    prune: Optional[float] = option(low=0.0, high=1.0, exclusive=True,
                                    must="be the fraction removed, between 0 and 1 (exclusive)")
    layers: Optional[int] = option(low=1, high=1000)
    """Depth reduction: the repeated blocks kept."""
    distill: bool = option(False)
    quantize: Optional[QuantizeMode] = option()
    target: Optional[CompressTarget] = option()
    importance: Optional[PruneImportance] = option()
    steps: Optional[int] = option(low=1, high=100)
    """Progressive pruning: reach `prune` in this many steps."""
    epochs: Optional[int] = option(low=0, high=1000)
    """Fine-tuning epochs after each pruning step."""
    distill_epochs: Optional[int] = option(low=1, high=1000, wire="distillEpochs")
    out: Optional[str] = option(must="name a folder")
    """The folder for the compressed model and its report (default: the model's)."""


@keys_as_named
@attrs.define(kw_only=True)
class DiagnoseOptions(ScriptOptions):
    """`diagnose`: a few steps of a training script under torch.profiler; the step-time breakdown and findings."""

    steps: int = option(10, low=1, high=1000)
    """Optimizer steps measured."""
    warmup: int = option(3, low=0, high=1000)
    """Steps run before measuring (allocator, cuDNN autotuning, lazy init)."""


@keys_as_named
@attrs.define(kw_only=True)
class DiagnoseFixOptions(ScriptOptions):
    """`diagnose-fix`: apply one rule's fix to a copy of the script and time both in alternating pairs."""

    code: str = required(must="name a rule code such as DD101")
    line: int = option(1, low=1, high=10_000_000)
    """The finding's line (1-based): which of the rule's findings to fix."""
    pairs: int = option(6, low=2, high=100)
    """Runs of each arm, alternating (6 pairs reach 96.9 % coverage for the median ratio)."""
    steps: int = option(10, low=1, high=1000)
    """Optimizer steps timed per run."""
    warmup: int = option(3, low=0, high=1000)


@keys_as_named
@attrs.define(kw_only=True)
class DeployExportOptions:
    """`deploy-export`: a script's model (and optionally its trained file) written in its deployable forms."""

    path: str = required(must="name the model's script")
    """It defines build_model() and example_inputs(batch_size) or example_batch()."""
    model: Optional[str] = option(must="name the model file")
    """The trained (or compressed) model file; none: build_model()'s initial weights."""
    out: Optional[str] = option(must="name a folder")
    """The export folder (default: deploy/<name> in the workspace)."""
    forms: list[str] = option([])
    """Of eager, torchscript, pt2, onnx, int8; empty: all."""


@keys_as_named
@attrs.define(kw_only=True)
class DeployBenchOptions:
    """`deploy-bench`: the exported forms measured on this machine, the fastest within tolerance chosen and saved."""

    folder: str = required(must="name the export folder (with deploy.json)")
    batch_sizes: Optional[str] = option(must="be batch sizes such as 1,8,32")
    forms: list[str] = option([])
    """Candidates to measure; empty: all this machine and folder offer."""
    tolerance: Optional[float] = option(low=0.0, high=1e6)
    budget_s: Optional[float] = option(low=0.1, high=3600.0)
    """Seconds of timed runs in all."""


@keys_as_named
@attrs.define(kw_only=True)
class DeployServeOptions:
    """`deploy-serve`: the exported model served on 127.0.0.1 (Open Inference Protocol v2) until cancelled."""

    folder: str = required(must="name the export folder (with deploy.json)")
    form: Optional[str] = option(must="name a form")
    """Default: the one deploy bench chose, else eager."""
    port: int = option(0, low=0, high=65535)
    """0: a free port (the job's `deploy.serve` data event says which)."""
    instances: int = option(1, low=1, high=256)
    max_batch: Optional[int] = option(low=1, high=65536)
    max_queue_delay_us: Optional[int] = option(low=0, high=60_000_000)
    timeout_ms: Optional[float] = option(low=0.001, high=3_600_000.0)
    max_queue: Optional[int] = option(low=1, high=1_000_000)
    no_batching: bool = option(False)
    target_p99: Optional[float] = option(low=0.001, high=3_600_000.0)
    """Milliseconds: choose max batch and queue delay so the predicted p99 latency fits."""
    clients: Optional[int] = option(low=1, high=1_000_000)
    """With target_p99: the concurrent requests to plan for (queueing at that load is in the prediction)."""


JOB_OPTIONS: dict[str, type] = {
    "doctor-deep": DeepCheckOptions,
    "script": ScriptOptions,
    "train": TrainOptions,
    "tune": TuneOptions,
    "compress": CompressOptions,
    "diagnose": DiagnoseOptions,
    "diagnose-fix": DiagnoseFixOptions,
    "deploy-export": DeployExportOptions,
    "deploy-bench": DeployBenchOptions,
    "deploy-serve": DeployServeOptions,
}
"""The options class of every job kind the daemon can start."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _refusal(key: str, must: str, value: Any) -> InvalidOptions:
    return InvalidOptions(f"option '{key}' must {must}, got {_shown(value)}")


def _whole(value: Any) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value == int(value))


def _plain(x: Optional[float]) -> str:
    """A bound as a person writes it: 1000000000, 0.001."""
    return str(int(x)) if x is not None and float(x).is_integer() else f"{x:g}"


def _inside(value: float, low: Optional[float], high: Optional[float], exclusive: bool) -> bool:
    if low is None or high is None:
        return not math.isnan(value)
    return low < value < high if exclusive else low <= value <= high


def _choice(tp: Any, value: Any) -> tuple[bool, str]:
    choices = typing.get_args(tp)
    return isinstance(value, str) and value in choices, f"be one of {', '.join(choices)}"


def _number(tp: Any, value: Any, bounds: tuple[Optional[float], Optional[float], bool]) -> tuple[bool, str]:
    whole = tp is int
    low, high, exclusive = bounds
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and (not whole or _whole(value)) and _inside(value, low, high, exclusive)
    return ok, f"be a {'whole ' if whole else ''}number from {_plain(low)} to {_plain(high)}"


def _value(field: attrs.Attribute, key: str, value: Any) -> Any:
    """``value`` as the field's type, or the refusal that says what the option must be."""
    tp: Any = field.type
    if typing.get_origin(tp) is Union:  # Optional[X]: null was taken care of by the caller
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is Literal:
        ok, must = _choice(tp, value)
    elif tp is bool:
        ok, must = isinstance(value, bool), "be true or false"
    elif tp in (int, float):
        ok, must = _number(tp, value, field.metadata.get(RANGE, (None, None, False)))
    elif tp is str:
        ok, must = isinstance(value, str) and bool(value.strip()), ""
    elif typing.get_origin(tp) is list:
        ok, must = isinstance(value, list) and all(isinstance(a, str) for a in value), "be a list of strings"
    else:
        raise TypeError(f"option '{key}' of {field.type!r}: no check for this type")
    if not ok:
        raise _refusal(key, field.metadata.get(MUST) or must, value)
    return int(value) if tp is int else float(value) if tp is float else value


def parse_options(kind: str, options: Any) -> Any:
    """The options of a job of ``kind`` as its class; raises :class:`InvalidOptions` naming the bad one."""
    cls = attrs.resolve_types(JOB_OPTIONS[kind])  # the annotations as types (once; attrs remembers)
    if not isinstance(options, dict):
        raise InvalidOptions(f"the options of a {kind} job must be an object, got {type(options).__name__}")
    fields = {wire_name(cls, f): f for f in attrs.fields(cls)}
    extra = sorted(set(options) - set(fields))
    if extra:
        raise InvalidOptions(f"unknown option(s) for {kind}: {', '.join(extra)} (allowed: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for key, field in fields.items():
        value = options.get(key)
        if value is not None:
            values[field.name] = _value(field, key, value)
        elif field.default is attrs.NOTHING:
            raise InvalidOptions(f"option '{key}' must {field.metadata[MUST]}")
    return cls(**values)
