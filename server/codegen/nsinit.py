"""The first process inside the namespaces that util-linux ``unshare`` makes for a sandboxed run.

Run as ``python -I -S nsinit.py CONFIG_JSON`` by :mod:`deepdive.codegen.isolation` when bubblewrap is
absent, as PID 1 of a fresh PID namespace, inside fresh mount, network, IPC and UTS namespaces (and a
user namespace when the caller is not root). It imports nothing outside the standard library, because
it does what bubblewrap would do, before the program's view of the filesystem exists:

1. builds that view on a tmpfs: the interpreter's and the system's folders bound read-only, a fresh
   ``/proc``, a minimal ``/dev``, a private ``/tmp``, the work folder writable, nothing else;
2. ``pivot_root`` into it and detaches the old root, so nothing outside can be reached again (not even
   by a ``chroot`` escape from a user namespace the program might make);
3. brings the loopback interface of the empty network namespace up (so a program may talk to itself);
4. forks the program: as root it drops to an unprivileged uid (CONFIG ``drop_uid``), otherwise it drops
   every capability; then ``no_new_privs``, RLIMIT_NPROC, exec;
5. stays PID 1: reaps orphans until the program ends, then exits with its status (128 + signal when a
   signal ended it, like bubblewrap). When PID 1 exits, the kernel kills every process left in the
   namespace, which is what makes a detached (``setsid``) child unable to outlive the run.

A setup failure prints one line, ``deepdive sandbox: ...``, and exits 125.
"""

import ctypes
import errno
import fcntl
import json
import os
import resource
import socket
import struct
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME = 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 24, 47, 4
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "loongarch64": 41, "ppc64le": 203, "ppc64": 203,
              "s390x": 217, "armv7l": 218, "armv6l": 218, "i686": 217, "i386": 217}
# statvfs f_flag bit -> mount flag, to keep the flags a remount may not clear inside a user namespace
ST_TO_MS = ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC), (1024, MS_NOATIME),
            (2048, MS_NODIRATIME), (4096, MS_RELATIME))
SETUP_FAILED = 125

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


class SetupError(Exception):
    pass


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _b(path):
    return None if path is None else os.fsencode(path)


def mount(src, target, fstype, flags, data=None) -> None:
    _check(libc.mount(_b(src), _b(target), _b(fstype), flags, _b(data)), f"mount {src or fstype} on {target}")


def remount_read_only(target: str) -> None:
    """Make a bind mount read-only, keeping the flags a user namespace may not drop (nosuid, nodev...)."""
    keep = 0
    flag = os.statvfs(target).f_flag
    for st, ms in ST_TO_MS:
        if flag & st:
            keep |= ms
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep)


def submounts(target: str) -> list:
    """``target`` and every mount below it (a recursive bind copies them; each needs its own remount)."""
    found = []
    with open("/newroot/proc/self/mountinfo", encoding="utf-8") as f:  # the fresh /proc, mounted first
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == target or point.startswith(target.rstrip("/") + "/"):
                found.append(point)
    return found


def make_point(path: str, is_dir: bool) -> None:
    """A directory or an empty file to mount on, with 0755 parents (readable by an unprivileged uid)."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755, exist_ok=True)
    if is_dir:
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def bind(src: str, dest: str, *, read_only: bool, device: bool = False) -> None:
    old = "/oldroot" + src
    new = "/newroot" + dest
    make_point(new, os.path.isdir(old))
    mount(old, new, None, MS_BIND | MS_REC)
    if read_only:
        for point in submounts(new):
            remount_read_only(point)
    elif not device:
        flag = os.statvfs(new).f_flag
        keep = sum(ms for st, ms in ST_TO_MS if flag & st and ms != MS_RDONLY)
        mount(None, new, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | keep)


def build_root(cfg: dict) -> None:
    """The program's filesystem: see the module docstring. Ends with the process in the new root."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.mkdir("/tmp/newroot", 0o755)
    os.mkdir("/tmp/oldroot", 0o755)
    mount("tmpfs", "/tmp/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.chdir("/tmp")
    pivot_root(".", "oldroot")
    os.chdir("/")

    os.mkdir("/newroot/proc", 0o755)
    mount("proc", "/newroot/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.mkdir("/newroot/dev", 0o755)
    mount("tmpfs", "/newroot/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755")
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        if os.path.exists("/oldroot/dev/" + node):
            bind("/dev/" + node, "/dev/" + node, read_only=False, device=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, "/newroot/dev/" + name)
    os.mkdir("/newroot/dev/shm", 0o1777)
    mount("tmpfs", "/newroot/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for dev in cfg.get("devices", []):
        bind(dev, dev, read_only=False, device=True)
    os.mkdir("/newroot/tmp", 0o1777)
    mount("tmpfs", "/newroot/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")

    for target, link in cfg.get("symlinks", []):
        make_point(os.path.dirname("/newroot" + link), True)
        os.symlink(target, "/newroot" + link)
    for path in cfg["read_only"]:
        bind(path, path, read_only=True)
    bind(cfg["workdir"], cfg["workdir"], read_only=False)

    mount(None, "/newroot", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _check(libc.umount2(b"/oldroot", MNT_DETACH), "detach the old root")
    os.chdir("/newroot")
    pivot_root(".", ".")
    _check(libc.umount2(b".", MNT_DETACH), "detach the staging root")
    os.chdir("/")


def pivot_root(new: str, old: str) -> None:
    nr = PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise SetupError(f"pivot_root: unknown system call number on {os.uname().machine}")
    _check(libc.syscall(nr, _b(new), _b(old)), "pivot_root")


def loopback_up() -> None:
    """Bring ``lo`` up (SIOCGIFFLAGS / SIOCSIFFLAGS with IFF_UP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14x", b"lo", flags | 1))


def drop_privileges(cfg: dict) -> None:
    """In the program's process, before exec: no way back to any privilege."""
    if cfg.get("nproc"):
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):  # the bounding set: exec can never grant these again
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    uid = cfg.get("drop_uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # leaving uid 0 clears the permitted and effective capabilities
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = ctypes.create_string_buffer(24)  # effective, permitted, inheritable: all empty
    _check(libc.capset(ctypes.c_char_p(header), data), "clear the capability sets")


def run_as_init(cfg: dict) -> int:
    """Fork the program, reap everything until it ends, return its exit status (128 + signal)."""
    argv = cfg["argv"]
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(cfg["workdir"])
            drop_privileges(cfg)
            os.execve(argv[0], argv, os.environ)
        except BaseException as exc:  # noqa: BLE001 - the child must never return into the init's code
            os.write(2, f"deepdive sandbox: cannot start {argv[0]}: {exc}\n".encode())
        os._exit(127)
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 127
        except InterruptedError:
            continue
        if reaped == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def main() -> int:
    cfg = json.loads(sys.argv[1])
    try:
        build_root(cfg)
        try:
            loopback_up()
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENODEV):
                raise
    except (SetupError, OSError) as exc:
        os.write(2, f"deepdive sandbox: {exc}\n".encode())
        return SETUP_FAILED
    return run_as_init(cfg)


if __name__ == "__main__":
    sys.exit(main())
