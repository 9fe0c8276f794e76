"""Run a Python program in a sandboxed subprocess: time, memory and process limits, a scrubbed
environment, a fresh temporary work folder, and the strongest isolation layer this machine offers.

What every run guarantees, in every layer:

- the environment is scrubbed (PATH, locale, PYTHONPATH, LD_LIBRARY_PATH; HOME and TMPDIR are the work
  folder; no tokens or keys; no GPU unless allowed);
- the run returns within about a second after its time limit (or a cancel), with the whole process tree
  killed: the process group, the run's cgroup where one could be made, every process carrying the run's
  environment marker, and in a namespace layer the PID namespace, whose every process the kernel kills
  when its PID 1 ends. Output is read with its own deadline, so a detached (``setsid``) descendant that
  holds stdout open cannot keep the run going; the last 8 MiB of each stream are kept;
- the address space is limited (RLIMIT_AS) when a memory limit is given.

What the isolation layers add (:mod:`deepdive.codegen.isolation` has the details, and
``SandboxResult.protections`` says what held for each run):

- ``bwrap`` / ``unshare`` (namespaces): no network (a network namespace of its own with only its own
  loopback: the host's 127.0.0.1 and every other address are unreachable); a read-only view of only
  the interpreter, its packages and the system libraries (not the user's home, not the project folder
  beyond the package folders that imports need), plus the input files the prompt named (``read_only``);
  a fresh /proc that shows only the run's own processes (so no other process's environment); a private
  /tmp; the work folder as the only writable host folder; no capabilities, and as root an unprivileged
  uid (65534; uid 0 is kept, still without capabilities, when an input is readable only by root, and
  the result says so); a process-and-thread limit (cgroup ``pids.max`` where writable, and RLIMIT_NPROC
  wherever the program's real uid is not 0, which the kernel exempts).
- ``plain`` (no namespace tool works here): none of that: the program can read and write whatever
  the user running Deepdive can, open network connections, and read other processes' /proc entries
  that the user may read. The process limit then holds only through a writable cgroup, and without
  one a descendant that both leaves the session and execs with a cleared environment is not found:
  the run still returns on time, but that process survives it.

Checks of a PyTorch program are forked from a warm template instead of starting a new interpreter
(``template=``; :mod:`deepdive.codegen.warm` says how every guarantee above holds there and what checks
of one template share); ``SandboxResult.start`` says which path ran.

Not guaranteed in any layer: protection against kernel vulnerabilities (the namespaces share the
host's kernel; there is no seccomp filter), CPU share, disk space in the work folder and /tmp (tmpfs:
memory), and, with ``allow_gpu``, isolation of the GPU devices and /sys that CUDA needs.
"""

from __future__ import annotations

import ctypes
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Optional, Sequence

import attrs

from deepdive.codegen import containment
from deepdive.codegen import isolation as iso

# Defaults from measurements (torch 2.13 CPU, 2 cores): importing torch maps about 0.8 GiB of address
# space; the builtin programs' --smoke runs peak at 0.86-1.17 GiB (VmPeak; ResNet-18 1.0, the
# prototypical network 1.17) with 0.34-0.69 GiB resident. TensorFlow maps about 1.6 GiB at import and
# grows with its thread pools (one per core). RLIMIT_AS counts address space, not resident memory, and
# more cores mean more thread stacks, so the limits leave 3-4x room.
DEFAULT_MEMORY_MB = {"torch": 4096, "tensorflow": 8192}

# Environment variables a sandboxed program keeps (no tokens, keys or user configuration).
_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "LD_LIBRARY_PATH", "TZ", "SYSTEMROOT")

_OOM_MARKERS = ("MemoryError", "std::bad_alloc", "can't allocate memory", "Cannot allocate memory",
                "out of memory", "failed to allocate", "DefaultCPUAllocator", "ResourceExhaustedError",
                "OOM when allocating", "Failed to allocate", "mmap failed", "pthread_create failed",
                "Resource temporarily unavailable")
# A fork the process limit refused, as Python reports it (EAGAIN); thread failures stay ambiguous with
# an exhausted address space, so they are not taken as evidence.
FORK_FAILURE_MARKERS = ("BlockingIOError: [Errno 11]",)

MAX_PROCESSES_VAR = "DEEPDIVE_SANDBOX_MAX_PROCESSES"
OUTPUT_LIMIT = 8 * 1024 * 1024
"""Bytes of each output stream kept (the tail)."""
DRAIN_S = 1.0
"""After the tree is killed, how long its output is still read."""

