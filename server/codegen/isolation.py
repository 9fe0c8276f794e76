"""The isolation layers of the codegen sandbox: which one this machine offers, and the command line that
runs a program inside it.

Layers, strongest first (the automatic choice takes the first one that works here, probed once per
interpreter; ``DEEPDIVE_SANDBOX=bwrap|unshare|plain`` forces one):

``bwrap``           bubblewrap (Debian's ``bubblewrap``): fresh PID, network, IPC, UTS and cgroup
                    namespaces; a tmpfs root holding only read-only binds of what the interpreter needs
                    (its prefix, its venv, the folders of its ``sys.path`` and editable installs, /usr and
                    the system libraries, a few files of /etc); a fresh /proc, a minimal /dev, a private
                    /tmp; the work folder is the only writable host folder. As root, no user namespace:
                    the program runs as uid 65534 through ``setpriv``, with no capabilities and
                    ``no_new_privs``, so RLIMIT_NPROC binds it and root-only files stay closed to it.
``unshare``         the same view and namespaces built by util-linux ``unshare`` and
                    :mod:`deepdive.codegen.nsinit` (for machines without bubblewrap).
``bwrap+userns``,   what a non-root user gets (the automatic choice as non-root; tests force them as
``unshare+userns``  root): the same, inside a user namespace; the program keeps the caller's uid with every
                    capability dropped (bubblewrap adds ``--disable-userns``).
``plain``           no namespaces (neither tool works here): a fresh session, the scrubbed environment,
                    the limits. Files, network and other processes' /proc entries are the caller's.

Files the prompt named as the program's input (a local model folder, a CSV file) are added read-only
at the path given. As root, when such an input is readable only by its owner (Hugging Face's
``save_pretrained`` writes its weights 0600), the automatic choice takes the ``+userns`` variant: the
program keeps uid 0, without capabilities, and the result says so.

In every layer the process tree is also put into a cgroup where the cgroup filesystem is writable, and
carries an environment marker (:mod:`deepdive.codegen.containment`).
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Optional, Sequence

import attrs

LAYERS = ("bwrap", "unshare", "bwrap+userns", "unshare+userns", "plain")
ENV_LAYER = "DEEPDIVE_SANDBOX"
SANDBOX_UID = 65534
"""The unprivileged uid (Debian's ``nobody``) a sandbox started by root runs as."""

_NSINIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nsinit.py")
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What the dynamic loader, the time zone, user lookups and Debian's Python read from /etc; no secrets.
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/timezone",
        "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf", "/etc/alternatives",
        "/etc/mime.types", "/etc/os-release")

NAMESPACE_PROTECTIONS = ("pid namespace", "no network", "read-only view: interpreter and libraries only",
                         "private /tmp and /proc", "writable: work folder only")


class SandboxUnavailable(ValueError):
    """The sandbox layer asked for cannot run here (the message says why and what to do)."""


@attrs.define
class Plan:
    """How one run is started in a layer."""

    layer: str
    argv: list[str]
    protections: list[str]
    nproc_in_preexec: Optional[int] = None
    """RLIMIT_NPROC to set before exec (bwrap as root: inherited past setpriv's drop to uid 65534)."""
    nproc_enforced: bool = False
    """Whether RLIMIT_NPROC binds the program (not for a real uid 0, which the kernel exempts)."""
    owner_uid: Optional[int] = None
    """Who must own the work folder (the unprivileged uid when root drops to it)."""

    def returncode(self, code: Optional[int]) -> Optional[int]:
        """The program's status: bubblewrap and nsinit exit 128 + N when signal N ended it."""
        if self.layer != "plain" and code is not None and 128 < code <= 128 + 64:
            return -(code - 128)
        return code


def _variant(layer: str) -> str:
    """A namespace layer as this user can run it: as non-root only inside a user namespace."""
    if layer in ("bwrap", "unshare") and os.geteuid() != 0:
        return layer + "+userns"
    return layer


