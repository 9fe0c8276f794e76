"""Keeping a sandboxed process tree countable and killable: a cgroup per run, and an environment marker.

A program can leave its process group and session (``setsid`` after a double fork) and so escape
``killpg``. Two things still find every descendant:

- a **cgroup** made for the run (cgroup v2, and the cgroup v1 ``pids`` hierarchy where that is where the
  ``pids`` controller lives): membership is inherited by every fork and cannot be left without write
  access to the cgroup tree; ``cgroup.kill`` (v2) or a kill loop over ``cgroup.procs`` ends them all, and
  ``pids.max`` bounds how many processes and threads there can be. It needs a writable cgroup
  filesystem (root, or a delegated subtree); where there is none, nothing is created;
- an **environment marker** (``DEEPDIVE_SANDBOX_RUN=<random id>``) that every process of the run
  inherits: a scan of ``/proc/*/environ`` finds and kills them. A program that execs with a cleared
  environment drops the marker, so the scan is the fallback, not the guarantee (the PID namespace of
  :mod:`deepdive.codegen.isolation` and the cgroup are).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Optional

import attrs

MARKER_VAR = "DEEPDIVE_SANDBOX_RUN"


def new_marker() -> str:
    """A random id for one run's :data:`MARKER_VAR`."""
    return uuid.uuid4().hex


def marked_pids(marker: str) -> list[int]:
    """Processes (other than this one) whose environment carries ``MARKER_VAR=marker``."""
    needle = f"{MARKER_VAR}={marker}".encode()
    own = os.getpid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs (not Linux): nothing to scan
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                data = f.read()
        except OSError:  # gone, or another user's process we may not read
            continue
        if data.startswith(needle + b"\0") or (b"\0" + needle + b"\0") in data or data.endswith(b"\0" + needle):
            found.append(int(entry))
    return sorted(found)


def kill_marked(marker: str, *, rounds: int = 20) -> list[int]:
    """SIGKILL every process carrying the marker, again until a scan finds none (a forking program
    adds processes between scans); returns the pids killed."""
    killed: list[int] = []
    for _ in range(rounds):
        pids = [p for p in marked_pids(marker) if p not in killed or _alive(p)]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return sorted(killed)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie keeps its environ until reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


# -- cgroups ------------------------------------------------------------------------------------


def _mounts() -> list[tuple[str, str, str, str]]:
    """(root, mount point, fstype, super options) of each mount, from /proc/self/mountinfo."""
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(fields) >= 5 and len(rest) >= 3:
                    out.append((fields[3], fields[4].replace("\\040", " "), rest[0], rest[2]))
    except OSError:
        pass
    return out


def _own_cgroups() -> dict[str, str]:
    """Hierarchy key ("" for v2, else the v1 controller list) -> this process's cgroup path."""
    out = {}
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    out[parts[1]] = parts[2]
    except OSError:
        pass
    return out


def _cgroup_dirs() -> tuple[Optional[str], Optional[str]]:
    """This process's cgroup directory in the v2 hierarchy and in the v1 ``pids`` hierarchy (None: absent)."""
    own = _own_cgroups()
    v2 = v1_pids = None
    for root, point, fstype, opts in _mounts():
        if fstype == "cgroup2" and "" in own and v2 is None:
            v2 = _join(point, root, own[""])
        elif fstype == "cgroup" and "pids" in opts.split(",") and v1_pids is None:
            key = next((k for k in own if "pids" in k.split(",")), None)
            if key is not None:
                v1_pids = _join(point, root, own[key])
    return v2, v1_pids


def _join(point: str, root: str, path: str) -> Optional[str]:
    rel = path[len(root):] if root != "/" and path.startswith(root) else path
    full = os.path.normpath(point + "/" + rel.lstrip("/"))
    return full if os.path.isdir(full) else None


@attrs.define
class Cgroup:
    """The cgroup directories made for one run (v2 and/or v1 pids)."""

    dirs: list[str]
    max_processes: Optional[int] = None
    """The ``pids.max`` written, None when no hierarchy offered the pids controller."""
    events: Optional[str] = None
    """The ``pids.events`` file that counts refused forks."""

    @classmethod
    def create(cls, max_processes: int) -> Optional["Cgroup"]:
        """Make the run's cgroups where the cgroup filesystem lets us; None where it does not."""
        name = f"deepdive-sandbox-{uuid.uuid4().hex[:12]}"
        group = cls(dirs=[])
        for parent in _cgroup_dirs():
            if parent is None:
                continue
            path = os.path.join(parent, name)
            try:
                os.mkdir(path)
            except OSError:
                continue
            group.dirs.append(path)
            if group.max_processes is None and os.path.exists(os.path.join(path, "pids.max")):
                try:
                    _write(os.path.join(path, "pids.max"), str(max_processes))
                    group.max_processes = max_processes
                    group.events = os.path.join(path, "pids.events")
                except OSError:
                    pass
        return group if group.dirs else None

    def join(self) -> None:
        """Move the calling process into every cgroup of the run. Runs in the child between fork and
        exec, so it only writes and never raises."""
        pid = str(os.getpid()).encode()
        for path in self.dirs:
            try:
                fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            except OSError:
                pass

    def add(self, pid: int) -> None:
        """Move process ``pid`` (as this process sees it) into every cgroup of the run; quietly does
        nothing where the move is refused (:meth:`holds` says whether it held)."""
        for path in self.dirs:
            try:
                _write(os.path.join(path, "cgroup.procs"), str(pid))
            except OSError:
                pass

    def holds(self, pid: int) -> list[str]:
        """The run's cgroup directories that ``pid`` is in (the join can fail quietly)."""
        return [d for d in self.dirs if pid in self.members(d)]

    @staticmethod
    def members(path: str) -> set[int]:
        try:
            with open(os.path.join(path, "cgroup.procs"), encoding="ascii") as f:
                return {int(x) for x in f.read().split()}
        except (OSError, ValueError):
            return set()

    def kill(self) -> None:
        """SIGKILL every process in the run's cgroups (``cgroup.kill`` where the kernel has it)."""
        for path in self.dirs:
            kill_file = os.path.join(path, "cgroup.kill")
            if os.path.exists(kill_file):
                try:
                    _write(kill_file, "1")
                    continue
                except OSError:
                    pass
            for _ in range(50):  # a fork between reading cgroup.procs and the kill: read again
                pids = self.members(path)
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                time.sleep(0.005)

    def limit_hit(self) -> bool:
        """True when the kernel refused a fork or a thread because of ``pids.max``."""
        if self.events is None:
            return False
        try:
            with open(self.events, encoding="ascii") as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "max" and int(value or 0) > 0:
                        return True
        except (OSError, ValueError):
            pass
        return False

    def remove(self, wait_s: float = 2.0) -> None:
        """Remove the (emptied) cgroups; killed processes take a moment to leave them."""
        deadline = time.monotonic() + wait_s
        for path in self.dirs:
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        break
                    self_kill = Cgroup(dirs=[path])
                    self_kill.kill()
                    time.sleep(0.02)


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)
