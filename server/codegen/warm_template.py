"""The daemon's side of one warm template (:mod:`deepdive.codegen.zygote`): starting it in an isolation
layer, waiting for its imports, forking one check from it, and what happens to the template after
the check (kept, or retired with everything in its PID namespace). The pool, the policy and the
entry points are in :mod:`deepdive.codegen.warm`, whose docstring says what checks of one template
share.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Optional, Sequence, Union

import attrs

from deepdive.codegen import containment
from deepdive.codegen import isolation as iso
from deepdive.codegen import sandbox as sb

SWEEP_S = 3.0
"""How long the daemon waits for a template's report of what a check left behind."""

_ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote.py")
_MAX_MESSAGE = 1 << 20
_CREDS = struct.Struct("iII")


@attrs.define(eq=False)
class Template:
    """One template process and the folder its sandbox binds writable."""

    key: tuple
    layer: str
    notes: list[str]
    plan: iso.Plan
    root: str
    marker: str
    proc: subprocess.Popen
    ctrl: socket.socket
    log: Any
    leased: bool = False
    ready: Optional[dict] = None
    failure: Optional[str] = None
    dead: bool = False
    killed: bool = False
    last_used: float = attrs.Factory(time.monotonic)
    started: float = attrs.Factory(time.monotonic)
    checks: int = 0

    @classmethod
    def start(cls, key: tuple, *, preload: Sequence[str], python: str, allow_gpu: bool, isolation: Optional[str],
              read_only: Sequence[str], nmax: int, spawn: Callable[[Callable[[], Any]], Any]) -> "Template":
        """Start a template in the layer a cold run would get (raises SandboxUnavailable like it).
        ``spawn`` runs the Popen on the long-lived thread the template's parent-death signal follows."""
        root = tempfile.mkdtemp(prefix="deepdive-sandbox-warm-")
        env = sb.scrubbed_env(root, allow_gpu=allow_gpu)
        marker = containment.new_marker()
        env[containment.MARKER_VAR] = marker
        try:
            layer, notes = iso.choose(isolation, python, env, read_only)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        log = tempfile.TemporaryFile(prefix="deepdive-warm-log-")  # the template's own stderr: why it did not start
        try:
            with open(_ZYGOTE, encoding="utf-8") as f:
                source = f.read()
            spec = {"modules": list(preload), "isolated": layer != "plain"}
            plan = iso.build(layer, python=python, args=["-c", source, str(theirs.fileno()), json.dumps(spec)],
                             env=env, workdir=root, max_processes=nmax, allow_gpu=allow_gpu, inputs=read_only,
                             as_pid_1=True)
            if plan.owner_uid is not None:
                os.chmod(root, 0o711)  # the unprivileged uid enters its check's folder, lists nothing
            preexec = sb.preexec(None, None, plan.nproc_in_preexec)
            proc = spawn(lambda: subprocess.Popen(
                plan.argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True, pass_fds=(theirs.fileno(),), preexec_fn=preexec))
        except BaseException:
            ours.close()
            log.close()
            shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            theirs.close()
        return cls(key, layer, notes, plan, root, marker, proc, ours, log)

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def wait_ready(self, deadline: float, cancel: Optional[threading.Event]) -> Optional[str]:
        """None once the template has imported its modules; else ``"timeout"``, ``"cancelled"`` or why
        it cannot serve (one line)."""
        while self.ready is None and self.failure is None:
            if cancel is not None and cancel.is_set():
                return "cancelled"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            readable, _, _ = select.select([self.ctrl], [], [], min(left, 0.1))
            if readable:
                message = self._receive()
                if message is None:
                    self.failure = f"the warm template could not start: {self._log_tail()}"
                elif message.get("op") == "ready":
                    self.ready = message
                    if message.get("threads", 1) > 1:
                        self.failure = (f"the warm template has {message['threads']} threads after importing "
                                        f"{', '.join(message.get('loaded', []))}: forking it is not safe")
        return self.failure

    def _receive(self, flags: int = 0) -> Optional[dict]:
        """The next message from the template, or None at end of file (it is gone)."""
        try:
            data = self.ctrl.recv(_MAX_MESSAGE, flags)
        except BlockingIOError:
            raise
        except OSError:
            return None
        return json.loads(data) if data else None

    def _log_tail(self) -> str:
        try:
            self.log.seek(0)
            lines = [ln for ln in self.log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            lines = []
        code = self.proc.poll()
        return lines[-1][:300] if lines else f"exit {code}" if code is not None else "no answer"

    def send(self, message: dict, fds: Sequence[int] = ()) -> None:
        socket.send_fds(self.ctrl, [json.dumps(message).encode("utf-8")], list(fds))

    def sweep(self, markers: list[str]) -> Optional[list[str]]:
        """What the last check left behind (empty: nothing), None when the template did not answer."""
        try:
            self.send({"op": "sweep", "markers": markers})
        except OSError:
            return None
        deadline = time.monotonic() + SWEEP_S
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.ctrl], [], [], left)
            if not readable:
                break
            message = self._receive()
            if message is None:
                return None
            if message.get("op") == "swept":
                return list(message.get("residue", []))
        return None

    def kill(self) -> None:
        """End the template and, in a namespace layer, every process of its PID namespace (once: its
        pid is not signalled again after it was reaped)."""
        self.dead = True
        if self.killed:
            return
        self.killed = True
        try:
            self.ctrl.close()
        except OSError:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        containment.kill_marked(self.marker)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _emptied(root: str) -> bool:
    """Delete everything in the template's writable folder: the check's own folder and whatever it
    wrote beside it (possible where the check's uid owns the folder: ``+userns``, ``plain``). True when
    nothing is left."""
    try:
        names = os.listdir(root)
    except OSError:
        return False
    for name in names:
        path = os.path.join(root, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, onerror=_writable_and_retry)
            else:
                os.unlink(path)
        except OSError:
            pass
    try:
        return not os.listdir(root)
    except OSError:
        return False


