"""The telemetry hub's websocket messages, both directions (see ``deepdive.telemetry.hub``).

``/ingest``: a producer (``deepdive.engine.reporter``) sends :class:`IngestBatch`; the hub answers a
malformed one with :class:`HubError`. ``/stream``: the hub sends a dashboard :class:`StreamSnapshot`
first, then :class:`StreamSamples`, :class:`MachineMessage` and :class:`VerdictMessage` as they come;
the dashboard may send :class:`HubQuery` and gets :class:`HubReply`. The events inside a samples
message that pages read are in :mod:`deepdive.protocol.hub_events`.

Keys are snake_case, as the engine sends them. Samples and events are open objects (a script logs
the metrics it likes); their known keys are documented in the engine's reporter.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import attrs

from deepdive.protocol.base import keys_as_named

HUB_SCHEMA_VERSION = 1
"""``v`` of an ingest batch; the hub refuses another."""


@keys_as_named
@attrs.define(kw_only=True)
class IngestBatch:
    """A producer's batch on /ingest (the engine's reporter sends one about every 0.2 s)."""

    type: Literal["samples"] = "samples"
    v: int = HUB_SCHEMA_VERSION
    run: str
    rank: int
    seq: Optional[int] = None
    """0, 1, 2, ... per producer; a resent batch repeats its seq."""
    dropped: int = 0
    """Samples the producer dropped since its previous batch."""
    dropped_events: int = 0
    events: list[dict[str, Any]] = attrs.Factory(list)
    """Oldest first: `{kind, t, run, rank, ...fields}`."""
    samples: list[dict[str, Any]] = attrs.Factory(list)
    """Oldest first: `{t, run, rank, step, loss, ...}`."""


@keys_as_named
@attrs.define(kw_only=True)
class HubError:
    """The hub's answer to a malformed /ingest message (the connection stays open)."""

    type: Literal["error"] = "error"
    message: str


@keys_as_named
@attrs.define(kw_only=True)
class StreamSamples:
    """A producer's batch as the hub relays it to /stream subscribers."""

    type: Literal["samples"] = "samples"
    run: str
    rank: int
    seq: Optional[int]
    t: float
    """When the hub received it; each sample and event keeps its own `t`."""
    samples: list[dict[str, Any]]
    events: list[dict[str, Any]]
    producer_dropped: int
    producer_dropped_events: int
    dropped: int = 0
    """Entries this subscriber lost to its full queue since its previous message."""


@keys_as_named
@attrs.define(kw_only=True)
class NvlinkSample:
    links: int
    tx_kib_s: Optional[float]
    rx_kib_s: Optional[float]


@keys_as_named
@attrs.define(kw_only=True)
class EccErrors:
    volatile_corrected: Optional[int]
    volatile_uncorrected: Optional[int]


@keys_as_named
@attrs.define(kw_only=True)
class GpuProcess:
    pid: int
    used_mib: Optional[float]


@keys_as_named
@attrs.define(kw_only=True)
class GpuSample:
    """One GPU in a machine sample (NVML); a field the device does not support is null."""

    index: int
    name: Optional[str]
    uuid: Optional[str]
    util_gpu_pct: Optional[float]
    util_mem_pct: Optional[float]
    mem_used_mib: Optional[float]
    mem_total_mib: Optional[float]
    power_w: Optional[float]
    power_limit_w: Optional[float]
    temp_c: Optional[float]
    clock_sm_mhz: Optional[float]
    clock_mem_mhz: Optional[float]
    throttle_reasons: Optional[list[str]]
    pcie_tx_kib_s: Optional[float]
    pcie_rx_kib_s: Optional[float]
    nvlink: Optional[NvlinkSample]
    ecc_errors: Optional[EccErrors]
    xid_events: Optional[list[int]]
    """XID codes since the previous sample."""
    processes: Optional[list[GpuProcess]]


