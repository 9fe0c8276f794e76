"""Process helpers of the job manager: identity checks, tree kills and memory, through psutil.

A pid alone does not name a process for long (pids are reused), so a job's process and a job's
owner are named by pid *and* start time, and nothing is signalled unless both match.
"""

from __future__ import annotations

import os
import signal
from typing import Optional

import psutil

#: Two start times of the same process, read twice, agree to far better than this; a reused pid does not.
SAME_START_S = 0.5


def killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def started(pid: int) -> Optional[float]:
    """The process's start time (seconds since the epoch), or None when it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_process(pid: Optional[int], start: Optional[float]) -> bool:
    """True when ``pid`` is still the very process that started at ``start`` (and is not a zombie)."""
    if not pid or start is None:
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - start) < SAME_START_S and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_live_owner(pid: Optional[int], start: Optional[float]) -> bool:
    """Whether the process that owns a job's JobManager still runs.

    Records written before owners recorded their start time fall back to a weaker check: a live
    process with ``deepdive`` on its command line.
    """
    if not pid:
        return False
    if start is not None:
        return is_process(pid, start)
    try:
        return "deepdive" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a job's group and every descendant of its leader, in whatever session (torchrun's workers)."""
    try:
        tree = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        tree = []
    killpg(pid, sig)
    for proc in tree:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def kill_tagged_processes(env_key: str, job_id: str) -> int:
    """Kill processes whose environment says they belong to ``job_id`` (our own user's only)."""
    killed = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(env_key) == job_id:
                proc.kill()
                killed += 1
        except psutil.Error:
            continue
    return killed
