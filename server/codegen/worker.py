"""The model worker: a long-lived subprocess that holds one local model and streams its tokens.

Run as ``python -m deepdive.codegen.worker``. The daemon never imports torch, transformers or
llama_cpp; :class:`deepdive.codegen.backends.worker_client.ModelWorker` starts this process and talks
to it over stdin/stdout, one JSON object per line.

Requests (stdin)::

    {"op": "load", "id": 1, "backend": "transformers" | "llamacpp", "model_path": "..."}
    {"op": "generate", "id": 2, "system": "...", "messages": [{"role": ..., "content": ...}],
     "max_new_tokens": 2048, "temperature": 0.0}
    {"op": "warm", "id": 4, "systems": ["...", ...]}   # evaluate these system prompts' beginnings when idle
    {"op": "cancel", "id": 2}           # stops generation ``id`` within a token or two
    {"op": "release", "id": 3}          # frees GPU memory (the model moves to the CPU)
    {"op": "shutdown"}

Replies (stdout), each with the request's ``id``::

    {"id": 1, "event": "loaded", "backend": ..., "device": "cuda" | "cpu", "threads": 2, "seconds": 1.2}
    {"id": 2, "event": "chunk", "text": "..."}                    # many
    {"id": 2, "event": "done", "tokens": 57, "reason": "stop" | "length" | "cancelled"}
    {"id": 3, "event": "released", "device": "cpu"}
    {"id": 4, "event": "warmed", "count": 19, "seconds": 41.2}       # count 0: the runtime keeps no prompt states
    {"id": n, "event": "error", "message": "one line", "code": "prompt_too_long"}   # code: optional

Loads, generations and releases run one at a time, in order, on one thread; the main thread keeps
reading stdin so that ``cancel`` and ``shutdown`` are seen while a generation runs. A warm-up yields:
it stops between chunks of a prompt when another request is queued, and goes on after it (the part
evaluated is kept), so it never holds a generation back by more than one chunk. Anything a
library prints goes to stderr: stdout carries only these lines.

The runners: :mod:`.worker_transformers` (a model folder) and :mod:`.worker_llamacpp` (a GGUF file);
what they share with the loop is in :mod:`.worker_base`.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from typing import Any, Optional

from deepdive.codegen.worker_base import Emit, WorkerError, one_line
from deepdive.codegen.worker_llamacpp import LlamaCppModel
from deepdive.codegen.worker_transformers import TransformersModel


class Worker:
    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.jobs: "queue.Queue[Optional[dict]]" = queue.Queue()
        self.cancels: dict[Any, threading.Event] = {}
        self.lock = threading.Lock()
        self.model: Any = None
        self.spec: Optional[tuple[str, str]] = None
        self.thread = threading.Thread(target=self._run, name="model-worker", daemon=True)
        self.thread.start()

    def handle(self, req: dict) -> bool:
        """Handle one request line on the reading thread; False means shut down."""
        op = req.get("op")
        rid = req.get("id")
        if op == "shutdown":
            with self.lock:
                for ev in self.cancels.values():
                    ev.set()
            self.jobs.put(None)
            return False
        if op == "cancel":
            with self.lock:
                ev = self.cancels.get(rid)  # only a generation that is queued or running
            if ev is not None:
                ev.set()
            return True
        if op in ("load", "generate", "release", "warm"):
            if op == "generate":
                with self.lock:
                    self.cancels.setdefault(rid, threading.Event())
            self.jobs.put(req)
            return True
        self.emit({"id": rid, "event": "error", "message": f"unknown op {op!r}"})
        return True

    def _run(self) -> None:
        while True:
            req = self.jobs.get()
            if req is None:
                return
            rid = req.get("id")
            try:
                getattr(self, "_" + req["op"])(req)
            except WorkerError as exc:
                reply = {"id": rid, "event": "error", "message": str(exc)}
                if exc.code:
                    reply["code"] = exc.code
                self.emit(reply)
            except Exception as exc:  # noqa: BLE001 - the worker survives a failed request
                import traceback

                traceback.print_exc(file=sys.stderr)
                self.emit({"id": rid, "event": "error", "message": f"{type(exc).__name__}: {one_line(exc)}"})
            finally:
                if req.get("op") == "generate":
                    with self.lock:
                        self.cancels.pop(rid, None)

    def _load(self, req: dict) -> None:
        backend = req.get("backend")
        path = str(req.get("model_path") or "")
        spec = (str(backend), path)
        start = time.perf_counter()
        if self.spec != spec or self.model is None:
            if self.model is not None:  # another model: free the old one's memory first
                try:
                    self.model.release()
                except Exception:  # noqa: BLE001
                    pass
            self.model = None
            self.spec = None
            import gc

            gc.collect()
            if backend == "transformers":
                self.model = TransformersModel(path)
            elif backend == "llamacpp":
                self.model = LlamaCppModel(path)
            else:
                raise WorkerError(f"unknown backend {backend!r}: transformers or llamacpp")
            self.spec = spec
        self.emit(
            {
                "id": req.get("id"),
                "event": "loaded",
                "backend": backend,
                "device": self.model.device,
                "threads": getattr(self.model, "threads", None),
                "seconds": round(time.perf_counter() - start, 4),
            }
        )

    def _generate(self, req: dict) -> None:
        rid = req.get("id")
        with self.lock:
            cancel = self.cancels.setdefault(rid, threading.Event())
        if cancel.is_set():
            self.emit({"id": rid, "event": "done", "tokens": 0, "reason": "cancelled"})
            return
        if self.model is None and self.spec is not None:
            self._load({"backend": self.spec[0], "model_path": self.spec[1], "id": None, "quiet": True})
        if self.model is None:
            raise WorkerError("no model loaded: send a load request first")
        info = self.model.generate(req, cancel, lambda text: self.emit({"id": rid, "event": "chunk", "text": text}))
        self.emit({"id": rid, "event": "done", **info})

    def _warm(self, req: dict) -> None:
        """Evaluate system prompts' beginnings into the runtime's prompt cache while nothing else waits."""
        rid = req.get("id")
        systems = [str(t) for t in req.get("systems") or []]
        done, seconds = int(req.get("done") or 0), float(req.get("seconds") or 0.0)
        warm = getattr(self.model, "warm", None)
        if warm is None:  # no model (released: not reloaded for a warm-up), or a runtime without a cache
            self.emit({"id": rid, "event": "warmed", "count": 0, "seconds": 0.0})
            return
        waiting = lambda: not self.jobs.empty()  # noqa: E731
        while systems:
            if waiting():  # a request goes first; the rest of the warm-up after it
                self.jobs.put({"op": "warm", "id": rid, "systems": systems, "done": done, "seconds": seconds})
                return
            start = time.perf_counter()
            finished = warm(systems[0], waiting)
            seconds += time.perf_counter() - start
            if finished:
                systems.pop(0)
                done += 1
        self.emit({"id": rid, "event": "warmed", "count": done, "seconds": round(seconds, 3)})

    def _release(self, req: dict) -> None:
        device = "none"
        if self.model is not None:
            device = self.model.release()
            if isinstance(self.model, LlamaCppModel):
                self.model = None  # reloaded from self.spec on the next generate
        self.emit({"id": req.get("id"), "event": "released", "device": device})


def main() -> int:
    # Keep stdout for the protocol: whatever a library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    write_lock = threading.Lock()

    def emit(msg: dict) -> None:
        if msg.get("id") is None and msg.get("event") == "loaded":
            return  # an implicit reload after a release
        line = json.dumps(msg, ensure_ascii=False)
        with write_lock:
            try:
                out.write(line + "\n")
                out.flush()
            except (BrokenPipeError, ValueError):
                os._exit(0)

    worker = Worker(emit)
    emit({"id": None, "event": "ready", "pid": os.getpid()})
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        try:
            req = json.loads(raw)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            emit({"id": None, "event": "error", "message": f"bad request line: {exc}"})
            continue
        if not worker.handle(req):
            break
    else:
        worker.handle({"op": "shutdown"})  # stdin closed: the client is gone; stop what runs
    worker.thread.join(timeout=5)
    out.flush()
    os._exit(0)  # do not wait for library threads


if __name__ == "__main__":
    sys.exit(main())