def _writable_and_retry(function: Callable, path: str, _exc: object) -> None:
    """rmtree's error handler: a folder the check made unreadable or unwritable is opened up and the
    deletion tried once more (its owner may; root needs not)."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        function(path)
    except OSError:
        pass


def never_ran(t: Template, called: float, *, timed_out: bool, memory_mb: Optional[int], nmax: int,
              start: str = "warm template (still starting)") -> sb.SandboxResult:
    """The time limit passed (or a cancel came) before any of the program's code ran: while the
    template was still importing its modules, or before its forked process reported."""
    note = "the time limit passed" if timed_out else "cancelled"
    return sb.SandboxResult(None, "", f"deepdive sandbox: {note} before the program started ({start})\n",
                            time.monotonic() - called, timed_out=timed_out, cancelled=not timed_out,
                            isolation=t.layer, max_processes=None,
                            protections=sb.protections(t.plan, t.notes, memory_mb, nmax, False), start=start)


class Check:
    """One check forked from a leased, ready template."""

    def __init__(self, t: Template, args: Sequence[str], files: dict[str, str], memory_mb: Optional[int],
                 allow_gpu: bool, stdin: Optional[str], nmax: int, deadline: float,
                 cancel: Optional[threading.Event]) -> None:
        self.t, self.args, self.files, self.memory_mb = t, list(args), files, memory_mb
        self.allow_gpu, self.stdin, self.nmax, self.deadline, self.cancel = allow_gpu, stdin, nmax, deadline, cancel
        self.marker = containment.new_marker()
        self.pid: Optional[int] = None
        self.returncode: Optional[int] = None
        self.exited = False
        self.finished = False
        self.cgroup: Optional[containment.Cgroup] = None

    def run(self) -> Union[sb.SandboxResult, str]:
        t = self.t
        workdir = tempfile.mkdtemp(prefix="deepdive-sandbox-check-", dir=t.root)
        try:
            sb.write_files(workdir, self.files)
            if t.plan.owner_uid is not None:
                sb.chown_tree(workdir, t.plan.owner_uid)
            env = sb.scrubbed_env(workdir, allow_gpu=self.allow_gpu)
            env[containment.MARKER_VAR] = self.marker
            self.cgroup = containment.Cgroup.create(self.nmax)
            try:
                return self._run(workdir, env)
            finally:
                if self.cgroup is not None:
                    self.cgroup.remove()
        finally:
            if not _emptied(t.root):  # a check that could write beside its folder left something undeletable
                t.dead = True

    def _run(self, workdir: str, env: dict[str, str]) -> Union[sb.SandboxResult, str]:
        t = self.t
        limit = self.memory_mb * 1024 * 1024 if self.memory_mb else None
        nproc = self.nmax if t.layer != "plain" else None
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if self.stdin:
            in_r, in_w = os.pipe()
        else:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        feeding = {"fd": in_w}

        def close_in() -> None:
            fd, feeding["fd"] = feeding["fd"], None
            if fd is not None:
                os.close(fd)

        try:
            start = time.monotonic()
            try:
                t.send({"op": "run", "cwd": workdir, "argv": self.args, "env": env, "as": limit, "nproc": nproc},
                       [in_r, out_w, err_w, theirs.fileno()])
            except OSError as exc:
                t.dead = True
                t.failure = f"the warm template is gone ({exc.strerror})"
                return t.failure
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
                theirs.close()
            problem = self._admit(mine)
            if problem is not None:  # nothing of the program ran; the template is retired
                self.finished = True
                t.dead = True
                if problem in ("timeout", "cancelled"):
                    return never_ran(t, start, timed_out=problem == "timeout", memory_mb=self.memory_mb,
                                     nmax=self.nmax, start="warm template (its process did not report)")
                t.failure = f"the warm template failed: {problem}"  # the check starts cold
                return t.failure
            in_cgroup = bool(self.cgroup is not None and self.cgroup.max_processes is not None
                             and self.cgroup.holds(self.pid))
            running = sb.Running(out_r, err_r, self._ended, t.ctrl.fileno(), in_w, close_in)
            try:
                out, err, timed_out, cancelled = sb.collect(running, self.stdin, self.deadline, self.cancel,
                                                            self._end_tree)
            finally:
                self._end_tree()
            seconds = time.monotonic() - start
            enforced = t.layer != "plain" and (t.plan.owner_uid is not None or os.geteuid() != 0)
            limit_hit = bool(in_cgroup and self.cgroup.limit_hit()) or (
                enforced and any(m in err for m in sb.FORK_FAILURE_MARKERS))
            plan = attrs.evolve(t.plan, nproc_enforced=enforced)
            t.checks += 1
            return sb.finish(self.returncode, out, err, seconds, timed_out=timed_out, cancelled=cancelled,
                             limit_hit=limit_hit, memory_mb=self.memory_mb, workdir=workdir, nmax=self.nmax,
                             held=in_cgroup or enforced, layer=t.layer,
                             protections=sb.protections(plan, t.notes, self.memory_mb if limit else None, self.nmax,
                                                        in_cgroup),
                             start="warm template")
        finally:
            close_in()
            os.close(out_r)
            os.close(err_r)
            mine.close()

    def _admit(self, mine: socket.socket) -> Optional[str]:
        """Wait for the forked child's hello (its pid as this process sees it, from SCM_CREDENTIALS),
        move it into the check's cgroup, let it go. None once it runs; else ``"timeout"``,
        ``"cancelled"`` or why it did not start."""
        t = self.t
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            if self.cancel is not None and self.cancel.is_set():
                return "cancelled"
            readable, _, _ = select.select([mine, t.ctrl], [], [], min(left, 0.1))
            if mine in readable:
                try:
                    data, ancillary, _, _ = mine.recvmsg(64, socket.CMSG_SPACE(_CREDS.size))
                except OSError:
                    data, ancillary = b"", []
                for level, kind, payload in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        self.pid = _CREDS.unpack(payload[:_CREDS.size])[0]
                if data != b"hello" or not self.pid:
                    return "its check did not start"
                if self.cgroup is not None:
                    self.cgroup.add(self.pid)
                mine.sendall(b"go")
                return None
            if t.ctrl in readable:
                return "its check did not start"

    def _ended(self) -> bool:
        """Whether the program's process has ended (the template's ``exited``), without blocking."""
        if self.exited:
            return True
        while True:
            try:
                message = self.t._receive(socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            if message is None:  # the template itself is gone
                self.t.dead = True
                self.exited = True
                return True
            if message.get("op") == "exited":
                self.returncode = message.get("returncode")
                self.exited = True
                return True

    def _end_tree(self) -> None:
        """Kill what is left of the check; the first time, also settle the template: after a normal end
        it reports what the check left (anything retires it); after a timeout, a cancel or a broken
        template it is retired at once, which ends every process of its PID namespace."""
        if self.finished:
            return
        sb.kill_tree(self.pid, self.cgroup, self.marker)
        self.finished = True
        t = self.t
        if not self.exited or t.dead or self.returncode is None:  # the time limit, a cancel, a broken template
            if not self.exited:
                self.returncode = -signal.SIGKILL  # as a cold run's status reads: the kill ended it
            t.kill()
            return
        left = t.sweep([t.marker, self.marker])
        if left is None or left:
            t.kill()