_PR_SET_PDEATHSIG = 1
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # bound here: the child must not load libraries
if _prctl is not None:  # Linux
    _prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


@attrs.define
class SandboxResult:
    returncode: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    out_of_memory: bool = False
    workdir: str = ""
    cancelled: bool = False
    process_limit_hit: bool = False
    """The kernel refused a fork or a thread because of the process limit (``max_processes``)."""
    max_processes: Optional[int] = None
    """The process-and-thread limit that held (None: none could be enforced here)."""
    isolation: str = ""
    """The layer the program ran in: bwrap, unshare, bwrap+userns, unshare+userns or plain."""
    protections: list[str] = attrs.Factory(list)
    """What held for this run, in words (and, for ``plain``, what did not)."""
    start: str = "cold start"
    """How the program's process began: ``warm template`` (forked from a template that had imported
    torch: :mod:`deepdive.codegen.warm`) or ``cold start`` (a new interpreter; in brackets why, when a
    template was asked for and could not serve the run)."""

    def describe(self) -> str:
        """One line for the user: ``sandbox bwrap: warm template, scrubbed environment, ...``."""
        return f"sandbox {self.isolation}: {', '.join([self.start, *self.protections])}"


def scrubbed_env(home: str, *, allow_gpu: bool = False) -> dict[str, str]:
    """A minimal environment: PATH and locale, HOME and TMPDIR in the sandbox, offline model hubs, no GPU unless allowed."""
    env = {k: os.environ[k] for k in _KEEP if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=home, TMPDIR=home, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0",
               PYTHONIOENCODING="utf-8", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HOME=os.path.join(home, ".hf"), MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="2",
               MALLOC_ARENA_MAX="2", TOKENIZERS_PARALLELISM="false")
    if allow_gpu:
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def default_max_processes() -> int:
    """The process-and-thread limit: ``$DEEPDIVE_SANDBOX_MAX_PROCESSES``, else 256 + 32 per CPU (threads
    count too: TensorFlow starts thread pools per core)."""
    raw = os.environ.get(MAX_PROCESSES_VAR, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 8:
            raise ValueError(f"{MAX_PROCESSES_VAR}={raw!r} must be a whole number of at least 8")
        return value
    return 256 + 32 * (os.cpu_count() or 1)


def run_sandboxed(args: Sequence[str], *, files: dict[str, str], timeout_s: float, memory_mb: Optional[int],
                  allow_gpu: bool = False, python: str = sys.executable, stdin: Optional[str] = None,
                  keep_dir: bool = False, cancel: Optional[threading.Event] = None, isolation: Optional[str] = None,
                  max_processes: Optional[int] = None, read_only: Sequence[str] = (),
                  template: Optional[str] = None) -> SandboxResult:
    """Write ``files`` into a fresh temporary directory and run ``python *args`` there.

    Args:
        args: arguments after the interpreter, e.g. ``["program.py", "--smoke"]``.
        files: name -> text, written into the working directory first.
        timeout_s: wall-clock limit; the whole process tree is killed when it passes, and the run returns
            within about a second of it even when a detached descendant holds its output open.
        memory_mb: address-space limit (RLIMIT_AS) or None for none.
        cancel: when set, the process tree is killed within about 0.1 s (``cancelled`` in the result).
        isolation: the layer (:mod:`deepdive.codegen.isolation`); None: ``$DEEPDIVE_SANDBOX``, else the
            strongest this machine offers. A forced layer that cannot run raises
            :class:`~deepdive.codegen.isolation.SandboxUnavailable` (a ValueError, one line).
        max_processes: processes and threads the run may have at once (default
            :func:`default_max_processes`); enforced by a cgroup and/or RLIMIT_NPROC where they hold.
        read_only: absolute paths outside the work folder the program may read (a local model folder the
            prompt named), shown read-only at the same path in a namespace layer.
        template: the program's framework (``"torch"``, ``"tensorflow"``, ``"none"``) to fork the run from
            a warm template that has it imported (:mod:`deepdive.codegen.warm`), with the same limits and
            isolation; None: a cold start. Where no template can serve the run it starts cold, and the
            result's ``start`` says why.
    """
    start = "cold start"
    if template is not None:
        from deepdive.codegen import warm

        outcome = warm.run(args, files=files, timeout_s=timeout_s, memory_mb=memory_mb, allow_gpu=allow_gpu,
                           python=python, stdin=stdin, keep_dir=keep_dir, cancel=cancel, isolation=isolation,
                           max_processes=max_processes, read_only=read_only, framework=template)
        if isinstance(outcome, SandboxResult):
            return outcome
        start = f"cold start ({outcome})"
    workdir = tempfile.mkdtemp(prefix="deepdive-sandbox-")
    try:
        write_files(workdir, files)
        env = scrubbed_env(workdir, allow_gpu=allow_gpu)
        marker = containment.new_marker()
        env[containment.MARKER_VAR] = marker
        python = resolve_python(python, env)
        limit = memory_mb * 1024 * 1024 if memory_mb else None
        nmax = max_processes or default_max_processes()
        layer, notes = iso.choose(isolation, python, env, read_only)
        plan = iso.build(layer, python=python, args=args, env=env, workdir=workdir, max_processes=nmax,
                         allow_gpu=allow_gpu, inputs=read_only)
        if plan.owner_uid is not None:
            chown_tree(workdir, plan.owner_uid)
        cgroup = containment.Cgroup.create(nmax)
        try:
            t0 = time.monotonic()
            proc = subprocess.Popen(plan.argv, cwd=workdir, env=env,
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True,
                                    preexec_fn=preexec(cgroup, limit, plan.nproc_in_preexec))
            in_cgroup = cgroup is not None and cgroup.max_processes is not None and bool(cgroup.holds(proc.pid))

            def end_tree() -> None:
                kill_tree(proc.pid, cgroup, marker)

            try:
                out, err, timed_out, cancelled = _collect_process(proc, stdin, t0 + timeout_s, cancel, end_tree)
            finally:
                end_tree()
                proc.wait()
            seconds = time.monotonic() - t0
            limit_hit = bool(in_cgroup and cgroup.limit_hit()) or (
                plan.nproc_enforced and any(m in err for m in FORK_FAILURE_MARKERS))
        finally:
            if cgroup is not None:
                cgroup.remove()
        return finish(plan.returncode(proc.returncode), out, err, seconds, timed_out=timed_out, cancelled=cancelled,
                      limit_hit=limit_hit, memory_mb=memory_mb, workdir=workdir, nmax=nmax,
                      held=in_cgroup or plan.nproc_enforced, layer=layer,
                      protections=protections(plan, notes, memory_mb if limit else None, nmax, in_cgroup), start=start)
    finally:
        if not keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def write_files(workdir: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
            f.write(text)


def resolve_python(python: str, env: dict[str, str]) -> str:
    """An interpreter named without a path, looked up on the sandbox's PATH."""
    if not os.path.isabs(python):
        python = shutil.which(python, path=env["PATH"]) or python
    return python


def finish(returncode: Optional[int], out: str, err: str, seconds: float, *, timed_out: bool, cancelled: bool,
           limit_hit: bool, memory_mb: Optional[int], workdir: str, nmax: int, held: bool, layer: str,
           protections: list[str], start: str) -> SandboxResult:
    """The result of a run, cold or warm: an exhausted address space is told apart from other failures
    by the allocator's messages (or a SIGKILL) when a limit was set."""
    oom = (not timed_out and not cancelled and not limit_hit and returncode != 0 and bool(memory_mb)
           and (any(m in err for m in _OOM_MARKERS) or returncode == -signal.SIGKILL))
    return SandboxResult(returncode, out, err, seconds, timed_out, oom, workdir, cancelled, limit_hit,
                         nmax if held else None, layer, protections, start)


def protections(plan: iso.Plan, notes: list[str], memory_mb: Optional[int], nmax: int,
                in_cgroup: bool) -> list[str]:
    """What held for a run, in words; also why root kept its uid, and for ``plain`` what did not hold
    and why no namespace layer ran."""
    out = ["scrubbed environment", "time limit: the whole process tree is killed"]
    if memory_mb:
        out.append(f"address space {memory_mb} MiB")
    how = [m for m, held in (("cgroup pids.max", in_cgroup), ("RLIMIT_NPROC", plan.nproc_enforced)) if held]
    out.append(f"{nmax} processes and threads ({', '.join(how)})" if how else "not limited: process count")
    out += plan.protections
    out += [n for n in notes if n.startswith("uid 0 kept")]
    skipped = [n for n in notes if not n.startswith("uid 0 kept")]
    if plan.layer == "plain":
        why = f" ({'; '.join(skipped)})" if skipped else ""
        out.append(f"not isolated: files, network, /proc{why}")
    return out


def preexec(cgroup: Optional[containment.Cgroup], limit_bytes: Optional[int], nproc: Optional[int]):
    """What the started process does before it execs: join the run's cgroup, take the limits, and die
    with the thread that started it (PR_SET_PDEATHSIG)."""

    def child_setup() -> None:  # runs in the child between fork and exec: plain system calls only
        if cgroup is not None:
            cgroup.join()
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the daemon dies: so does the run

    return child_setup


def chown_tree(path: str, uid: int) -> None:
    """Hand the work folder to the unprivileged uid the program will run as. Mode 0711: root without
    CAP_DAC_OVERRIDE (bubblewrap before the drop) must still enter it; other users cannot list it."""
    os.chown(path, uid, uid)
    os.chmod(path, 0o711)
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def kill_tree(pid: int, cgroup: Optional[containment.Cgroup], marker: str) -> None:
    """SIGKILL the run's process group, its cgroup and every process carrying its marker. In a
    namespace layer the first one already ends everything: the namespace's PID 1 dies with it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill()
    containment.kill_marked(marker)


class Tail:
    """The last ``limit`` bytes of a stream (a program printing without end cannot fill the daemon)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
        return f"[... {self.dropped} bytes of output dropped ...]\n{text}" if self.dropped else text


@attrs.define
class Running:
    """A running program as :func:`collect` sees it, started cold or forked from a warm template."""

    out_fd: int
    err_fd: int
    ended: Callable[[], bool]
    """True once the program has ended (never blocks)."""
    exit_fd: Optional[int] = None
    """Readable when ``ended`` may have changed (a pidfd, the warm template's socket); None: poll."""
    in_fd: Optional[int] = None
    """The program's stdin pipe, to write ``feed`` into."""
    close_in: Callable[[], None] = lambda: None


def _collect_process(proc: subprocess.Popen, feed: Optional[str], deadline: float,
                     cancel: Optional[threading.Event], end_tree) -> tuple[str, str, bool, bool]:
    pidfd = None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd: poll the process in short slices instead
        pass
    running = Running(proc.stdout.fileno(), proc.stderr.fileno(), lambda: proc.poll() is not None, pidfd,
                      proc.stdin.fileno() if proc.stdin is not None else None,
                      proc.stdin.close if proc.stdin is not None else (lambda: None))
    try:
        return collect(running, feed, deadline, cancel, end_tree)
    finally:
        if pidfd is not None:
            os.close(pidfd)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def collect(running: Running, feed: Optional[str], deadline: float, cancel: Optional[threading.Event],
            end_tree) -> tuple[str, str, bool, bool]:
    """Read stdout and stderr until the program ends, the deadline passes or ``cancel`` is set; then
    kill the tree and read what is left for at most :data:`DRAIN_S` (a descendant that escaped every
    kill cannot hold the run open). Returns (stdout, stderr, timed_out, cancelled)."""
    sel = selectors.DefaultSelector()
    tails = {running.out_fd: Tail(OUTPUT_LIMIT), running.err_fd: Tail(OUTPUT_LIMIT)}
    for fd in tails:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, "out")
    pending = memoryview(feed.encode("utf-8")) if feed and running.in_fd is not None else None
    if pending is not None:
        os.set_blocking(running.in_fd, False)
        sel.register(running.in_fd, selectors.EVENT_WRITE, "in")
    watched = running.exit_fd
    if watched is not None:
        sel.register(watched, selectors.EVENT_READ, "exit")
    timed_out = cancelled = False
    ended: Optional[float] = None
    try:
        while True:
            now = time.monotonic()
            if ended is None:
                exited = running.ended()
                if not exited:
                    timed_out = now >= deadline
                    cancelled = not timed_out and cancel is not None and cancel.is_set()
                if exited or timed_out or cancelled:
                    end_tree()
                    ended = time.monotonic()
                    if watched is not None:
                        sel.unregister(watched)
                        watched = None
            readers = [k for k in sel.get_map().values() if k.data == "out"]
            if ended is not None and (not readers or time.monotonic() - ended >= DRAIN_S):
                break
            if ended is not None:
                wait = 0.05
            else:
                wait = max(0.0, min(deadline - now, 0.1 if cancel is not None or watched is None else 1.0))
            for key, _ in sel.select(wait):
                if key.data == "out":
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if chunk:
                        tails[key.fd].add(chunk)
                    else:
                        sel.unregister(key.fd)
                elif key.data == "in":
                    try:
                        sent = os.write(key.fd, pending[:65536])
                        pending = pending[sent:]
                    except (BrokenPipeError, BlockingIOError):
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(key.fd)
                        running.close_in()
    finally:
        sel.close()
    return tails[running.out_fd].text(), tails[running.err_fd].text(), timed_out, cancelled
