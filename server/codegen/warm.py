"""Warm templates: a torch program's sandboxed checks forked from a process that has imported torch
already, with the limits and the isolation of a cold run.

Importing torch (and ``torch._dynamo``, which an optimizer's first step imports) takes 2-3 s of every
cold sandboxed run here. A *template* (:mod:`deepdive.codegen.zygote`, daemon side in
:mod:`deepdive.codegen.warm_template`) is started inside the isolation layer a cold run would get
(same namespaces, read-only view, no network, scrubbed environment, uid and process limit), imports
torch once, and then forks one fresh process per check. That process starts a session of its own,
gets a fresh work folder (also its HOME and TMPDIR) inside the one folder the template's sandbox binds
writable, the check's own environment (with its own environment marker), RLIMIT_AS and RLIMIT_NPROC,
and is moved into a cgroup made for the check (where the cgroup filesystem is writable) before any of
the program's code runs. Its stdout and stderr are pipes the daemon reads with the same deadline,
tail limit and drain as a cold run.

What checks of one template share: its namespaces (PID, network, IPC, mount: its private /tmp and
/dev/shm) and its memory image at the fork (the same for every check: copy-on-write). A template
serves **one check at a time**, and the next check starts only when nothing of the last one is left:
after the program ends its tree is killed (process group, cgroup, marker), its folder and anything
written beside it are deleted, and the template reports what is still there: a live process, an entry
of /tmp or /dev/shm added or changed since it started, a System V IPC object (in ``plain``: a process
carrying the template's or the check's marker). If anything is, or the check ran past its time limit,
was cancelled, or the template broke, the template is *retired*: killed with its whole PID namespace,
as a cold run's sandbox is, and the next check starts a new one. A check can neither trace the
template nor read its memory (the template is not dumpable; under bubblewrap it is its namespace's
PID 1, under unshare ``nsinit`` is, with every capability); a check that kills its template (possible
as the same uid under unshare or ``plain``) ends itself with it.

A check starts cold instead, and its result's ``start`` says why: ``DEEPDIVE_SANDBOX_WARM=0``; not
Linux; TensorFlow programs (TensorFlow starts threads when imported); a template with more than one
thread after its imports; an address-space limit with less than :data:`ROOM_MB` beside the template's own
mappings; a kept work folder; a command that is neither a script nor ``-c``; every template busy (at
most :data:`MAX_TEMPLATES`); a template that could not start (then for :data:`REFUSE_S`).

Lifetime: a template starts on the first check that needs it (or :func:`prewarm`), serves checks with
the same interpreter, layer, GPU setting, inputs and process limit, and is retired after
:data:`IDLE_S` seconds without a check. It dies with the process that started it however that ends:
end of file on its control socket (only that process holds the other end), ``PR_SET_PDEATHSIG`` on
the process started (from one long-lived thread: the signal follows the *thread* that forked), and
bubblewrap's ``--die-with-parent`` / unshare's ``--kill-child``.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import os
import queue
import socket
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence, Union

from deepdive.codegen import isolation as iso
from deepdive.codegen import sandbox as sb
from deepdive.codegen.warm_template import Check, Template, never_ran

ENV_WARM = "DEEPDIVE_SANDBOX_WARM"
IDLE_S = 300.0
"""Seconds a template waits for its next check before it is retired."""
MAX_TEMPLATES = 2
"""Templates alive at once (each holds about 0.3 GiB resident with torch imported)."""
ROOM_MB = 256
"""Address space a check needs beyond the template's own, or it starts cold."""
PRELOAD = {
    "torch": ("numpy", "torch", "torch.nn", "torch.nn.functional", "torch.optim", "torch.utils.data",
              "torch._dynamo"),
}
"""The modules each template imports; programs that import neither framework use the torch one.
``torch._dynamo`` is what an optimizer's first ``step()`` imports (1.2 s here): every training program."""
COLD = {"tensorflow": "TensorFlow programs start cold: TensorFlow starts threads when imported, so it cannot be "
                      "forked safely"}
REFUSE_S = 600.0
"""After a template for some settings failed to start, checks with those settings start cold this long."""