@keys_as_named
@attrs.define(kw_only=True)
class HostSample:
    """The host in a machine sample; rates and cpu_pct are null on the sampler's first call."""

    cpu_pct: Optional[float]
    per_cpu_pct: Optional[list[float]]
    cpus: Optional[int]
    mem_used_mib: Optional[float]
    mem_total_mib: Optional[float]
    mem_pct: Optional[float]
    swap_used_mib: Optional[float]
    swap_total_mib: Optional[float]
    disk_read_b_s: Optional[float]
    disk_write_b_s: Optional[float]
    net_rx_b_s: Optional[float]
    net_tx_b_s: Optional[float]
    load_1m: Optional[float]
    load_5m: Optional[float]
    load_15m: Optional[float]


@keys_as_named
@attrs.define(kw_only=True)
class JobTreeSample:
    """A job's process tree in a machine sample."""

    cpu_pct: Optional[float]
    """100 = one core; null on the first sight of the tree."""
    rss_mib: float
    procs: int


@keys_as_named
@attrs.define(kw_only=True)
class MachineMessage:
    """The machine sampler's reading, about once a second (``deepdive.telemetry.samplers``)."""

    type: Literal["machine"] = "machine"
    t: float
    gpus: Optional[list[GpuSample]]
    """Null when NVML cannot be used; then `gpu_reason` says why."""
    gpu_reason: Optional[str]
    host: HostSample
    jobs: dict[str, JobTreeSample]
    """By the root pid of each running job's process tree."""
    dropped: int = 0


@keys_as_named
@attrs.define(kw_only=True)
class VerdictMessage:
    """What limits a run now (``deepdive.telemetry.verdict``), published when it changes."""

    type: Literal["verdict"] = "verdict"
    run: str
    kind: str
    sentence: str
    fix: str
    evidence: dict[str, Any]
    t: float
    dropped: int = 0


@keys_as_named
@attrs.define(kw_only=True)
class StreamSnapshot:
    """The first message a subscriber gets: the recent history, oldest first."""

    type: Literal["snapshot"] = "snapshot"
    t: float
    messages: list[dict[str, Any]]
    """Stream messages (samples, machine, verdict, ...) without their own `dropped`."""
    dropped: int = 0


@keys_as_named
@attrs.define(kw_only=True)
class HubQuery:
    """A subscriber asks for stored history on its /stream connection."""

    type: Literal["query"] = "query"
    id: int
    what: Literal["runs", "run"]
    """`runs`: the past runs; `run`: one run's stored samples (rank 0)."""
    run: Optional[str] = None
    fields: Optional[list[str]] = None
    """The sample fields a `run` query wants."""


@keys_as_named
@attrs.define(kw_only=True)
class PastRun:
    """A run the metrics store holds (``MetricsStore.runs``)."""

    run: str
    job: Optional[str]
    name: Optional[str]
    started: float
    ended: Optional[float]
    """Null while the run goes on."""
    outcome: Optional[str]
    dropped: int
    kind: str
    script: Optional[str]
    """The script the engine ran (its setup event's path)."""


@keys_as_named
@attrs.define(kw_only=True)
class HubReply:
    """The answer to a query (or to anything else a subscriber sends: `ok` false); carries the query's id."""

    type: Literal["reply"] = "reply"
    id: Optional[int]
    ok: bool
    error: Optional[str] = None
    runs: Optional[list[PastRun]] = None
    run: Optional[str] = None
    rows: Optional[list[dict[str, Any]]] = None
    """The run's samples: `t` and the fields asked for."""
    total_rows: Optional[int] = None
    """Rows stored before thinning to at most the points a chart draws."""


INGEST_MESSAGES: tuple[type, ...] = (IngestBatch,)
"""What producers send to /ingest."""
INGEST_REPLIES: tuple[type, ...] = (HubError,)
"""What the hub answers on /ingest."""
STREAM_MESSAGES: tuple[type, ...] = (StreamSnapshot, StreamSamples, MachineMessage, VerdictMessage, HubReply)
"""What the hub sends on /stream."""
STREAM_QUERIES: tuple[type, ...] = (HubQuery,)
"""What a subscriber may send on /stream."""


def message_type(cls: type) -> str:
    """The ``type`` a hub message class carries."""
    default = attrs.fields_dict(cls)["type"].default
    assert isinstance(default, str), cls
    return default
