"""The warm template of the codegen sandbox: one process that imports torch once, inside an isolation
layer, and then forks one fresh process per check.

:mod:`deepdive.codegen.warm_template` runs it as ``python -c SOURCE CTRL_FD SPEC_JSON`` inside the layer
that a cold run would use (so it has the namespaces, the read-only view, no network, the scrubbed
environment, the uid and the process limit). It makes itself not dumpable, so a check (same uid) can
neither trace it nor read its memory; under bubblewrap it is also the PID namespace's PID 1
(``--as-pid-1``), which a check cannot signal. It talks to the daemon over CTRL_FD, a
``SOCK_SEQPACKET`` Unix socket, in JSON messages:

``ready``   after importing SPEC's modules: how many threads it has (1, or forking it is not safe),
            its uid and address space; sent once.
``run``     (daemon -> template) with four descriptors (SCM_RIGHTS): stdin, stdout, stderr and a
            socket of the check's own. The template forks; the child starts a session of its own,
            takes the descriptors as 0, 1 and 2, closes every other, enters its work folder, takes
            the check's environment and limits (RLIMIT_AS, RLIMIT_NPROC), sends a hello with its
            credentials (SCM_CREDENTIALS: the daemon learns its pid as the host sees it and moves it
            into the check's cgroup) and waits for ``go`` before it runs any of the program's code.
``exited``  the check's process ended: its exit code (negative: the signal that ended it).
``sweep``   (daemon -> template, after the daemon killed what was left of the check) -> ``swept``
            with what the check left behind: live processes (in a namespace layer: any process but
            the template and its ancestors; in ``plain``: any carrying one of the given markers),
            entries of /tmp and /dev/shm added or changed since the template started, System V IPC
            objects. Anything there retires the template.

End of file on CTRL_FD (the daemon is gone or gave it back) ends the template, and with it, in a
namespace layer, every process of its PID namespace.

Only the standard library besides the preloaded modules, and no threads: the template must stay
single-threaded to fork safely (a trial fork after the imports lets libraries that stop their thread
pools at fork, as OpenBLAS does, do so; the thread count is then reported and checked by the daemon).
"""

import ctypes
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36
_libc = ctypes.CDLL(None, use_errno=True)
MAX_MESSAGE = 1 << 20


def _prctl(option: int, value: int) -> None:
    _libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def send(sock: socket.socket, message: dict) -> None:
    sock.sendmsg([json.dumps(message).encode("utf-8")])


def preload(modules: list) -> dict:
    """Import ``modules``; a module that fails is reported, not fatal (the program's own import fails
    the same way, with its own traceback)."""
    start = time.monotonic()
    loaded, failed = [], {}
    for name in modules:
        try:
            __import__(name)
            loaded.append(name)
        except BaseException as exc:  # noqa: BLE001 - any failure of a module is only reported
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
    pid = os.fork()  # atfork handlers stop helper threads (OpenBLAS) that the imports started
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return {"loaded": loaded, "failed": failed, "import_s": round(time.monotonic() - start, 3)}


def status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# -- what a check leaves behind -----------------------------------------------------------------


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _ancestors() -> set:
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    out.add(1)
    return out


