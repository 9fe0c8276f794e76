"""The model worker: a long-lived subprocess that holds one local model and streams its tokens.

Run as ``python -m deepdive.codegen.worker``. The daemon never imports torch, transformers or
llama_cpp; :class:`deepdive.codegen.backends.worker_client.ModelWorker` starts this process and talks
to it over stdin/stdout, one JSON object per line.

Requests (stdin)::

    {"op": "load", "id": 1, "backend": "transformers" | "llamacpp", "model_path": "..."}
    {"op": "generate", "id": 2, "system": "...", "messages": [{"role": ..., "content": ...}],
     "max_new_tokens": 2048, "temperature": 0.0}
    {"op": "cancel", "id": 2}           # stops generation ``id`` within a token or two
    {"op": "release", "id": 3}          # frees GPU memory (the model moves to the CPU)
    {"op": "shutdown"}

Replies (stdout), each with the request's ``id``::

    {"id": 1, "event": "loaded", "backend": ..., "device": "cuda" | "cpu", "threads": 2, "seconds": 1.2}
    {"id": 2, "event": "chunk", "text": "..."}                    # many
    {"id": 2, "event": "done", "tokens": 57, "reason": "stop" | "length" | "cancelled"}
    {"id": 3, "event": "released", "device": "cpu"}
    {"id": n, "event": "error", "message": "one line", "code": "prompt_too_long"}   # code: optional

Loads, generations and releases run one at a time, in order, on one thread; the main thread keeps
reading stdin so that ``cancel`` and ``shutdown`` are seen while a generation runs. Anything a
library prints goes to stderr: stdout carries only these lines.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from typing import Any, Callable, Optional

MAX_NEW_TOKENS = 4096
DEFAULT_MAX_NEW_TOKENS = 2048
MIN_ROOM = 1024  # a prompt must leave this many tokens (or max_new_tokens when smaller) for the answer

Emit = Callable[[dict], None]


class WorkerError(Exception):
    """A failure to report as one line (``error`` event), without a traceback; ``code`` names the
    failures a client handles (``prompt_too_long``)."""

    def __init__(self, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def _plain_prompt(system: str, messages: list[dict]) -> str:
    parts = [f"System: {system.strip()}"] if system else []
    for msg in messages:
        role = str(msg.get("role", "user")).capitalize()
        parts.append(f"{role}: {str(msg.get('content', '')).strip()}")
    parts.append("Assistant:")
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------------------------
# transformers
# ------------------------------------------------------------------------------------------------


class TransformersModel:
    backend = "transformers"

    def __init__(self, model_path: str) -> None:
        if not os.path.isdir(model_path):
            raise WorkerError(f"model directory not found: {model_path}")
        if not os.path.isfile(os.path.join(model_path, "config.json")):
            raise WorkerError(f"{model_path} has no config.json: not a Hugging Face model directory")
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise WorkerError(f"transformers is not installed ({exc.name}): pip install 'deepdive[llm]'") from None
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(model_path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - reported as one line
            raise WorkerError(f"cannot read the model config in {model_path}: {_one_line(exc)}") from None
        mapping = transformers.models.auto.modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        if getattr(config, "model_type", None) not in mapping:
            raise WorkerError(
                f"{model_path} is not a causal language model (model type {config.model_type!r}); "
                "code generation needs a decoder model such as Qwen2.5-Coder, Llama or GPT-2"
            )
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.threads = torch.get_num_threads()
        dtype = torch.float32
        if self.device == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001
            raise WorkerError(f"cannot load the tokenizer in {model_path}: {_one_line(exc)}") from None
        try:
            # `dtype` since transformers 4.56; `torch_dtype` before (pyproject allows >= 4.44).
            major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
            key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
            self.model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, **{key: dtype})
        except Exception as exc:  # noqa: BLE001
            raise WorkerError(f"cannot load the model in {model_path}: {_one_line(exc)}") from None
        self.model.eval()
        self.model.to(self.device)
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    def prompt_ids(self, system: str, messages: list[dict]):
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            chat = ([{"role": "system", "content": system}] if system else []) + list(messages)
            try:
                text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            except Exception:  # noqa: BLE001 - templates without a system role (Gemma) raise
                if not system or not messages:
                    raise
                first = dict(messages[0], content=f"{system}\n\n{messages[0].get('content', '')}")
                text = tok.apply_chat_template([first, *messages[1:]], add_generation_prompt=True, tokenize=False)
            # The template already wrote the special tokens (BOS): do not add them twice.
            return tok(text, return_tensors="pt", add_special_tokens=False).input_ids
        return tok(_plain_prompt(system, messages), return_tensors="pt").input_ids

    def generate(self, req: dict, cancel: threading.Event, emit_text: Callable[[str], None]) -> dict:
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        torch = self.torch
        if self.device == "cuda" and next(self.model.parameters()).device.type != "cuda":
            self.model.to("cuda")  # back on the GPU after a release
        ids = self.prompt_ids(str(req.get("system", "")), list(req.get("messages", [])))
        max_new = max(1, min(int(req.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS), MAX_NEW_TOKENS))
        if self.max_positions:
            room = int(self.max_positions) - ids.shape[1]
            if room < min(max_new, MIN_ROOM):  # no room left for a whole program
                raise WorkerError(
                    f"the prompt has {ids.shape[1]} tokens and the model's context is {self.max_positions}: "
                    f"no room for {min(max_new, MIN_ROOM)} new tokens",
                    code="prompt_too_long",
                )
            max_new = min(max_new, room)
        count = {"tokens": 0}

        tok = self.tokenizer

        class Streamer(BaseStreamer):
            """Hands out each token's text as soon as it decodes to whole characters."""

            def __init__(self) -> None:
                self.prompt = True
                self.held = 0
                self.ids: list[int] = []
                self.printed = 0

            def put(self, value) -> None:  # noqa: ANN001
                if self.prompt:  # generate() puts the prompt first
                    self.prompt = False
                    return
                new_ids = value.reshape(-1).tolist()
                count["tokens"] += len(new_ids)
                self.ids.extend(new_ids)
                text = tok.decode(self.ids, skip_special_tokens=True)
                if text.endswith("\ufffd") and self.held < 3:
                    self.held += 1
                    return  # half of a multi-byte character: wait for the rest (a few tokens at most)
                self.held = 0
                if len(text) > self.printed:
                    emit_text(text[self.printed :])
                if text.endswith("\n"):
                    self.ids, self.printed = [], 0  # keeps decoding cheap on long outputs
                else:
                    self.printed = len(text)

            def end(self) -> None:
                text = tok.decode(self.ids, skip_special_tokens=True)
                if len(text) > self.printed:
                    emit_text(text[self.printed :])

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # noqa: ANN001
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        temperature = float(req.get("temperature") or 0.0)
        kwargs: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            kwargs = {"do_sample": True, "temperature": temperature, "top_p": 0.95}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            pad = 0
        streamer = Streamer()
        with torch.inference_mode():
            self.model.generate(
                ids.to(self.device),
                attention_mask=torch.ones_like(ids).to(self.device),
                max_new_tokens=max_new,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([Cancel()]),
                pad_token_id=pad,
                **kwargs,
            )
        if cancel.is_set():
            reason = "cancelled"
        elif count["tokens"] >= max_new:
            reason = "length"
        else:
            reason = "stop"
        return {"tokens": count["tokens"], "reason": reason, "prompt_tokens": int(ids.shape[1])}

    def release(self) -> str:
        self.model.to("cpu")
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()
        return "cpu"


