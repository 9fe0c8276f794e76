"""The worker pool: the coordinator's K trial processes, the GPU each sees, and their lifetimes.

Each worker is ``python -P -m deepdive.tune.worker FD`` (:mod:`deepdive.tune.worker`: torch
imported once, trials run in-process), on one end of a socket pair, in its own session (so that a
kill reaches what the trial started). With GPUs, each worker sees one (``CUDA_VISIBLE_DEVICES``):
one trial per GPU; ``pack=True`` puts several workers on each GPU and lets as many run as the peak
memory measured on the first trial there allows (:meth:`WorkerPool.measured`). A worker that died
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


@attrs.define
class Worker:
    """A trial process, its end of the socket pair, and the trial it runs."""

    index: int
    proc: subprocess.Popen
    conn: Connection
    device: Optional[str]  # a GPU index or None (CPU)
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
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else every one NVML sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return []


def gpu_total_mib(device: str) -> Optional[float]:
    """GPU ``device``'s memory in MiB (NVML), or None when it cannot be read."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(device))
            return pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


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
        self.gpu_peak: dict[str, float] = {}

    def log_path(self, index: int) -> Path:
        """Worker ``index``'s own output (its start-up, before and between trials)."""
        return self.log_dir / f"worker-{index}.log"

    def _slots(self) -> list[Optional[str]]:
        """One entry per worker: the GPU it sees, or None on CPU."""
        visible = gpus()
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

    def measured(self, device: str, peak: float) -> None:
        """A trial's peak memory on GPU ``device`` (MiB): how many trials fit there, in 90 % of its memory."""
        self.gpu_peak[device] = max(self.gpu_peak.get(device, 0.0), peak)
        total = gpu_total_mib(device)
        if total:
            self.gpu_capacity[device] = max(1, int(0.9 * total // max(self.gpu_peak[device], 1.0)))

    def waiting_reason(self) -> str:
        """Why a trial waits for a worker while every GPU is taken, in words."""
        count = len({w.device for w in self.workers})
        if not self.config.pack:
            return (f"every GPU runs a trial ({count} GPU(s), one trial each; --pack shares a "
                    "GPU by measured peak memory)")
        if any(w.device not in self.gpu_capacity for w in self.workers):
            return "waiting for a first trial on each GPU to measure its peak memory"
        return ("every GPU is full: " + ", ".join(
            f"GPU {d} fits {c} trial(s) of {self.gpu_peak.get(d, 0):.0f} MiB peak"
            for d, c in sorted(self.gpu_capacity.items())))
