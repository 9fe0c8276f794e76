"""The events inside the hub's samples messages that the dashboard's pages read.

A producer sends an event as ``Reporter.event(kind, **fields)``: the reporter adds ``kind``, ``t``,
``run`` and ``rank``. The engine's ``setup``, ``deepdive tune``'s ``tune.*`` (run ``tune-<study>``)
``deepdive compress``'s ``compress.*`` (run ``compress-<model stem>``) and ``deepdive diagnose``'s
``diagnose.*`` (run ``diagnose-<script stem>``) and ``deepdive deploy serve``'s ``serve.stats`` (run
``serve-<model name>``) are declared here; their
producers are checked against these classes by the tests (the engine imports nothing of the
protocol), and the pages read them through the generated TypeScript types.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs

from deepdive.protocol.base import TrialState, TuneDirection, TunePruner, TuneSampler, TuneValue, keys_as_named
from deepdive.protocol.deploy import ServeStats
from deepdive.protocol.diagnose import DiagnosisReport, SpeedupResult


@keys_as_named
@attrs.define(kw_only=True, slots=False)  # a base only; not slotted, so an event may also take a row's fields
class RunEvent:
    """What the reporter adds to every event."""

    t: float
    run: str
    rank: int


@keys_as_named
@attrs.define(kw_only=True)
class SetupEvent(RunEvent):
    """The engine's dd.setup(): what the run is and where it runs."""

    kind: Literal["setup"] = "setup"
    precision: str
    precision_reason: str
    world_size: int
    backend: Optional[str]
    device: str
    topology: Optional[str]
    link: Optional[str]
    script: str
    """The script's absolute path ('' for `python -c`)."""
    argv: list[str]
    pid: int
    host: str
    cwd: str


@keys_as_named
@attrs.define(kw_only=True)
class TuneStudyEvent(RunEvent):
    """A study starts (or resumes) in this process."""

    kind: Literal["tune.study"] = "tune.study"
    study: str
    direction: TuneDirection
    metric: str
    sampler: TuneSampler
    pruner: TunePruner
    n_trials: int
    parallel: int
    storage: str
    """The storage URL, password redacted."""
    metric_source: Optional[str]
    """Where the metric and direction came from (--metric, the study, the script)."""
    sampler_label: str
    pruner_label: str
    patience: Optional[int] = None
    """Reports without a new best that end a trial early (None: off)."""
    patience_source: Optional[str] = None
    """Where the patience came from: "the default", "--patience 3", "off: --patience 0", ..."""
    value: Optional[TuneValue] = None
    """How a trial's value is taken from its reports: its last or its best."""
    importance_after: int
    """Complete trials before parameter importance is computed."""


@keys_as_named
@attrs.define(kw_only=True)
class TuneTrialEvent(RunEvent):
    """A trial's state: sent as it changes (a newer event of the same trial replaces the older)."""

    kind: Literal["tune.trial"] = "tune.trial"
    study: str
    number: int
    state: TrialState
    params: dict[str, Any]
    value: Optional[float]
    intermediate: list[list[float]]
    """[step, value] pairs, oldest first (the last 200)."""
    reason: Optional[str]
    worker: Optional[int]
    waiting_reason: Optional[str]
    duration_s: Optional[float]


@keys_as_named
@attrs.define(kw_only=True)
class TuneBestEvent(RunEvent):
    kind: Literal["tune.best"] = "tune.best"
    study: str
    number: int
    value: float
    params: dict[str, Any]


@keys_as_named
@attrs.define(kw_only=True)
class TuneImportanceEvent(RunEvent):
    kind: Literal["tune.importance"] = "tune.importance"
    study: str
    importances: dict[str, float]
    """Empty until enough trials completed (see `note`)."""
    note: Optional[str]


@keys_as_named
@attrs.define(kw_only=True)
class ConfirmCandidate:
    """One of the search's top trials, re-trained with fresh seeds (``--confirm K``)."""

    number: int
    """The search's trial."""
    params: dict[str, Any]
    search_value: float
    """The trial's value in the search (trained with the study's seed)."""
    values: list[Optional[float]]
    """One per fresh seed, in ``seeds`` order (None: that re-training failed or has not finished)."""
    mean: Optional[float]
    """The mean of the finished re-trainings (None before any)."""
    std: Optional[float]
    """Their sample standard deviation (None with fewer than two)."""
    ci95: Optional[list[float]]
    """[low, high]: the mean's 95 % confidence interval (Student's t; None with fewer than two)."""


@keys_as_named
@attrs.define(kw_only=True)
class TuneConfirmation:
    """``--confirm K``: the top K trials re-trained with fresh seeds; the best mean is the study's answer."""

    k: int
    seeds: list[int]
    """The fresh training seeds (the search trained every trial with the study's seed)."""
    candidates: list[ConfirmCandidate]
    """Best search value first."""
    chosen: Optional[int]
    """The trial with the best re-trained mean in the study's direction (None: no re-training finished)."""
    reason: str
    """Why, in one sentence (e.g. trial 12's mean 0.7836 over 3 seeds against the search's best, trial 7, 0.7791)."""


@keys_as_named
@attrs.define(kw_only=True)
class TuneDoneEvent(RunEvent):
    """The study's process ended."""

    kind: Literal["tune.done"] = "tune.done"
    study: str
    n_complete: int
    n_pruned: int
    n_fail: int
    best_value: Optional[float]
    best_params: dict[str, Any]
    seconds: float
    trials: list[list[Any]]
    """[number, state, value] of the newest trials as the storage holds them at the end."""
    chosen_number: Optional[int] = None
    """The study's answer: the confirmed winner (``--confirm``), else the search's best trial."""
    chosen_params: dict[str, Any] = attrs.Factory(dict)
    """The answer's parameters (what *Apply best parameters* writes)."""
    confirmed: Optional[TuneConfirmation] = None
    """The confirmation of the top trials (``--confirm K``), or None when there was none."""


