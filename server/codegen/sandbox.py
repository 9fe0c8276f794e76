"""Run a Python program in a sandboxed subprocess: time and memory limits, a scrubbed environment,
a fresh temporary working directory, its own process group (killed as a whole on timeout).

This is containment for programs we generated ourselves, against accidents (an endless loop, a
model too large for the machine, a stray download attempt, a script that reads a token from the
environment); it is not a security boundary against hostile code.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional, Sequence

import attrs

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


def _limit_memory(limit_bytes: Optional[int]):
    def preexec() -> None:  # runs in the child between fork and exec
        if limit_bytes is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return preexec


def run_sandboxed(args: Sequence[str], *, files: dict[str, str], timeout_s: float, memory_mb: Optional[int],
                  allow_gpu: bool = False, python: str = sys.executable, stdin: Optional[str] = None,
                  keep_dir: bool = False, cancel: Optional[threading.Event] = None) -> SandboxResult:
    """Write ``files`` into a fresh temporary directory and run ``python *args`` there.

    Args:
        args: arguments after the interpreter, e.g. ``["program.py", "--smoke"]``.
        files: name -> text, written into the working directory first.
        timeout_s: wall-clock limit; the whole process group is killed when it passes.
        memory_mb: address-space limit (RLIMIT_AS) or None for none.
        cancel: when set, the process group is killed within about 0.1 s (``cancelled`` in the result).
    """
    workdir = tempfile.mkdtemp(prefix="deepdive-sandbox-")
    try:
        for name, text in files.items():
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
                f.write(text)
        env = scrubbed_env(workdir, allow_gpu=allow_gpu)
        limit = memory_mb * 1024 * 1024 if memory_mb else None
        start = time.monotonic()
        proc = subprocess.Popen([python, *args], cwd=workdir, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=_limit_memory(limit), text=True, encoding="utf-8", errors="replace")
        timed_out = cancelled = False
        deadline = start + timeout_s
        feed = stdin
        try:
            while True:
                # short slices, so a cancel is seen quickly; communicate keeps what it read so far
                slice_s = max(0.0, min(0.1 if cancel is not None else timeout_s, deadline - time.monotonic()))
                try:
                    out, err = proc.communicate(feed, timeout=slice_s)
                    break
                except subprocess.TimeoutExpired:
                    feed = None
                    if time.monotonic() >= deadline:
                        timed_out = True
                    elif cancel is not None and cancel.is_set():
                        cancelled = True
                    else:
                        continue
                    _kill_group(proc.pid)
                    out, err = proc.communicate()
                    break
        finally:
            _kill_group(proc.pid)  # children the program left behind
        seconds = time.monotonic() - start
        oom = (not timed_out and not cancelled and proc.returncode != 0 and limit is not None
               and (any(m in err for m in _OOM_MARKERS) or proc.returncode == -signal.SIGKILL))
        return SandboxResult(proc.returncode, out, err, seconds, timed_out, oom, workdir, cancelled)
    finally:
        if not keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