def why_cold(framework: str, args: Sequence[str], keep_dir: bool) -> Optional[str]:
    """Why a run of ``args`` for ``framework`` cannot be forked from a template here, or None."""
    if os.environ.get(ENV_WARM, "").strip() in ("0", "false", "no", "off"):
        return f"{ENV_WARM}=0"
    if not sys.platform.startswith("linux") or not hasattr(socket, "SCM_CREDENTIALS"):
        return "no warm template on this platform"
    if framework in COLD:
        return COLD[framework]
    if keep_dir:
        return "the work folder is kept"
    if not args or (args[0].startswith("-") and args[0] != "-c") or (args[0] == "-c" and len(args) < 2):
        return "the command is neither a script nor -c"
    return None


# -- the thread that starts templates -----------------------------------------------------------


class _Spawner:
    """One long-lived thread that starts every template and retires idle ones. PR_SET_PDEATHSIG (and
    bubblewrap's --die-with-parent) fire when the *thread* that forked the process ends, so a template
    started from a short-lived worker thread would die with it."""

    def __init__(self) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.thread: Optional[threading.Thread] = None
        self.lock = threading.Lock()

    def call(self, fn: Callable[[], Any]) -> Any:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="deepdive-warm-templates", daemon=True)
                self.thread.start()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.put((fn, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            try:
                fn, future = self.jobs.get(timeout=max(0.1, min(IDLE_S / 4, 5.0)))
            except queue.Empty:
                POOL.retire_idle()
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)
            POOL.retire_idle()


_SPAWNER = _Spawner()


# -- the pool -----------------------------------------------------------------------------------


class _Pool:
    """The templates alive in this process, each leased to one check at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.templates: list[Template] = []
        self.counts = {"started": 0, "checks": 0, "retired": 0}
        self.refused: dict[tuple, tuple[str, float]] = {}

    def _refusal(self, key: tuple) -> Optional[str]:
        reason, until = self.refused.get(key, ("", 0.0))
        return reason if time.monotonic() < until else None

    def lease(self, key: tuple, make: Callable[[], Template]) -> Union[Template, str]:
        """A template for ``key``, started if needed; or why none can serve (every one busy)."""
        with self.lock:
            if self._refusal(key):
                return self._refusal(key)
            for t in [t for t in self.templates if not t.leased and not t.alive()]:
                self._drop(t)
            for t in self.templates:
                if t.key == key and not t.leased:
                    t.leased = True
                    return t
            if len(self.templates) >= MAX_TEMPLATES:
                spare = next((t for t in self.templates if not t.leased), None)
                if spare is None:
                    return f"all {MAX_TEMPLATES} warm templates are busy"
                self._drop(spare)
            t = make()
            t.leased = True
            self.templates.append(t)
            self.counts["started"] += 1
            return t

    def prewarm(self, key: tuple, make: Callable[[], Template]) -> Optional[str]:
        with self.lock:
            if self._refusal(key):
                return self._refusal(key)
            if any(t.key == key and t.alive() for t in self.templates):
                return None
            if len(self.templates) >= MAX_TEMPLATES:
                return f"{MAX_TEMPLATES} warm templates already exist"
            self.templates.append(make())
            self.counts["started"] += 1
            return None

    def release(self, t: Template, *, retire: bool = False, refuse: Optional[str] = None) -> None:
        """Give a leased template back; ``refuse``: why templates for its key are not tried again for
        :data:`REFUSE_S` (a template that could not start, or is not safe to fork)."""
        with self.lock:
            if refuse is not None:
                self.refused[t.key] = (refuse, time.monotonic() + REFUSE_S)
            t.leased = False
            t.last_used = time.monotonic()
            if retire or refuse is not None or not t.alive():
                self._drop(t)

    def retire_idle(self) -> None:
        """Retire templates idle for :data:`IDLE_S`; skipped while the pool is busy (a lease may be
        waiting on the spawner thread that calls this)."""
        if not self.lock.acquire(blocking=False):
            return
        try:
            now = time.monotonic()
            for t in [t for t in self.templates if not t.leased and (now - t.last_used >= IDLE_S or not t.alive())]:
                self._drop(t)
        finally:
            self.lock.release()

    def retire_all(self) -> None:
        with self.lock:
            for t in list(self.templates):
                self._drop(t)

    def _drop(self, t: Template) -> None:
        if t in self.templates:
            self.templates.remove(t)
            self.counts["retired"] += 1
        t.kill()

    def counted(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def stats(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts, alive=len(self.templates))


POOL = _Pool()
atexit.register(POOL.retire_all)


def _settings(framework: str, *, python: str, allow_gpu: bool, isolation: Optional[str], read_only: Sequence[str],
              max_processes: Optional[int]) -> tuple[tuple, Callable[[], Template], int]:
    """The pool key of the template a check with these settings needs, how to start one, and the
    process limit: templates are shared by checks with the same interpreter, layer asked for, GPU
    setting, inputs, process limit and environment."""
    env = sb.scrubbed_env("/", allow_gpu=allow_gpu)
    python = sb.resolve_python(python, env)
    nmax = max_processes or sb.default_max_processes()
    preload = PRELOAD.get(framework, PRELOAD["torch"])
    requested = isolation or os.environ.get(iso.ENV_LAYER) or "auto"
    key = (tuple(preload), python, requested, allow_gpu, tuple(os.path.normpath(p) for p in read_only), nmax,
           tuple(sorted(env.items())))

    def make() -> Template:
        return Template.start(key, preload=preload, python=python, allow_gpu=allow_gpu, isolation=isolation,
                              read_only=read_only, nmax=nmax, spawn=_SPAWNER.call)

    return key, make, nmax


def stats() -> dict[str, int]:
    """Templates started, checks they served, templates retired, templates alive: in this process."""
    return POOL.stats()


def prewarm(framework: str = "torch", *, python: str = sys.executable, allow_gpu: bool = False,
            isolation: Optional[str] = None, read_only: Sequence[str] = (),
            max_processes: Optional[int] = None) -> Optional[str]:
    """Start a template for ``framework`` now, so that the first check finds it ready (a generate
    request calls this before it writes the program). Never waits for the imports; returns why no
    template was started, or None."""
    reason = why_cold(framework, ["program.py"], False)
    if reason is not None:
        return reason
    key, make, _ = _settings(framework, python=python, allow_gpu=allow_gpu, isolation=isolation,
                             read_only=read_only, max_processes=max_processes)
    try:
        return POOL.prewarm(key, make)
    except (OSError, ValueError) as exc:
        return str(exc)


# -- one check ----------------------------------------------------------------------------------


def run(args: Sequence[str], *, files: dict[str, str], timeout_s: float, memory_mb: Optional[int], allow_gpu: bool,
        python: str, stdin: Optional[str], keep_dir: bool, cancel: Optional[threading.Event],
        isolation: Optional[str], max_processes: Optional[int], read_only: Sequence[str],
        framework: str) -> Union[sb.SandboxResult, str]:
    """Run ``python *args`` forked from a template (see :func:`deepdive.codegen.sandbox.run_sandboxed`
    for the arguments); returns the result, or why it must start cold (nothing of the program ran)."""
    reason = why_cold(framework, args, keep_dir)
    if reason is not None:
        return reason
    called = time.monotonic()
    deadline = called + timeout_s
    key, make, nmax = _settings(framework, python=python, allow_gpu=allow_gpu, isolation=isolation,
                                read_only=read_only, max_processes=max_processes)
    leased = POOL.lease(key, make)
    if isinstance(leased, str):
        return leased
    t = leased
    refuse: Optional[str] = None
    try:
        state = t.wait_ready(deadline, cancel)
        if state in ("timeout", "cancelled"):
            return never_ran(t, called, timed_out=state == "timeout", memory_mb=memory_mb, nmax=nmax)
        if state is not None:  # it could not start, or is not safe to fork: not tried again for a while
            refuse = state
            return state
        room = (memory_mb or 0) * 1024 - int(t.ready.get("vm_kib", 0))
        if memory_mb and room < ROOM_MB * 1024:
            return (f"the {memory_mb} MiB address-space limit leaves too little room beside the template's "
                    f"{int(t.ready.get('vm_kib', 0)) // 1024} MiB")
        result = Check(t, args, files, memory_mb, allow_gpu, stdin, nmax, deadline, cancel).run()
        if isinstance(result, sb.SandboxResult):
            POOL.counted("checks")
        return result
    finally:
        POOL.release(t, retire=refuse is not None or t.dead, refuse=refuse)