def candidates(requested: Optional[str], *, keep_uid: bool = False) -> list[str]:
    """The layers to try, in order, for ``requested`` (None: ``$DEEPDIVE_SANDBOX``, else automatic).
    ``keep_uid``: the automatic choice takes the user-namespace variants, which keep the caller's uid."""
    name = (requested or os.environ.get(ENV_LAYER) or "auto").strip()
    if name == "auto":
        if keep_uid:
            return ["bwrap+userns", "unshare+userns", "plain"]
        return [_variant("bwrap"), _variant("unshare"), "plain"]
    if name not in LAYERS:
        raise SandboxUnavailable(f"{ENV_LAYER}={name!r} is not a sandbox layer: use auto, bwrap, unshare or plain")
    return [_variant(name)]


# -- what the interpreter needs to see ----------------------------------------------------------

_PROBE = r"""
import json, os, sys, sysconfig
paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.realpath(sys.executable)]
paths += [p for p in sys.path if p]
paths += list(sysconfig.get_paths().values())
for finder in sys.meta_path:  # editable installs (setuptools' finders keep their folders in MAPPING)
    module = sys.modules.get(getattr(finder, "__module__", "") or "")
    for name in ("MAPPING", "NAMESPACES"):
        value = getattr(module, name, None)
        if isinstance(value, dict):
            for v in value.values():
                paths.extend(v if isinstance(v, list) else [v])
print(json.dumps({"executable": sys.executable, "paths": [p for p in paths if isinstance(p, str)]}))
"""