# ------------------------------------------------------------------------------------------------
# llama.cpp
# ------------------------------------------------------------------------------------------------


def check_gguf_path(model_path: str) -> None:
    """Argument validation shared by the client (before starting a worker) and the worker."""
    if not model_path:
        raise WorkerError("the llamacpp backend needs model_path: a .gguf file")
    if os.path.isdir(model_path):
        raise WorkerError(f"{model_path} is a directory; the llamacpp backend needs a .gguf file")
    if not os.path.isfile(model_path):
        raise WorkerError(f"GGUF file not found: {model_path}")
    if not model_path.lower().endswith(".gguf"):
        raise WorkerError(f"{model_path} is not a .gguf file; the llamacpp backend loads GGUF models")


class LlamaCppModel:
    backend = "llamacpp"

    def __init__(self, model_path: str) -> None:
        check_gguf_path(model_path)
        try:
            from llama_cpp import Llama
        except ImportError:
            raise WorkerError("llama-cpp-python is not installed: pip install 'deepdive[llamacpp]'") from None
        gpu = _cuda_available()
        self.threads = cpu_threads()
        try:
            self.llm = Llama(
                model_path=model_path,
                n_ctx=8192,
                n_gpu_layers=-1 if gpu else 0,
                n_threads=self.threads,
                n_threads_batch=batch_threads(),
                verbose=False,
            )
        except Exception as exc:  # noqa: BLE001
            raise WorkerError(f"cannot load {model_path}: {_one_line(exc)}") from None
        from llama_cpp import LlamaRAMCache

        # The states of earlier prompts, so a prompt that starts like one of them (the frame prompt's
        # instructions and example, a repair round's conversation) evaluates only the rest.
        self.llm.set_cache(LlamaRAMCache(capacity_bytes=PROMPT_CACHE_BYTES))
        self.model_path = model_path
        self.device = "cuda" if gpu else "cpu"

    def generate(self, req: dict, cancel: threading.Event, emit_text: Callable[[str], None]) -> dict:
        system = str(req.get("system", ""))
        chat = ([{"role": "system", "content": system}] if system else []) + list(req.get("messages", []))
        max_new = max(1, min(int(req.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS), MAX_NEW_TOKENS))
        tokens = 0
        reason = "stop"
        stream = self.llm.create_chat_completion(
            messages=chat, stream=True, max_tokens=max_new, temperature=float(req.get("temperature") or 0.0)
        )
        for part in stream:
            if cancel.is_set():
                reason = "cancelled"
                break
            choice = (part.get("choices") or [{}])[0]
            text = (choice.get("delta") or {}).get("content")
            if text:
                tokens += 1
                emit_text(text)
            if choice.get("finish_reason") == "length":
                reason = "length"
        close = getattr(stream, "close", None)
        if close:
            close()
        return {"tokens": tokens, "reason": reason}

    def release(self) -> str:
        # llama.cpp keeps its layers where they were loaded: free them; the next request reloads.
        self.llm = None
        import gc

        gc.collect()
        return "unloaded"


