"""The daemon's side of the model worker: start it lazily, restart it when it dies, kill it on shutdown.

:class:`ModelWorker` owns one ``python -m deepdive.codegen.worker`` subprocess and speaks its JSON-lines
protocol (see :mod:`deepdive.codegen.worker`). It imports neither torch nor transformers. The
``transformers`` and ``llamacpp`` backends are thin wrappers that ask the worker to load their model
(once: a second load of the same model is free) and stream a generation from it.
"""

from __future__ import annotations

import abc

import atexit
import collections
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, Optional

from . import Backend, BackendError, Cancelled, PromptTooLong

# How long a cancelled generation may take to acknowledge before the worker is killed.
CANCEL_GRACE_S = 10.0


class ModelWorker:
    """One model worker subprocess, shared by every request of the daemon."""

    def __init__(
        self,
        *,
        python: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
        load_timeout_s: float = 900.0,
        idle_timeout_s: float = 600.0,
    ) -> None:
        self.python = python or sys.executable
        self.env = dict(env or {})
        self.load_timeout_s = load_timeout_s
        self.idle_timeout_s = idle_timeout_s  # longest wait for the next token
        self.restarts = 0
        self._proc: Optional[subprocess.Popen] = None
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._queues: dict[int, tuple[subprocess.Popen, "queue.Queue[dict]"]] = {}
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._loaded: Optional[tuple[str, str]] = None  # what the current process holds
        self._load_info: dict[str, Any] = {}
        self._gen_lock = threading.Lock()
        self.last_done: dict[str, Any] = {}  # the ``done`` reply of the last generation (tokens, reason)
        self.last_warm: dict[str, Any] = {}  # the ``warmed`` reply of the last warm-up (count, seconds)

    # -- process -------------------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def alive(self) -> bool:
        return self.pid is not None

    @property
    def loaded(self) -> Optional[tuple[str, str]]:
        return self._loaded if self.alive else None

    def stderr_tail(self, lines: int = 10) -> str:
        return "\n".join(list(self._stderr)[-lines:])

    def _ensure_process(self) -> subprocess.Popen:
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                return proc
            if proc is not None:
                self.restarts += 1
            self._loaded = None
            env = dict(os.environ)
            env.update(self.env)
            env.setdefault("HF_HUB_OFFLINE", "1")
            env.setdefault("TRANSFORMERS_OFFLINE", "1")
            env["PYTHONUNBUFFERED"] = "1"
            try:
                proc = subprocess.Popen(
                    [self.python, "-m", "deepdive.codegen.worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise BackendError(f"cannot start the model worker with {self.python}: {exc}") from None
            self._proc = proc
            threading.Thread(target=self._read_stdout, args=(proc,), name="model-worker-out", daemon=True).start()
            threading.Thread(target=self._read_stderr, args=(proc,), name="model-worker-err", daemon=True).start()
            return proc

    def _read_stdout(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                self._stderr.append(raw.decode("utf-8", "replace").rstrip())
                continue
            entry = self._queues.get(msg.get("id")) if isinstance(msg, dict) else None
            if entry is not None:
                entry[1].put(msg)
        code = proc.wait()
        time.sleep(0.05)  # let the stderr reader catch the last lines
        last = next((line for line in reversed(self._stderr) if line.strip()), "")
        why = f"the model worker exited (code {code})" + (f": {last.strip()}" if last else "")
        for rid, (owner, q) in list(self._queues.items()):
            if owner is proc:
                q.put({"id": rid, "event": "exit", "message": why})

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def _send(self, msg: dict) -> tuple[int, "queue.Queue[dict]"]:
        proc = self._ensure_process()
        rid = next(self._ids)
        q: "queue.Queue[dict]" = queue.Queue()
        self._queues[rid] = (proc, q)
        msg = dict(msg, id=rid)
        try:
            self._write(proc, msg)
        except BackendError:
            self._queues.pop(rid, None)
            raise
        return rid, q

    def _write(self, proc: subprocess.Popen, msg: dict) -> None:
        line = (json.dumps(msg, ensure_ascii=False) + "\n").encode("utf-8")
        with self._write_lock:
            try:
                assert proc.stdin is not None
                proc.stdin.write(line)
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                raise BackendError(
                    "the model worker exited" + (f": {self.stderr_tail(1)}" if self.stderr_tail(1) else "")
                ) from None

    def _wait(
        self, rid: int, q: "queue.Queue[dict]", timeout: float, what: str, cancel: Optional[threading.Event] = None
    ) -> dict:
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    msg = q.get(timeout=0.05)
                    break
                except queue.Empty:
                    if cancel is not None and cancel.is_set():
                        # The worker finishes what it does (a load is not interruptible); its reply
                        # goes nowhere, and the next request finds the model loaded.
                        raise Cancelled() from None
                    if time.monotonic() > deadline:
                        raise BackendError(f"the model worker did not answer {what} within {timeout:.0f} s") from None
        finally:
            self._queues.pop(rid, None)
        if msg.get("event") in ("error", "exit"):
            raise BackendError(msg.get("message") or f"{what} failed")
        return msg

    # -- requests ------------------------------------------------------------------------------

    def load(self, backend: str, model_path: str) -> dict:
        """Load the model unless this worker already holds it; returns the ``loaded`` reply."""
        spec = (backend, os.path.abspath(model_path))
        with self._gen_lock:
            return self._load_locked(spec)

    def _load_locked(self, spec: tuple[str, str], cancel: Optional[threading.Event] = None) -> dict:
        if self.loaded == spec:
            return dict(self._load_info, cached=True)
        for attempt in range(2):
            rid, q = self._send({"op": "load", "backend": spec[0], "model_path": spec[1]})
            try:
                msg = self._wait(rid, q, self.load_timeout_s, f"loading {spec[1]}", cancel)
            except BackendError as exc:
                if attempt == 0 and "model worker exited" in str(exc) and not self.alive:
                    continue  # it died before or while loading (not of the load's own error): once more
                raise
            self._loaded = spec
            self._load_info = msg
            if spec[0] == "llamacpp" and self.env.get("DEEPDIVE_LLM_WARM", os.environ.get("DEEPDIVE_LLM_WARM", "1")) != "0":
                from deepdive.codegen.frames.prompt import warm_prefixes

                self.warm(warm_prefixes())
            return msg
        raise AssertionError("unreachable")

    def warm(self, systems: list[str]) -> None:
        """Have the worker evaluate these system prompts' beginnings while it is idle (the llama.cpp runner
        keeps their states, so a later prompt that starts with one evaluates only the rest). Returns at
        once; the worker's ``warmed`` reply lands in :attr:`last_warm`. Set ``DEEPDIVE_LLM_WARM=0`` to
        skip the warm-up that follows each llama.cpp load."""
        rid, q = self._send({"op": "warm", "systems": list(systems)})

        def collect() -> None:
            try:
                self.last_warm = q.get(timeout=3600)
            except queue.Empty:
                pass
            finally:
                self._queues.pop(rid, None)

        threading.Thread(target=collect, name="model-worker-warm", daemon=True).start()

    def generate(
        self,
        backend: str,
        model_path: str,
        system: str,
        messages: list[dict],
        *,
        cancel: Optional[threading.Event] = None,
        max_new_tokens: int = 2048,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Stream a generation; raises :class:`Cancelled` when ``cancel`` is set, BackendError on failure."""
        spec = (backend, os.path.abspath(model_path))
        # One generation at a time (the worker runs them in order anyway); a cancel ends the wait.
        while not self._gen_lock.acquire(timeout=0.05):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
        try:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            self._load_locked(spec, cancel)
            rid, q = self._send(
                {
                    "op": "generate",
                    "system": system,
                    "messages": messages,
                    "max_new_tokens": int(max_new_tokens),
                    "temperature": float(temperature),
                }
            )
            proc = self._queues[rid][0]
            finished = False
            cancel_sent_at: Optional[float] = None
            last = time.monotonic()
            try:
                while True:
                    if cancel is not None and cancel.is_set() and cancel_sent_at is None:
                        self._cancel(proc, rid)
                        cancel_sent_at = time.monotonic()
                    try:
                        msg = q.get(timeout=0.02)
                    except queue.Empty:
                        now = time.monotonic()
                        if cancel_sent_at is not None and now - cancel_sent_at > CANCEL_GRACE_S:
                            self.kill()
                            finished = True
                            raise Cancelled("cancelled (the model worker did not stop in time and was killed)")
                        if cancel_sent_at is None and now - last > self.idle_timeout_s:
                            self._cancel(proc, rid)
                            raise BackendError(f"the model wrote nothing for {self.idle_timeout_s:.0f} s")
                        continue
                    last = time.monotonic()
                    event = msg.get("event")
                    if event == "chunk":
                        if cancel_sent_at is None:
                            yield msg.get("text", "")
                    elif event == "done":
                        finished = True
                        self.last_done = msg
                        if cancel_sent_at is not None or msg.get("reason") == "cancelled":
                            raise Cancelled()
                        return
                    elif event in ("error", "exit"):
                        finished = True
                        if cancel_sent_at is not None:
                            raise Cancelled()
                        if msg.get("code") == "prompt_too_long":
                            raise PromptTooLong(msg.get("message") or "the prompt is too long for the model")
                        raise BackendError(msg.get("message") or "generation failed")
            finally:
                if not finished:
                    self._cancel(proc, rid)  # the consumer stopped reading: stop the model too
                self._queues.pop(rid, None)
        finally:
            self._gen_lock.release()

    def _cancel(self, proc: subprocess.Popen, rid: int) -> None:
        if proc.poll() is None:
            try:
                self._write(proc, {"op": "cancel", "id": rid})
            except BackendError:
                pass

    def release(self, timeout_s: float = 120.0) -> str:
        """Free the GPU memory the model holds (it moves to the CPU); a no-op without a worker."""
        if not self.alive:
            return "none"
        # Waits for a running generation to end first: the worker handles requests in order.
        rid, q = self._send({"op": "release"})
        return str(self._wait(rid, q, timeout_s, "release").get("device", "cpu"))

    def shutdown(self, timeout_s: float = 3.0) -> None:
        """Ask the worker to exit; kill it when it does not within ``timeout_s``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._write(proc, {"op": "shutdown"})
                proc.wait(timeout=timeout_s)
            except (BackendError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for stream in (proc.stdin,):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        self._loaded = None


_shared: Optional[ModelWorker] = None
_shared_lock = threading.Lock()


def shared_worker() -> ModelWorker:
    """The daemon's one model worker (started on its first request)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ModelWorker()
            atexit.register(_shared.kill)
        return _shared


def release_shared() -> str:
    """Free the shared worker's GPU memory, e.g. when a training job needs the GPU."""
    return _shared.release() if _shared is not None else "none"


def shutdown_shared() -> None:
    if _shared is not None:
        _shared.shutdown()


class _WorkerBackend(Backend):
    kind = ""

    def __init__(
        self,
        model_path: Optional[str],
        *,
        worker: Optional[ModelWorker] = None,
        max_new_tokens: int = 2048,
        temperature: float = 0.0,
    ) -> None:
        self.model_path = self._validate(model_path)
        self.worker = worker
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    @abc.abstractmethod
    def _validate(self, model_path: Optional[str]) -> str:
        """The model's path, checked for this kind of backend (a one-line BackendError when unusable)."""

    def _worker(self) -> ModelWorker:
        if self.worker is None:
            self.worker = shared_worker()
        return self.worker

    def load(self) -> dict:
        return self._worker().load(self.kind, self.model_path)

    def stream(self, system: str, messages: list[dict], cancel: Optional[threading.Event] = None) -> Iterator[str]:
        return self._worker().generate(
            self.kind,
            self.model_path,
            system,
            messages,
            cancel=cancel,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
        )


class TransformersBackend(_WorkerBackend):
    """A local Hugging Face causal-LM directory, run by the model worker (GPU when there is one)."""

    name = kind = "transformers"

    def _validate(self, model_path: Optional[str]) -> str:
        if not model_path:
            raise BackendError("the transformers backend needs model_path: a local Hugging Face model directory")
        path = os.path.abspath(os.path.expanduser(model_path))
        if not os.path.isdir(path):
            raise BackendError(f"model directory not found: {model_path}")
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise BackendError(f"{model_path} has no config.json: not a Hugging Face model directory")
        return path


class LlamaCppBackend(_WorkerBackend):
    """A GGUF file through llama-cpp-python, run by the model worker."""

    name = kind = "llamacpp"

    def _validate(self, model_path: Optional[str]) -> str:
        from ..worker_base import WorkerError  # no heavy imports at module level there
        from ..worker_llamacpp import check_gguf_path

        path = os.path.abspath(os.path.expanduser(model_path)) if model_path else ""
        try:
            check_gguf_path(path if model_path else "")
        except WorkerError as exc:
            raise BackendError(str(exc).replace(path, model_path or "")) from None
        return path