@functools.lru_cache(maxsize=16)
def _interpreter(python: str, pythonpath: str) -> tuple[str, tuple[str, ...]]:
    """The interpreter's own path (``sys.executable``: not a launcher script such as a pyenv shim, which
    the sandbox could not run) and the folders it imports from; probed once per interpreter and
    PYTHONPATH."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([python, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60,
                         cwd=tempfile.gettempdir())
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxUnavailable(f"cannot inspect the interpreter {python}: {last}")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return found["executable"] or python, tuple(found["paths"])


def _under(path: str, parents: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


@attrs.define
class View:
    """The filesystem a sandboxed program sees, besides /proc, /dev, /tmp and its work folder."""

    read_only: list[str]
    symlinks: list[tuple[str, str]]
    devices: list[str]


def filesystem_view(python: str, env: dict[str, str], *, allow_gpu: bool, inputs: Sequence[str] = ()) -> View:
    """System folders, the interpreter's folders and the loader's configuration, read-only; GPU device
    nodes (and /sys, which the CUDA driver reads) when the GPU is allowed; ``inputs`` (absolute paths
    the program was asked to read, such as a local model folder) read-only at the path given."""
    symlinks, system = [], []
    for path in _SYSTEM:
        if os.path.islink(path):
            symlinks.append((os.readlink(path), path))
        elif os.path.isdir(path):
            system.append(path)
    wanted = list(_ETC) + sorted(glob.glob("/etc/python3*"))
    wanted += list(_interpreter(python, env.get("PYTHONPATH", ""))[1])
    wanted += [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
    if allow_gpu:
        wanted.append("/sys")
    chosen = list(system)
    for path in sorted({os.path.realpath(p) for p in wanted if os.path.exists(p)}, key=lambda p: (p.count("/"), p)):
        # never the host's /tmp as a whole, nor its /proc or /dev: the sandbox has its own
        if path in ("/", "/tmp") or _under(path, ["/proc", "/dev"]) or _under(path, chosen):
            continue
        chosen.append(path)
    for path in inputs:
        given = os.path.normpath(path)
        if (os.path.isabs(given) and os.path.exists(given) and given not in ("/", "/tmp")
                and not _under(given, ["/proc", "/dev"]) and not _under(given, chosen)
                and not _under(os.path.realpath(given), chosen)):
            chosen.append(given)
    devices = []
    if allow_gpu:
        nodes = glob.glob("/dev/nvidia*") + glob.glob("/dev/nvidia-caps/*") + glob.glob("/dev/dri/*")
        devices = sorted(p for p in nodes if not os.path.isdir(p))
    return View(read_only=sorted(chosen), symlinks=symlinks, devices=devices)


# -- command lines ------------------------------------------------------------------------------


def build(layer: str, *, python: str, args: Sequence[str], env: dict[str, str], workdir: str,
          max_processes: int, allow_gpu: bool, inputs: Sequence[str] = (), as_pid_1: bool = False) -> Plan:
    """The command line that runs ``python *args`` in ``workdir`` under ``layer``; ``inputs``: see
    :func:`filesystem_view`. ``as_pid_1``: under bubblewrap the program itself is the PID namespace's
    PID 1, with no bubblewrap init beside it (the warm template: :mod:`deepdive.codegen.zygote`), so
    that no process of the namespace but the program can be traced by it or its children."""
    if layer == "plain":
        return Plan("plain", [python, *args], [])
    view = filesystem_view(python, env, allow_gpu=allow_gpu, inputs=inputs)
    python = _interpreter(python, env.get("PYTHONPATH", ""))[0]
    userns = layer.endswith("+userns")
    as_root = os.geteuid() == 0
    drop = SANDBOX_UID if as_root and not userns else None
    protections = list(NAMESPACE_PROTECTIONS)
    protections.append(f"uid {drop}, no capabilities" if drop is not None else "no capabilities")
    shown = [p for p in view.read_only if p in {os.path.normpath(i) for i in inputs}]
    if shown:
        protections.append(f"also readable: {', '.join(shown)}")
    if layer.startswith("bwrap"):
        argv, nproc_set = _bwrap(view, python=python, args=args, workdir=workdir, userns=userns, drop_uid=drop,
                                 max_processes=max_processes, as_pid_1=as_pid_1)
        plan = Plan(layer, argv, protections, nproc_in_preexec=max_processes if drop is not None else None,
                    nproc_enforced=nproc_set and (drop is not None or not as_root), owner_uid=drop)
        return plan
    cfg = {"read_only": view.read_only, "symlinks": view.symlinks, "devices": view.devices, "workdir": workdir,
           "argv": [python, *args], "drop_uid": drop, "nproc": max_processes}
    unshare = shutil.which("unshare") or "unshare"
    argv = [unshare, *(["--user", "--map-root-user"] if userns else []), "--pid", "--fork", "--kill-child", "--net",
            "--mount", "--ipc", "--uts", "--propagation", "private", "--",
            sys.executable, "-I", "-S", _NSINIT, json.dumps(cfg)]
    return Plan(layer, argv, protections, nproc_enforced=drop is not None or not as_root, owner_uid=drop)


def _bwrap(view: View, *, python: str, args: Sequence[str], workdir: str, userns: bool, drop_uid: Optional[int],
           max_processes: int, as_pid_1: bool = False) -> tuple[list[str], bool]:
    """bubblewrap's arguments; also whether an RLIMIT_NPROC will be set (in preexec or by prlimit)."""
    a = [shutil.which("bwrap") or "bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
         "--unshare-cgroup-try", "--die-with-parent", "--new-session"] + (["--as-pid-1"] if as_pid_1 else [])
    if userns:
        a += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    else:  # root: keep only what setpriv needs to drop to the unprivileged uid, which then drops them too
        a += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    a += ["--proc", "/proc", "--dev", "/dev", "--perms", "01777", "--tmpfs", "/dev/shm",
          "--perms", "01777", "--tmpfs", "/tmp"]
    made = {"/", "/proc", "/dev", "/dev/shm", "/tmp"}

    def parents(path: str) -> list[str]:
        out = []
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in made:
                made.add(d)
                out += ["--perms", "0755", "--dir", d]  # bubblewrap's own default is 0700
        return out

    for target, link in view.symlinks:
        a += ["--symlink", target, link]
        made.add(link)
    for path in view.read_only:
        a += parents(path) + ["--ro-bind", path, path]
        made.add(path)
    for dev in view.devices:
        a += parents(dev) + ["--dev-bind", dev, dev]
    a += parents(workdir) + ["--bind", workdir, workdir, "--chdir", workdir, "--remount-ro", "/", "--"]
    nproc_set = True
    if drop_uid is not None:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise SandboxUnavailable("setpriv (util-linux) is not installed, so bubblewrap cannot drop root")
        a += [setpriv, f"--reuid={drop_uid}", f"--regid={drop_uid}", "--clear-groups", "--no-new-privs",
              "--inh-caps=-all", "--bounding-set=-all", "--"]
    else:  # inside the user namespace, so that it counts the sandbox's processes only
        prlimit = shutil.which("prlimit")
        if prlimit is not None:
            a += [prlimit, f"--nproc={max_processes}:{max_processes}", "--"]
        nproc_set = prlimit is not None
    return a + [python, *args], nproc_set