#: The RAM the llama.cpp worker keeps earlier prompts' states in (about 12 KB a token for the 0.5B
#: Qwen2.5-Coder, 28 KB for the 1.5B): the oldest go first.
PROMPT_CACHE_BYTES = 512 << 20


def batch_threads() -> int:
    """Threads for evaluating a prompt: ``DEEPDIVE_LLM_BATCH_THREADS``, else every core this process may use.

    A prompt is evaluated in one burst of matrix products, which scales with cores (measured here on 2
    cores: about 180 prompt tokens/s on 1 thread, 330 on 2); the stalls :func:`cpu_threads` avoids are
    those of token-by-token generation."""
    raw = os.environ.get("DEEPDIVE_LLM_BATCH_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_threads() -> int:
    """Threads for llama.cpp: ``DEEPDIVE_LLM_THREADS``, else one less than the cores this process may use
    (physical cores at most), and at least one.

    llama.cpp's threads wait for each other at every layer; when another process takes one of their
    cores they stall. Measured on a 2-core machine running other work (load 3 to 5): the 0.5B model
    wrote 2 to 7 tokens/s on 2 threads and 35 tokens/s on 1. The core left over keeps the editor, the
    daemon and a training job responsive too. (llama-cpp-python's own default, half the logical CPUs,
    is the same on 2 cores.)"""
    raw = os.environ.get("DEEPDIVE_LLM_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or usable
    except ImportError:
        physical = usable
    return max(1, min(usable, physical) - 1)


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


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
        if op in ("load", "generate", "release"):
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
                self.emit({"id": rid, "event": "error", "message": f"{type(exc).__name__}: {_one_line(exc)}"})
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
