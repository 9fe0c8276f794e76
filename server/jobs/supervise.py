"""The job supervisor: the first process of every job, between its JobManager and its command.

Why it exists: a job must not outlive the process that owns its JobManager (the daemon, or
``deepdive train`` on a terminal), even when that process is killed with SIGKILL and can clean up
nothing. The manager starts ``python -I -S supervise.py --lifeline FD --parent PID ... -- COMMAND...``
as the leader of a new session (the job's process group). The supervisor:

- starts COMMAND with its own stdout, stderr, environment and the descriptors named by ``--pass-fd``
  (the events pipe), so output and events flow straight to the manager: nothing is copied;
- learns that its owner died from end-of-file on the *lifeline*, a pipe whose only write end the
  owner holds (the kernel closes it however the owner dies; works on macOS too), and on Linux also
  from ``PR_SET_PDEATHSIG`` (in case the owner leaked the write end into a forked child);
- then stops the job: SIGTERM to its process group, ``--grace`` seconds, SIGKILL to every
  descendant; records the job *lost* in the store (``--store``, ``--job``) and exits. On Linux it is
  a child subreaper, so descendants in sessions of their own whose parent died (torchrun's workers,
  once torchrun is gone) are re-parented to it and still found;
- on SIGTERM (cancel or a limit: the manager signals the whole group, so COMMAND has it too) gives
  COMMAND the same grace, then SIGKILLs whatever is left (a SIGTERM sent to the supervisor alone is
  not passed on: signal the group). Other signals that would end it (SIGINT, SIGHUP, SIGUSR1, ...)
  it ignores: sent to the group, they are COMMAND's to act on;
- when COMMAND exits, kills its leftover descendants (the job is over) and exits with COMMAND's
  status: the same exit code, or death by the same signal, so the manager records the job exactly as
  if it had run COMMAND itself.

Only the standard library, nothing imported that the normal path does not need: run with
``python -I -S`` it starts in about 10 ms.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

TYPE_CHECKING = False  # importing typing would cost 5 ms at every job's start: only type checkers need it
if TYPE_CHECKING:
    from typing import Iterator, NoReturn, Optional

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: What the kernel sends when the owner dies (Linux); only a hint: the owner's death is confirmed by getppid().
DEATH_SIGNAL = signal.SIGUSR2
#: Signals that would kill the supervisor by default: handled, so only COMMAND reacts to them.
HANDLED = tuple(getattr(signal, name) for name in
                ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD")
                if hasattr(signal, name))
EXIT_CANNOT_START = 127


class Options:
    """The command line: ``--lifeline FD --parent PID --grace S [--pass-fd FD]... [--store DB --job ID] -- CMD``."""

    def __init__(self, argv: list[str]):
        if "--" not in argv:
            raise SystemExit("usage: supervise.py --lifeline FD --parent PID --grace S [--pass-fd FD]... "
                             "[--store DB --job ID] -- COMMAND [ARGS...]")
        split = argv.index("--")
        self.command = argv[split + 1:]
        self.lifeline: Optional[int] = None
        self.parent = os.getppid()
        self.grace = 3.0
        self.pass_fds: list[int] = []
        self.store: Optional[str] = None
        self.job: Optional[str] = None
        flags = argv[:split]
        for key, value in zip(flags[::2], flags[1::2]):
            if key == "--lifeline":
                self.lifeline = int(value)
            elif key == "--parent":
                self.parent = int(value)
            elif key == "--grace":
                self.grace = float(value)
            elif key == "--pass-fd":
                self.pass_fds.append(int(value))
            elif key == "--store":
                self.store = value
            elif key == "--job":
                self.job = value
            else:
                raise SystemExit(f"supervise.py: unknown option {key}")
        if not self.command:
            raise SystemExit("supervise.py: no command given after --")


class Supervisor:
    """Runs COMMAND and stops its whole tree when asked to, or when the owner dies."""

    def __init__(self, options: Options):
        self.options = options
        self.child = 0
        self.status: Optional[int] = None
        self.signals: list[int] = []
        self.deadline: Optional[float] = None  # when the grace given to a stopping job ends
        self.owner_died = False
        self.lifeline = options.lifeline

    # -- setup --------------------------------------------------------------------------------

    def install(self) -> int:
        """Signal handlers, a wake-up pipe for them, and (Linux) subreaper and parent-death signal."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in HANDLED:
            signal.signal(signum, self._on_signal)
        if self.lifeline is not None:
            os.set_inheritable(self.lifeline, False)  # COMMAND never holds a copy
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        _prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL))
        return wake_r

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)

    def spawn(self) -> None:
        """Start COMMAND; SIGPIPE and SIGXFSZ back to their defaults, as subprocess does."""
        defaults = [s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if s]
        self.child = os.posix_spawnp(self.options.command[0], self.options.command, os.environ,
                                     setsigdef=defaults)
        for fd in self.options.pass_fds:  # only COMMAND's tree holds them now: EOF when it is gone
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the loop -----------------------------------------------------------------------------

    def run(self, wake_r: int) -> int:
        """Wait for COMMAND while watching the owner and the signals; returns COMMAND's wait status."""
        while self.status is None:
            self._reap()
            if self.status is not None:
                break
            self._check_owner()
            self._handle_signals()
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                kill_descendants(signal.SIGKILL)
                self.deadline = now + 1.0  # and again, should anything have escaped
            watched = [wake_r] + ([self.lifeline] if self.lifeline is not None else [])
            timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            ready, _, _ = select.select(watched, [], [], timeout)
            if wake_r in ready:
                os.read(wake_r, 512)
        kill_descendants(signal.SIGKILL)  # the job is over: nothing of it stays behind
        self._reap()
        return self.status

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.status = status

    def _check_owner(self) -> None:
        gone = os.getppid() != self.options.parent
        if self.lifeline is not None and not gone:
            ready, _, _ = select.select([self.lifeline], [], [], 0)
            if ready and not os.read(self.lifeline, 64):
                gone = True
        if self.lifeline is not None and gone:
            os.close(self.lifeline)
            self.lifeline = None
        if gone and not self.owner_died:
            self.owner_died = True
            self._stop(signal_group=True)

    def _handle_signals(self) -> None:
        signals, self.signals = self.signals, []
        if signal.SIGTERM in signals:
            self._stop(signal_group=False)  # the sender signalled the whole group: COMMAND has it too

    def _stop(self, signal_group: bool) -> None:
        if signal_group:
            try:
                os.killpg(os.getpgid(0), signal.SIGTERM)
            except OSError:
                pass
        if self.deadline is None:
            self.deadline = time.monotonic() + self.options.grace