def _live_processes(isolated: bool, markers: list) -> list:
    needles = [f"DEEPDIVE_SANDBOX_RUN={m}".encode() for m in markers]
    skip = _ancestors() if isolated else {os.getpid()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            if stat.rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                continue
            if not isolated:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read().split(b"\0")
                if not any(n in env for n in needles):
                    continue
        except OSError:
            continue
        name = stat.split(b"(", 1)[-1].rsplit(b")", 1)[0].decode("utf-8", "replace")
        found.append(f"process {entry} ({name})")
    return found


SCRATCH = ("/tmp", "/dev/shm")


def scratch_tree() -> set:
    """Every entry of the private /tmp and /dev/shm (path, type and mode, owner), not descending into
    other mounts (the bound work folder, read-only binds under /tmp): what the layer made, before any
    check, and what a check may have added or changed since."""
    found = set()
    for top in SCRATCH:
        try:
            device = os.lstat(top).st_dev
        except OSError:
            continue
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                names = os.listdir(folder)
            except OSError as exc:
                found.add((folder, f"unreadable: {exc.strerror}", 0))
                continue
            for name in names:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                found.add((path, st.st_mode, st.st_uid))
                if os.path.isdir(path) and not os.path.islink(path) and st.st_dev == device:
                    stack.append(path)
    return found


def residue(isolated: bool, markers: list, baseline: set) -> list:
    """What the last check left: see the module docstring. Killed processes take a moment to die."""
    deadline = time.monotonic() + 0.5
    while True:
        _reap()
        found = _live_processes(isolated, markers)
        if not found or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if isolated:
        found += sorted({path for path, _, _ in scratch_tree() ^ baseline})
        for kind in ("shm", "sem", "msg"):
            try:
                with open(f"/proc/sysvipc/{kind}", encoding="ascii") as f:
                    rows = f.read().splitlines()[1:]
            except OSError:
                rows = []
            found += [f"System V {kind} {row.split()[1]}" for row in rows if row.split()]
    return found


# -- one check ----------------------------------------------------------------------------------


def become_check(spec: dict, fds: list, ctrl: socket.socket) -> list:
    """In the forked child: take the check's descriptors, folder, environment and limits, tell the
    daemon who we are and wait for its go (it moves us into the check's cgroup first). Returns argv."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_DUMPABLE, 1)  # the template is not dumpable; the program is, as after an exec
    stdin, out, err, own = fds
    for target, fd in ((0, stdin), (1, out), (2, err)):
        os.dup2(fd, target)
    ctrl.close()
    hello = socket.socket(fileno=own)
    keep = {0, 1, 2, own}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.chdir(spec["cwd"])
    os.environ.clear()
    os.environ.update(spec["env"])
    if spec.get("as"):
        resource.setrlimit(resource.RLIMIT_AS, (spec["as"], spec["as"]))
    if spec.get("nproc"):
        resource.setrlimit(resource.RLIMIT_NPROC, (spec["nproc"], spec["nproc"]))
    creds = struct.pack("iII", os.getpid(), os.getuid(), os.getgid())
    hello.sendmsg([b"hello"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    go = hello.recv(16)
    hello.close()
    if go != b"go":
        os._exit(125)
    return spec["argv"]


def _forget_the_template(argv: list) -> None:
    """Module state computed at import from the template's environment, folder or command line, set to
    what a fresh interpreter in the check's folder would have (found by scanning every module's globals
    for the template's HOME, TMPDIR and folder after its imports)."""
    sys.orig_argv = [sys.orig_argv[0] if sys.orig_argv else sys.executable, *argv]
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None  # from TMPDIR, on first use
    process = sys.modules.get("multiprocessing.process")
    if process is not None:
        process.ORIGINAL_DIR = os.getcwd()
    site = sys.modules.get("site")
    if site is not None:
        site.USER_BASE = site.USER_SITE = None  # from HOME, on first use
        import sysconfig

        if getattr(sysconfig, "_CONFIG_VARS", None):
            sysconfig._CONFIG_VARS["userbase"] = site.getuserbase()
        site.getusersitepackages()


def run_program(argv: list) -> int:
    """Run ``argv`` (``[script, *args]`` or ``["-c", code, *args]``) as ``python`` would run it:
    ``__main__`` is a fresh module, ``sys.argv`` and ``sys.path[0]`` are what the interpreter sets, and
    module state that depends on the environment at import (``tempfile``'s cached folder) is reset.
    Returns the exit code, after the interpreter's own handling of SystemExit and of an uncaught
    exception (the traceback without the template's frames)."""
    import builtins
    import importlib.machinery
    import types

    _forget_the_template(argv)
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __spec__=None, __cached__=None)
    if argv[0] == "-c":
        source, filename = argv[1], "<string>"
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""
    else:
        filename = os.path.join(os.getcwd(), argv[0])
        try:
            with open(filename, "rb") as f:
                source = f.read()
        except OSError as exc:
            print(f"{sys.executable}: can't open file {filename!r}: [Errno {exc.errno}] {exc.strerror}",
                  file=sys.stderr)
            return 2
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(filename)
        main.__file__ = filename
        main.__loader__ = importlib.machinery.SourceFileLoader("__main__", filename)
    sys.modules["__main__"] = main
    try:
        exec(compile(source, filename, "exec"), main.__dict__)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException as exc:  # noqa: BLE001 - printed as the interpreter would, without our frames
        exc = exc.with_traceback(exc.__traceback__.tb_next)  # from the program's first frame on
        sys.excepthook(type(exc), exc, exc.__traceback__)
        return -signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 1
    return 0