@keys_as_named
@attrs.define(kw_only=True)
class TuneConfirmEvent(RunEvent):
    """One re-training of ``--confirm`` finished (sent as each ends; ``tune.confirmed`` closes the phase)."""

    kind: Literal["tune.confirm"] = "tune.confirm"
    study: str
    number: int
    """The search's trial re-trained."""
    seed: int
    state: Literal["complete", "fail"]
    value: Optional[float]
    reason: Optional[str]
    done: int
    """Re-trainings finished so far (this confirmation)."""
    total: int


@keys_as_named
@attrs.define(kw_only=True)
class TuneConfirmedEvent(RunEvent):
    """The confirmation ended: every candidate's re-trained values, the chosen trial and why
    (the fields of :class:`TuneConfirmation`)."""

    kind: Literal["tune.confirmed"] = "tune.confirmed"
    study: str
    k: int
    seeds: list[int]
    candidates: list[ConfirmCandidate]
    chosen: Optional[int]
    reason: str


@keys_as_named
@attrs.define(kw_only=True)
class CompressProgressEvent(RunEvent):
    """The step the pipeline is on and what it does there."""

    kind: Literal["compress.progress"] = "compress.progress"
    step: str
    """original, prune, layers, distill, quantize or summary."""
    phase: str
    amount: Optional[float] = None
    """Pruning: the fraction removed."""
    epoch: Optional[float] = None
    """Distillation: the epoch just done, with its mean losses."""
    loss: Optional[float] = None
    kl: Optional[float] = None
    ce: Optional[float] = None
    feature: Optional[float] = None


@keys_as_named
@attrs.define(kw_only=True)
class LatencyFigures:
    p50: float
    p95: float
    runs: int


@keys_as_named
@attrs.define(kw_only=True)
class CompressStepRow:
    """A measured model: the original, or the model after a step."""

    step: str
    params: int
    size_mb: float
    latency_ms: dict[str, LatencyFigures]
    """By batch: `b1`, `b32`."""
    accuracy: float
    """What the evaluation script's evaluate() returned."""
    seconds: float
    detail: dict[str, Any]


@keys_as_named
@attrs.define(kw_only=True)
class CompressStepEvent(CompressStepRow, RunEvent):
    """A step's model was measured."""

    kind: Literal["compress.step"] = "compress.step"


@keys_as_named
@attrs.define(kw_only=True)
class CompressSummary:
    size_ratio: Optional[float]
    params_ratio: Optional[float]
    accuracy_drop_points: float
    speedup_b1: Optional[float] = None
    speedup_b32: Optional[float] = None
    latency_paired_ms: dict[str, Any] = attrs.Factory(dict)
    """The original and the final model timed in alternating rounds, by batch."""


@keys_as_named
@attrs.define(kw_only=True)
class CompressOutputs:
    model: str
    json: str
    markdown: str
    format: str


@keys_as_named
@attrs.define(kw_only=True)
class CompressReportEvent(RunEvent):
    """The pipeline's report (also written as STEM.compress.json): its rows replace the live ones."""

    kind: Literal["compress.report"] = "compress.report"
    model: str
    eval: str
    target: str
    threads: int
    steps: list[CompressStepRow]
    summary: CompressSummary
    outputs: CompressOutputs
    config: dict[str, Any]


@keys_as_named
@attrs.define(kw_only=True)
class DiagnoseReportEvent(RunEvent):
    """`deepdive diagnose`'s measured report (run ``diagnose-<script stem>``), also written as a JSON file."""

    kind: Literal["diagnose.report"] = "diagnose.report"
    report: DiagnosisReport


@keys_as_named
@attrs.define(kw_only=True)
class DiagnoseSpeedupEvent(RunEvent):
    """*Apply and measure*: a fix's measured speed-up (run ``diagnose-<script stem>``)."""

    kind: Literal["diagnose.speedup"] = "diagnose.speedup"
    result: SpeedupResult


@keys_as_named
@attrs.define(kw_only=True)
class ServeStatsEvent(RunEvent):
    """A running ``deepdive deploy serve``'s batcher, about every second while it serves requests (run
    ``serve-<model name>``; every 15 s while idle)."""

    kind: Literal["serve.stats"] = "serve.stats"
    model: str
    form: str
    """The runtime it serves: eager, compiled, torchscript, pt2, onnx, int8."""
    url: str
    """The server's base URL (``http://127.0.0.1:8000``)."""
    interval_s: float
    """The seconds ``rate_per_s`` covers: since the server's figures were last looked at (about 1 s; 0 for the
    first event)."""
    rate_per_s: float
    """Requests answered ``ok`` per second over ``interval_s``: the requests/s chart's point."""
    stats: ServeStats


HUB_EVENTS: tuple[type, ...] = (
    SetupEvent, TuneStudyEvent, TuneTrialEvent, TuneBestEvent, TuneImportanceEvent, TuneDoneEvent, TuneConfirmEvent,
    TuneConfirmedEvent,
    CompressProgressEvent, CompressStepEvent, CompressReportEvent, DiagnoseReportEvent, DiagnoseSpeedupEvent,
    ServeStatsEvent,
)
"""Every declared event, by its ``kind``."""


def event_kind(cls: type) -> str:
    """The ``kind`` an event class carries."""
    default = attrs.fields_dict(cls)["kind"].default
    assert isinstance(default, str), cls
    return default
