"""The worker pool: the coordinator's K trial processes, the GPU each sees, and their lifetimes.

Each worker is ``python -P -m deepdive.tune.worker FD`` (:mod:`deepdive.tune.worker`: torch
imported once, trials run in-process), on one end of a socket pair, in its own session (so that a
kill reaches what the trial started). With GPUs, each worker sees one (``CUDA_VISIBLE_DEVICES``):
one trial per GPU; ``pack=True`` puts several workers on each GPU and lets as many run as the
memory measured on the trials there allows (:meth:`WorkerPool.measured`: torch's allocator peak of a
trial, plus the CUDA context every worker process on that GPU holds). The GPUs are
``CUDA_VISIBLE_DEVICES``'s entries, by index or UUID, resolved through NVML
(:mod:`deepdive.tune.gpus`); each worker's ``CUDA_VISIBLE_DEVICES`` is its entry as written. A worker that died
or hit an out-of-memory error is replaced by a fresh process. Warm workers outlive a study: they
wait in this process for its next study (``reuse_workers``) and stop at exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Optional

import attrs

from deepdive.tune.config import StudyConfig
from deepdive.tune.gpus import VisibleGpu, gpu_label, visible_gpus

PACK_SHARE = 0.9
"""The share of a GPU's memory ``--pack`` fills (the rest: fragmentation, other processes, growth after
the first trial)."""
ASSUMED_CONTEXT_MIB = 1024.0
"""The CUDA context assumed per worker process where NVML cannot say what a process holds (in a container
NVML reports the host's pids): an assumption, not a measurement, kept on the high side of what a CUDA 12
context with torch's kernels and cuBLAS/cuDNN handles takes, so that packing errs towards fewer trials."""


@attrs.define
class Worker:
    """A trial process, its end of the socket pair, and the trial it runs."""

    index: int
    proc: subprocess.Popen
    conn: Connection
    device: Optional[str]  # its CUDA_VISIBLE_DEVICES entry (a GPU index or UUID), or None (CPU)
    threads: str = "1"
    ready: bool = False
    number: Optional[int] = None  # the trial it runs
    started: float = 0.0

    def exit_reason(self) -> str:
        """Why the process ended, in words (its signal, or exit status), waiting up to 2 s for it to end."""
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(2)
            except subprocess.TimeoutExpired:
                code = None
        if code is not None and code < 0:
            name = _signal_name(code)
            return f"the worker process was killed by {name}" + (
                " (out of memory? the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else "")
        return f"the worker process exited with status {code}"


def gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs, as written),
    else every GPU NVML sees by index (:func:`deepdive.tune.gpus.visible_gpus`).

    Raises:
        TuneError: an entry names no GPU, names one ambiguously, or twice.
    """
    return [g.entry for g in visible_gpus()]


def gpu_total_mib(device: str) -> Optional[float]:
    """The memory (MiB, NVML) of the GPU a ``CUDA_VISIBLE_DEVICES`` entry names (an index or a UUID), or
    None when it cannot be read."""
    try:
        found = visible_gpus(device)
    except Exception:  # noqa: BLE001 - no NVML, or an entry that names nothing: unknown
        return None
    return found[0].total_mib if len(found) == 1 else None


@attrs.define
class GpuFit:
    """How many trials fit on one GPU at once under ``--pack``, and the figures that say so.

    Attributes:
        total_mib: the GPU's memory (as the worker's CUDA reported it, else NVML).
        peak_mib: the highest peak of torch's caching allocator in one trial on it.
        context_mib: what a worker process holds outside the allocator (its CUDA context, loaded kernels,
            cuBLAS/cuDNN memory), the highest measured; :data:`ASSUMED_CONTEXT_MIB` where never measured.
        context_note: None when measured (NVML's per-process usage); else why it was assumed.
        workers: the worker processes on this GPU, each of which keeps its context while idle.
        capacity: the trials it runs at once.
    """

    total_mib: float
    peak_mib: float
    context_mib: float
    context_note: Optional[str]
    workers: int
    capacity: int

    def describe(self, label: str) -> str:
        """The fit in words: ``GPU 0 fits 3 trial(s) at once: …``."""
        context = (f"{self.context_mib:.0f} MiB of CUDA context" if self.context_note is None else
                   f"{self.context_mib:.0f} MiB of CUDA context assumed ({self.context_note})")
        return (f"{label} fits {self.capacity} trial(s) at once: {self.peak_mib:.0f} MiB peak per trial in torch's "
                f"allocator, plus {context} in each of its {self.workers} worker process(es), in "
                f"{PACK_SHARE:.0%} of {self.total_mib:.0f} MiB")


def pack_capacity(total_mib: float, peak_mib: float, context_mib: float, workers: int) -> int:
    """Trials that fit at once on a GPU: ``n`` running trials hold ``peak + context`` each and the idle
    workers their context, so ``n * peak + workers * context`` must stay within :data:`PACK_SHARE` of
    its memory (at least 1: a trial always runs)."""
    room = PACK_SHARE * total_mib - max(workers, 1) * context_mib
    return max(1, int(room // max(peak_mib, 1.0)))


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


_POOL: list[Worker] = []  # warm workers kept between studies of this process


def _stop(workers: list[Worker], busy: tuple[int, ...] = ()) -> None:
    """Stop ``workers``: idle ready ones are asked to exit; ``busy`` ones (a trial to abandon) and
    ones still importing torch are killed with their session; any not gone within 5 s too."""
    for worker in workers:
        if worker.index in busy or not worker.ready:  # a trial to abandon, or still importing torch
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            continue
        try:
            worker.conn.send(("stop",))
        except OSError:
            pass
    deadline = time.time() + 5
    for worker in workers:
        try:
            worker.proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            worker.proc.wait()
        try:
            worker.conn.close()
        except OSError:
            pass


@atexit.register
def _stop_pool() -> None:
    workers, _POOL[:] = list(_POOL), []
    _stop(workers)


class WorkerPool:
    """One study's workers (``workers[i].index == i``) and what was measured on its GPUs.

    Args:
        config: the study's options (``parallel``, ``pack``, ``warm``, ``reuse_workers``).
        workspace: the workers' working directory.
        study_name: names the workers' run ids.
        log_dir: where each worker's own output goes (``worker-I.log``).
    """

    def __init__(self, config: StudyConfig, workspace: str, study_name: str, log_dir: Path):
        self.config = config
        self.workspace = workspace
        self.study_name = study_name
        self.log_dir = log_dir
        self.workers: list[Worker] = []
        self.gpu_capacity: dict[str, int] = {}
        self.gpu_peak: dict[str, float] = {}  # torch's allocator peak of a trial (MiB), the highest seen
        self.gpu_context: dict[str, float] = {}  # a worker's memory outside the allocator (MiB), measured
        self.fits: dict[str, GpuFit] = {}  # what set gpu_capacity, per GPU
        self.visible: dict[str, VisibleGpu] = {}  # the GPUs as NVML resolved them, by entry
        self._totals: dict[str, float] = {}  # each GPU's memory as its workers' CUDA reported it
        self._context_notes: dict[str, str] = {}  # why a GPU's context is assumed

    def log_path(self, index: int) -> Path:
        """Worker ``index``'s own output (its start-up, before and between trials)."""
        return self.log_dir / f"worker-{index}.log"

    def _slots(self) -> list[Optional[str]]:
        """One entry per worker: the GPU it sees (a ``CUDA_VISIBLE_DEVICES`` entry), or None on CPU.

        Raises:
            TuneError: ``CUDA_VISIBLE_DEVICES`` names a GPU that is not there (:func:`visible_gpus`).
        """
        found = visible_gpus()
        self.visible = {g.entry: g for g in found}
        visible = [g.entry for g in found]
        k = self.config.parallel
        if not visible:
            return [None] * k
        if self.config.pack:
            return [visible[i % len(visible)] for i in range(k)]
        return [visible[i] for i in range(min(k, len(visible)))]

    def _spawn(self, index: int, device: Optional[str]) -> Worker:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        for key in ("DEEPDIVE_HUB", "DEEPDIVE_EVENTS_FD", "DEEPDIVE_METRICS_OUT"):
            env.pop(key, None)
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1)
                                                                            // self.config.parallel))
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device  # this worker's trials see one GPU
        env["DEEPDIVE_RUN_ID"] = f"tune-{self.study_name}-w{index}"
        argv = [sys.executable, "-P", "-m", "deepdive.tune.worker", str(child.fileno())]
        if not self.config.warm:
            argv.append("--once")
        argv += ["--preload", str(Path(self.config.script).resolve())]  # its imports, paid before the first trial
        out = open(self.log_path(index), "ab")
        try:
            proc = subprocess.Popen(argv, pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, cwd=self.workspace, start_new_session=True)
        finally:
            out.close()
            child.close()
        conn = Connection(parent.detach())
        return Worker(index, proc, conn, device, threads=env["OMP_NUM_THREADS"])

    def start(self) -> None:
        """A worker per slot: a kept warm one on the same device when there is one, else a new process."""
        self.workers = []
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // self.config.parallel))
        for i, device in enumerate(self._slots()):
            kept = next((w for w in _POOL if w.device == device and w.proc.poll() is None),
                        None) if self.config.warm else None
            if kept is not None:
                _POOL.remove(kept)
                kept.index, kept.number, kept.threads = i, None, threads
                self.workers.append(kept)
            else:
                self.workers.append(self._spawn(i, device))

    def replace(self, worker: Worker) -> None:
        """End ``worker`` (killed if still running) and start a fresh process in its place."""
        try:
            worker.conn.close()
        except OSError:
            pass
        if worker.proc.poll() is None:
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        worker.proc.wait()
        self.workers[worker.index] = self._spawn(worker.index, worker.device)

    def stop(self, busy: tuple[int, ...] = ()) -> None:
        """Stop the workers; idle warm ones wait for this process's next study instead (``reuse_workers``)."""
        if self.config.reuse_workers and self.config.warm:
            keep = [w for w in self.workers if w.index not in busy and w.ready and w.proc.poll() is None]
            _POOL.extend(keep)
            self.workers = [w for w in self.workers if w not in keep]
        _stop(self.workers, busy)

    def gpu_busy(self, device: Optional[str]) -> bool:
        """With ``pack``: GPU ``device`` runs as many trials as its measured capacity (one until measured)."""
        if device is None or not self.config.pack:
            return False
        running = sum(1 for w in self.workers if w.device == device and w.number is not None)
        capacity = self.gpu_capacity.get(device, 1)
        return running >= capacity

    def measured(self, device: str, peak: float, context: Optional[float] = None, total: Optional[float] = None,
                 note: Optional[str] = None) -> None:
        """A trial on GPU ``device`` ended: set how many trials fit there (:func:`pack_capacity`).

        Args:
            device: the GPU (its ``CUDA_VISIBLE_DEVICES`` entry).
            peak: the peak of torch's caching allocator in the trial (MiB).
            context: what the worker process held outside the allocator (MiB; CUDA context, kernels,
                library buffers), from NVML; None when NVML could not say (``note`` says why).
            total: the GPU's memory as the worker's CUDA reports it (MiB); None: NVML's.
            note: why ``context`` is None.
        """
        self.gpu_peak[device] = max(self.gpu_peak.get(device, 0.0), peak)
        if context is not None:
            self.gpu_context[device] = max(self.gpu_context.get(device, 0.0), context)
        elif note:
            self._context_notes[device] = note
        if total:
            self._totals[device] = total
        total = self._totals.get(device)
        if not total:
            gpu = self.visible.get(device)
            total = gpu.total_mib if gpu is not None and gpu.total_mib else gpu_total_mib(device)
        if not total:
            return  # unknown memory: one trial at a time (waiting_reason says so)
        if device in self.gpu_context:
            used, why = self.gpu_context[device], None
        else:
            used, why = ASSUMED_CONTEXT_MIB, self._context_notes.get(device, "not measured")
        workers = sum(1 for w in self.workers if w.device == device)
        capacity = pack_capacity(total, self.gpu_peak[device], used, workers)
        self.gpu_capacity[device] = capacity
        self.fits[device] = GpuFit(total, self.gpu_peak[device], used, why, workers, capacity)

    def waiting_reason(self) -> str:
        """Why a trial waits for a worker while every GPU is taken, in words."""
        count = len({w.device for w in self.workers})
        if not self.config.pack:
            return (f"every GPU runs a trial ({count} GPU(s), one trial each; --pack shares a "
                    "GPU by measured peak memory)")
        unknown = sorted({w.device for w in self.workers if w.device is not None and w.device in self.gpu_peak
                          and w.device not in self.fits})
        if unknown:
            return ("one trial at a time on " + ", ".join(gpu_label(d) for d in unknown) +
                    ": its memory size could not be read (neither NVML nor CUDA gave it)")
        if any(w.device not in self.gpu_capacity for w in self.workers):
            return "waiting for a first trial on each GPU to measure its peak memory"
        return "every GPU is full: " + "; ".join(fit.describe(gpu_label(d)) for d, fit in sorted(self.fits.items()))