# -- the process tree ---------------------------------------------------------------------------


def _parents() -> Iterator[tuple[int, int, bool]]:
    """(pid, parent pid, is a zombie) of every process: /proc on Linux, ``ps`` elsewhere."""
    if os.path.isdir("/proc/self"):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            yield int(name), int(fields[1]), fields[0] == b"Z"
        return
    import subprocess

    ps = subprocess.Popen(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "stat="], stdout=subprocess.PIPE, text=True)
    out, _ = ps.communicate()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() and int(parts[0]) != ps.pid:
            yield int(parts[0]), int(parts[1]), parts[2].startswith("Z")


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of ``root``, whatever session or process group they are in."""
    children: dict[int, list[tuple[int, bool]]] = {}
    for pid, ppid, zombie in _parents():
        children.setdefault(ppid, []).append((pid, zombie))
    found, stack = [], [root]
    while stack:
        for pid, zombie in children.get(stack.pop(), ()):
            stack.append(pid)
            if not zombie:
                found.append(pid)
    return found


def kill_descendants(sig: int, rounds: int = 20) -> None:
    """Send ``sig`` to every descendant until none is left alive (new ones may appear while we kill)."""
    for _ in range(rounds):
        pids = descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if sig != signal.SIGKILL:
            return
        time.sleep(0.01)


# -- platform helpers ---------------------------------------------------------------------------


def _prctl(option: int, value: int) -> None:
    """prctl(2) on Linux through ctypes; elsewhere (or if refused) the lifeline alone does the job."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def record_lost(store: str, job: str, owner: int, status: Optional[int]) -> None:
    """Mark the job lost in the owner's store, so every window sees at once why it ended."""
    import sqlite3

    reason = f"the Deepdive process that ran it (pid {owner}) exited; the job was stopped with it"
    code = os.waitstatus_to_exitcode(status) if status is not None else None
    try:
        db = sqlite3.connect(store, timeout=10.0, isolation_level=None)
        try:
            db.execute("UPDATE jobs SET state = 'lost', reason = ?, ended_at = ?, exit_code = ? "
                       "WHERE id = ? AND state = 'running'", (reason, time.time(), code, job))
        finally:
            db.close()
    except sqlite3.Error:
        pass  # nobody is left to tell: the next daemon marks the job lost when it starts


def exit_like(status: int) -> NoReturn:
    """Exit with COMMAND's status: its exit code, or death by its signal (without a core dump)."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, ValueError, OSError):
            pass
        signal.set_wakeup_fd(-1)
        try:  # handled here, or ignored (SIGPIPE): back to the default action
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL: its action cannot be set, nor need it be
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal whose default is not to terminate
    os._exit(os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> NoReturn:
    options = Options(argv)
    supervisor = Supervisor(options)
    wake_r = supervisor.install()
    supervisor._check_owner()
    if supervisor.owner_died:  # gone before COMMAND even started: start nothing
        if options.store and options.job:
            record_lost(options.store, options.job, options.parent, None)
        os._exit(EXIT_CANNOT_START)
    try:
        supervisor.spawn()
    except OSError as exc:
        sys.stderr.write(f"deepdive: could not start {options.command[0]}: {exc.strerror or exc}\n")
        sys.stderr.flush()
        os._exit(EXIT_CANNOT_START)
    status = supervisor.run(wake_r)
    if supervisor.owner_died and options.store and options.job:
        record_lost(options.store, options.job, options.parent, status)
    exit_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