# -- which layers work here ---------------------------------------------------------------------

_probed: dict[tuple[str, str, str], Optional[str]] = {}
_probe_lock = threading.Lock()


def unavailable_reason(layer: str, python: str, env: Optional[dict[str, str]] = None) -> Optional[str]:
    """None when ``layer`` runs ``python`` here, else why not in one line. Probed once (a trivial
    program through the layer), then cached for the process's life."""
    if layer not in LAYERS:
        return f"{layer!r} is not a sandbox layer ({', '.join(LAYERS)})"
    env = dict(env or {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"})
    key = (layer, python, env.get("PYTHONPATH", ""))
    with _probe_lock:
        if key not in _probed:
            _probed[key] = _probe(layer, python, env)
        return _probed[key]


def _probe(layer: str, python: str, env: dict[str, str]) -> Optional[str]:
    if layer == "plain":
        return None
    tool = "bwrap" if layer.startswith("bwrap") else "unshare"
    if shutil.which(tool) is None:
        return f"{tool} is not installed" + (" (Debian: apt-get install bubblewrap)" if tool == "bwrap" else "")
    if layer.endswith("+userns") is False and os.geteuid() != 0:
        return f"{layer} without a user namespace needs root"
    workdir = tempfile.mkdtemp(prefix="deepdive-sandbox-probe-")
    try:
        plan = build(layer, python=python, args=["-c", "print('ok')"], env=env, workdir=workdir, max_processes=64,
                     allow_gpu=False)
        if plan.owner_uid is not None:
            os.chown(workdir, plan.owner_uid, plan.owner_uid)
            os.chmod(workdir, 0o711)
        out = subprocess.run(plan.argv, env=env, cwd=workdir, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    except SandboxUnavailable as exc:
        return str(exc)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{tool} could not start: {exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if out.returncode == 0 and out.stdout.strip() == "ok":
        return None
    last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
    return f"{tool} failed here: {last[:200]}"


def unreadable_to_sandbox_uid(paths: Sequence[str], *, limit: int = 10000) -> Optional[str]:
    """The first file or folder under ``paths`` that uid 65534 could not read (owner-only permissions,
    as Hugging Face's ``save_pretrained`` gives its weights), or None. Looks at ``limit`` entries at most."""
    seen = 0
    for top in paths:
        if not os.path.exists(top):
            continue
        walk = os.walk(top) if os.path.isdir(top) else [(os.path.dirname(top), [], [os.path.basename(top)])]
        for root, dirs, names in walk:
            for name in [""] + dirs + names:
                path = os.path.join(root, name) if name else root
                seen += 1
                if seen > limit:
                    return None
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                need = 0o005 if os.path.isdir(path) else 0o004
                if st.st_uid != SANDBOX_UID and st.st_mode & need != need:
                    return path
    return None


def choose(requested: Optional[str], python: str, env: dict[str, str],
           inputs: Sequence[str] = ()) -> tuple[str, list[str]]:
    """The layer to run in, and notes: why each stronger one was passed over, and why root kept its uid
    (an input the unprivileged uid could not read). A forced layer that cannot run raises
    :class:`SandboxUnavailable`."""
    skipped = []
    closed = unreadable_to_sandbox_uid(inputs) if os.geteuid() == 0 and inputs else None
    if closed is not None:
        skipped.append(f"uid 0 kept: uid {SANDBOX_UID} cannot read {closed}")
    names = candidates(requested, keep_uid=closed is not None)
    first_reason = ""
    for name in names:
        reason = unavailable_reason(name, python, env)
        if reason is None:
            return name, skipped
        skipped.append(f"{name}: {reason}")
        first_reason = first_reason or reason
    raise SandboxUnavailable(f"the sandbox layer {names[0]} cannot run here ({first_reason}); "
                             f"set {ENV_LAYER}=auto to take the strongest one that can")
