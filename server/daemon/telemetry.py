"""The daemon's telemetry service: the hub, the machine sampler, the metrics store and the verdict.

Started at ``initialize``. Jobs get the hub's ingest URL (with the token) in ``DEEPDIVE_HUB``, so a
training script's reporter streams to it; the sampler publishes a machine sample every interval
(1 s by default, ``DEEPDIVE_SAMPLE_INTERVAL`` down to 0.1 s); what arrives is written to
``metrics.db`` beside the job records, in a worker thread, once a second; and for every run that
reported in the last 30 s a live bottleneck verdict is published when it changes. Nothing here runs
on the event loop for long: sampling and SQLite go through ``asyncio.to_thread``.

Memory and disk are bounded in bytes, each bound a whole number of MiB from the environment:

=================================  =======  ==========================================================
variable                           default  bounds
=================================  =======  ==========================================================
``DEEPDIVE_HUB_MEMORY_MIB``        64       the hub's recent messages (the dashboard's snapshot), all runs
``DEEPDIVE_HUB_RUN_MEMORY_MIB``    16       the same, per run
``DEEPDIVE_METRICS_DB_MIB``        1024     ``metrics.db`` (the oldest rows of any run go first)
``DEEPDIVE_METRICS_RUN_MIB``       256      one run's rows in ``metrics.db`` (its oldest go first)
=================================  =======  ==========================================================

Strings longer than 8,192 characters are cut by the hub (:mod:`deepdive.telemetry.limits`); samples
waiting for their write (once a second) are bounded too (``PENDING_BYTES``, 32 MiB,
:mod:`deepdive.telemetry.pending`). What the store's bounds or the write queue drop is counted per
run (``MetricsStore.runs()[i]["dropped"]``, ``MetricsStore.stats()``), never silently lost.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from deepdive.protocol import HubInfo, RunThroughput, TelemetrySummary
from deepdive.telemetry import retention
from deepdive.telemetry.hub import HISTORY_BYTES, HISTORY_RUN_BYTES, Hub
from deepdive.telemetry.pending import Batch, PendingWrites
from deepdive.telemetry.samplers import MachineSampler, check_interval
from deepdive.telemetry.store import KINDS, MetricsStore
from deepdive.throughput import newest
from deepdive.telemetry.verdict import fold_engine_event, verdict

log = logging.getLogger(__name__)

ENV_INTERVAL = "DEEPDIVE_SAMPLE_INTERVAL"
ENV_DASHBOARD_DIR = "DEEPDIVE_DASHBOARD_DIR"
MIB = 1 << 20
# environment variable -> (the keyword it sets, its default in bytes); see the module docstring
ENV_BOUNDS = {
    "DEEPDIVE_HUB_MEMORY_MIB": ("history_bytes", HISTORY_BYTES),
    "DEEPDIVE_HUB_RUN_MEMORY_MIB": ("history_run_bytes", HISTORY_RUN_BYTES),
    "DEEPDIVE_METRICS_DB_MIB": ("max_bytes", retention.MAX_BYTES),
    "DEEPDIVE_METRICS_RUN_MIB": ("run_max_bytes", retention.RUN_MAX_BYTES),
}
FLUSH_INTERVAL_S = 1.0
COMPACT_EVERY_S = 60.0
ACTIVE_RUN_S = 30.0
WINDOW = 120
SUMMARY_INTERVAL_S = 1.0
SUMMARY_RUN_S = 5.0  # a run that reported more recently than this shows in the status bar
ENGINE_FACTS_RUNS = 256  # runs whose engine facts (link, compression decision) the verdict remembers
_RUN_KINDS = {"doctor-deep": "check"}  # a job's kind -> its run's kind in the store, where they differ
HISTORY_RUNS = 100  # past runs a dashboard can list
HISTORY_POINTS = 1500  # at most this many rows of one run go to a dashboard
HISTORY_MAX_FIELDS = 16
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,63}")
PENDING_BYTES = 32 * MIB  # samples waiting for the next write, weighed by their JSON text
RECENT_STRING_CHARS = 64  # the verdict's window keeps numbers and short strings (precision, comm_mode)
# What a dashboard gets of a past run when it names no fields (see deepdive.engine.reporter).
HISTORY_FIELDS = ("step", "epoch", "loss", "step_time_s", "data_wait_s", "samples_per_s", "loss_scale",
                  "skipped_steps", "comm_time_s", "comm_overlap", "mem_allocated_mib", "lr")


def byte_bounds(environ: Mapping[str, str]) -> dict[str, int]:
    """The byte bounds from the environment (:data:`ENV_BOUNDS`), in bytes, by keyword.

    Raises:
        ValueError: a value that is not a whole number of MiB from 1 on, or a run's bound on disk
            larger than the store's.
    """
    bounds: dict[str, int] = {}
    for name, (key, default) in ENV_BOUNDS.items():
        raw = environ.get(name, "").strip()
        if not raw:
            bounds[key] = default
            continue
        mib = int(raw) if raw.isdigit() else 0
        if mib < 1:
            raise ValueError(f"{name} must be a whole number of MiB, 1 or more, got {raw!r}: fix or unset it")
        bounds[key] = mib * MIB
    if bounds["run_max_bytes"] > bounds["max_bytes"]:
        raise ValueError(f"DEEPDIVE_METRICS_RUN_MIB ({bounds['run_max_bytes'] // MIB}) is larger than "
                         f"DEEPDIVE_METRICS_DB_MIB ({bounds['max_bytes'] // MIB}): a run's share of metrics.db "
                         "cannot exceed the whole; lower it or raise the other")
    return bounds


def dashboard_dir() -> Optional[Path]:
    """The built dashboard bundle: ``$DEEPDIVE_DASHBOARD_DIR``, else ``out/webview`` beside the package
    (a repository checkout or the installed extension); None when it is not built."""
    override = os.environ.get(ENV_DASHBOARD_DIR)
    if override:
        return Path(override)
    built = Path(__file__).resolve().parents[2] / "out" / "webview"
    return built if (built / "index.html").is_file() else None


class TelemetryService:
    """Hub + sampler + store for one daemon.

    Args:
        directory (Path): where ``metrics.db`` goes (the daemon's state folder).
        job_pids (callable): returns the root pids of the running jobs (their trees are sampled).
        port (int): the hub's port (0: a free one).
        prometheus (bool): also serve ``/metrics`` in Prometheus' text format.
        interval (float | None): machine sampling period (default ``DEEPDIVE_SAMPLE_INTERVAL`` or 1 s).
        on_summary (callable | None): gets a :class:`TelemetrySummary` about once a second (the
            daemon sends it to the editor's status bar).
        on_message (callable | None): gets every ingest batch, on the event loop, after it is
            taken in (the daemon lists runs started in a terminal from them).
    """

    def __init__(self, directory: Path, job_pids: Callable[[], Iterable[int]], *, port: int = 0,
                 prometheus: bool = False, interval: Optional[float] = None,
                 on_summary: Optional[Callable[[TelemetrySummary], None]] = None,
                 on_message: Optional[Callable[[dict[str, Any]], None]] = None):
        self.directory = Path(directory)
        self.interval = check_interval(interval if interval is not None else float(os.environ.get(ENV_INTERVAL, "1.0")))
        self._job_pids = job_pids
        try:
            self._bounds, self._bounds_error = byte_bounds(os.environ), None
        except ValueError as exc:  # reported by start(), where the daemon records why telemetry is off
            self._bounds, self._bounds_error = byte_bounds({}), str(exc)
        self.hub = Hub(port=port, static_dir=dashboard_dir(), prometheus=prometheus, on_batch=self._on_batch,
                       history=self._history, history_bytes=self._bounds["history_bytes"],
                       history_run_bytes=self._bounds["history_run_bytes"])
        self.store: Optional[MetricsStore] = None
        self.sampler: Optional[MachineSampler] = None
        self._pending = PendingWrites(PENDING_BYTES)
        self._pending_machine: list[dict[str, Any]] = []
        self._pending_ends: list[tuple[str, float]] = []
        self._recent: dict[str, collections.deque] = {}
        self._last_seen: dict[str, float] = {}
        self._machine: collections.deque = collections.deque(maxlen=WINDOW)
        self._verdicts: dict[str, Optional[str]] = {}
        self._engine: dict[str, dict[str, Any]] = {}  # per run: what the verdict reads of its events
        self._job_runs: set[str] = set()
        self._on_summary = on_summary
        self._on_message = on_message
        self._summary_at = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        self.error: Optional[str] = None

    async def start(self) -> None:
        """Start the hub, open the store, start sampling.

        Raises:
            ValueError: a byte bound in the environment is not valid (the message says which).
            OSError: the hub's port cannot be bound.
        """
        if self._bounds_error is not None:
            raise ValueError(self._bounds_error)
        await self.hub.start()
        self.store = await asyncio.to_thread(MetricsStore, self.directory / "metrics.db",
                                             max_bytes=self._bounds["max_bytes"],
                                             run_max_bytes=self._bounds["run_max_bytes"])
        self.sampler = await asyncio.to_thread(MachineSampler)
        self._tasks = [asyncio.ensure_future(self._sample_loop()), asyncio.ensure_future(self._flush_loop())]
        log.info("telemetry hub on %s; sampling every %.1f s; GPUs: %s", self.hub.url, self.interval,
                 "NVML" if self.sampler.gpu_reason is None else self.sampler.gpu_reason)

    def dashboard_url(self) -> str:
        return self.hub.dashboard_url

    def info(self) -> HubInfo:
        return HubInfo(running=True, url=self.hub.url, ingest_url=self.hub.ingest_url,
                       stream_url=self.hub.stream_url, token=self.hub.token, dashboard_url=self.hub.dashboard_url)

    def job_env(self) -> dict[str, str]:
        return {"DEEPDIVE_HUB": self.hub.ingest_url}

    def run_started(self, run: str, name: str, job_kind: Optional[str] = None) -> None:
        """A daemon job started: its run is listed by the job's title and kind (past runs' tabs)."""
        self._job_runs.add(run)
        if self.store is not None:
            kind = _RUN_KINDS.get(job_kind or "", job_kind) if job_kind else None
            asyncio.ensure_future(asyncio.to_thread(self.store.start_run, run, run, name, None,
                                                    kind if kind in KINDS else None))

    def run_ended(self, run: str, outcome: str) -> None:
        if self.store is not None:
            asyncio.ensure_future(asyncio.to_thread(self.store.end_run, run, outcome))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.hub.stop()
        if self.store is not None:
            await asyncio.to_thread(self._write, *self._take_pending())
            await asyncio.to_thread(self.store.close)
        if self.sampler is not None:
            await asyncio.to_thread(self.sampler.close)

    # -- producers -> store and verdict ----------------------------------------------------------

    def _on_batch(self, message: dict[str, Any], nbytes: int) -> None:
        run, rank = str(message.get("run")), int(message.get("rank") or 0)
        samples = message.get("samples") or []
        if samples:
            self._pending.add(run, rank, list(samples), nbytes)
            if rank == 0:
                self._recent.setdefault(run, collections.deque(maxlen=WINDOW)).extend(map(_slim, samples))
        if (rank == 0 and run not in self._job_runs
                and any(e.get("kind") == "summary" for e in message.get("events") or ())):
            # the engine's loop finished: the run is over (a daemon job's run gets the job's outcome)
            self._pending_ends.append((run, time.time()))
        if rank == 0 and message.get("events"):
            self._note_engine_events(run, message["events"])
            self._note_script(run, message["events"])
        self._last_seen[run] = time.time()
        if self._on_message is not None:
            self._on_message(message)  # runs from a terminal become entries of the Jobs view

    def _note_engine_events(self, run: str, events: list[Any]) -> None:
        """The run's link and compression decision, for its verdict; kept for the newest runs only
        (a run can pause longer than it counts as active, and its setup event does not come again)."""
        facts = self._engine.pop(run, None) or {}
        for event in events:
            if isinstance(event, dict):
                fold_engine_event(facts, event)
        self._engine[run] = facts  # last in the dict: the most recently heard from
        while len(self._engine) > ENGINE_FACTS_RUNS:
            del self._engine[next(iter(self._engine))]

    def _note_script(self, run: str, events: list[Any]) -> None:
        """The script a run's setup event names goes to the store: past runs are listed by it."""
        for event in events:
            if (self.store is not None and isinstance(event, dict) and event.get("kind") == "setup"
                    and isinstance(event.get("script"), str) and event["script"]):
                started = event.get("t") if isinstance(event.get("t"), (int, float)) else None
                asyncio.ensure_future(asyncio.to_thread(self.store.note_script, run, event["script"], started))

    def _take_pending(self) -> tuple[list[Batch], dict[str, int], list[dict[str, Any]], list[tuple[str, float]]]:
        """Hand over what arrived, on the loop thread (the only one that adds to these)."""
        pending, dropped = self._pending.take()
        machine, self._pending_machine = self._pending_machine, []
        ends, self._pending_ends = self._pending_ends, []
        return pending, dropped, machine, ends

    def _write(self, pending: list[Batch], dropped: dict[str, int], machine: list[dict[str, Any]],
               ends: list[tuple[str, float]]) -> None:
        """In a worker thread: the SQLite writes, and the count of what the write queue dropped."""
        assert self.store is not None
        for run, count in dropped.items():
            self.store.count_dropped(run, count)
        for run, rank, samples in pending:
            self.store.add_samples(run, rank, samples)
        if machine:
            self.store.add_machine(machine)
        for run, t in ends:
            try:
                self.store.end_run(run, "completed", ended=t)
            except KeyError:  # a run that sent its summary but no sample
                self.store.start_run(run, started=t)
                self.store.end_run(run, "completed", ended=t)

    async def _flush_loop(self) -> None:
        compacted = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await asyncio.to_thread(self._write, *self._take_pending())
                if time.monotonic() - compacted > COMPACT_EVERY_S:
                    compacted = time.monotonic()
                    assert self.store is not None
                    await asyncio.to_thread(self.store.compact)
            except Exception:
                log.exception("writing telemetry to %s failed", self.directory / "metrics.db")

    # -- machine sampling -------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        assert self.sampler is not None
        while True:
            started = time.monotonic()
            try:
                sample = await asyncio.to_thread(self.sampler.sample, list(self._job_pids()))
            except Exception:
                log.exception("machine sampling failed")
            else:
                self._machine.append(sample)
                self._pending_machine.append(sample)
                self.hub.publish(sample)
                self._publish_verdicts()
                self._send_summary()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def _publish_verdicts(self) -> None:
        now = time.time()
        for run, seen in list(self._last_seen.items()):
            if now - seen > ACTIVE_RUN_S:
                del self._last_seen[run]
                self._recent.pop(run, None)
                continue
            found = verdict(list(self._recent.get(run, ())), list(self._machine), self._engine.get(run))
            if found is None:
                continue
            key = f"{found['kind']}|{found['sentence']}"
            if key != self._verdicts.get(run):
                self._verdicts[run] = key
                self.hub.publish({"type": "verdict", "run": run, **found})

    # -- history for dashboards (the hub calls this in a worker thread) ---------------------------

    def _history(self, query: dict[str, Any]) -> dict[str, Any]:
        if self.store is None:
            raise ValueError("the metrics store is not open yet; try again in a moment")
        what = query.get("what")
        if what == "runs":
            return {"runs": self.store.runs(limit=HISTORY_RUNS)}
        if what == "run":
            run = query.get("run")
            if not isinstance(run, str) or not run:
                raise ValueError('a "run" query needs "run": the run id from the runs list')
            fields = query.get("fields") or list(HISTORY_FIELDS)
            if (not isinstance(fields, list) or len(fields) > HISTORY_MAX_FIELDS
                    or not all(isinstance(f, str) and _FIELD.fullmatch(f) for f in fields)):
                raise ValueError(f"fields must be a list of at most {HISTORY_MAX_FIELDS} metric names such as "
                                 '"loss" or "samples_per_s"')
            rows = self.store.query(run, fields=list(fields), rank=0)
            return {"run": run, "rows": thin(rows, HISTORY_POINTS), "total_rows": len(rows)}
        raise ValueError(f'unknown query {what!r}: ask for "runs" or "run"')

    # -- the status bar's summary -----------------------------------------------------------------

    def _send_summary(self) -> None:
        if self._on_summary is None or time.monotonic() - self._summary_at < SUMMARY_INTERVAL_S:
            return
        self._summary_at = time.monotonic()
        try:
            self._on_summary(self.summary())
        except Exception:
            log.exception("sending the telemetry summary failed")

    def summary(self) -> TelemetrySummary:
        """The newest machine sample and the throughput of the runs reporting now, in a few numbers."""
        now = time.time()
        machine = self._machine[-1] if self._machine else None
        out = TelemetrySummary(t=machine["t"] if machine else now)
        if machine is not None:
            gpus = machine.get("gpus")
            if gpus:
                utils = [g["util_gpu_pct"] for g in gpus if g.get("util_gpu_pct") is not None]
                out.gpu_util = round(sum(utils) / len(utils), 1) if utils else None
                out.gpu_count = len(gpus)
                used = sum(g.get("mem_used_mib") or 0.0 for g in gpus)
                total = sum(g.get("mem_total_mib") or 0.0 for g in gpus)
                out.gpu_memory_used = round(used / total, 4) if total else None
            else:
                out.gpu_reason = machine.get("gpu_reason")
            out.host_cpu = (machine.get("host") or {}).get("cpu_pct")
        runs = sorted(((seen, run) for run, seen in self._last_seen.items() if now - seen <= SUMMARY_RUN_S), reverse=True)
        for _, run in runs:
            figure = newest(list(self._recent.get(run, ())))  # the engine's own figure, as it sent it
            if figure is None:
                continue
            out.runs.append(RunThroughput(run_id=run, value=figure.value, unit=figure.unit, step=figure.step,
                                          label=figure.label, job_id=run if run in self._job_runs else None))
        return out


def _slim(sample: dict[str, Any]) -> dict[str, Any]:
    """What the verdict and the throughput read of a sample: its numbers and short strings."""
    return {key: value for key, value in sample.items()
            if not isinstance(value, (str, list, dict))
            or (isinstance(value, str) and len(value) <= RECENT_STRING_CHARS)}


def thin(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` rows, evenly spaced, keeping the first and the last."""
    if len(rows) <= limit:
        return rows
    step = (len(rows) - 1) / (limit - 1)
    return [rows[round(i * step)] for i in range(limit)]