def leave(code: int) -> None:
    """End the check's process as the interpreter's own exit would, in its order (non-daemon threads
    joined, atexit handlers run, standard streams flushed), then ``_exit``. What is skipped is the
    teardown of the modules, which takes 0.4-1.7 s in a process that imported torch (measured here):
    objects still alive are not finalized and files the program left open unflushed are not flushed.
    Neither reaches what a check reads (the program's output streams and its exit status; its work
    folder is deleted)."""
    import atexit

    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:  # noqa: BLE001 - as at interpreter exit: reported, not fatal
            pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    if code < 0:  # an uncaught KeyboardInterrupt ends the process by SIGINT, as Python does
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


# -- the template's loop ------------------------------------------------------------------------


def _exit_of(keep: int) -> "int | None":
    """Reap every ended child but ``keep``; ``keep``'s exit code once it has ended, leaving it a zombie
    (its pid, which the daemon kills the check's process group by, stays reserved until the sweep)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return None
        if info is None:
            return None
        if info.si_pid == keep:
            return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        os.waitpid(info.si_pid, 0)


def serve(ctrl: socket.socket, isolated: bool, baseline: set) -> list:
    """Wait for checks; returns argv in a forked child, never in the template (it exits)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    check, reported = None, False  # the check's process: running, or a zombie until the sweep
    while True:
        ready, _, _ = select.select([ctrl, wake_r], [], [])
        if wake_r in ready:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
            if check is None:
                _reap()
            elif not reported:
                code = _exit_of(check)
                if code is not None:
                    reported = True
                    send(ctrl, {"op": "exited", "returncode": code})
        if ctrl not in ready:
            continue
        data, fds, _, _ = socket.recv_fds(ctrl, MAX_MESSAGE, 8)
        if not data:
            if check is not None:
                try:
                    os.killpg(check, signal.SIGKILL)
                except OSError:
                    pass
            os._exit(0)
        message = json.loads(data)
        op = message.get("op")
        if op == "run" and check is None and len(fds) == 4:
            pid = os.fork()
            if pid == 0:
                try:
                    return become_check(message, fds, ctrl)
                except BaseException as exc:  # noqa: BLE001 - never back into the template's loop
                    os.write(2, f"deepdive sandbox: the check could not start: {exc}\n".encode())
                    os._exit(125)
            check, reported = pid, False
            for fd in fds:
                os.close(fd)
        elif op == "sweep" and reported:
            for fd in fds:
                os.close(fd)
            os.waitpid(check, 0)
            check, reported = None, False
            send(ctrl, {"op": "swept", "residue": residue(isolated, message.get("markers", []), baseline)})
        else:
            for fd in fds:
                os.close(fd)
            os._exit(0 if op == "quit" else 2)


def main() -> int:
    ctrl = socket.socket(fileno=int(sys.argv[1]))
    spec = json.loads(sys.argv[2])
    report = preload(spec["modules"])
    _prctl(PR_SET_DUMPABLE, 0)  # a check (same uid) can neither trace it nor read its memory
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # a check's orphans come back to it to be reaped and counted
    report.update(op="ready", threads=len(os.listdir("/proc/self/task")), uid=os.getuid(), pid=os.getpid(),
                  vm_kib=status_kib("VmSize"))
    send(ctrl, report)
    isolated = bool(spec.get("isolated"))
    argv = serve(ctrl, isolated, scratch_tree() if isolated else set())
    leave(run_program(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
