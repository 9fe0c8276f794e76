"""Speed on this machine: time to first token and tokens per second, measured once and cached.

``deepdive model bench NAME`` (and ``add``/``pull`` unless ``--no-bench``) loads the model in the model
worker (or asks Ollama), warms it with a one-token answer, sends one short fixed request, and times
the stream: the first token's delay (the model loaded and warm: prompt processing plus one step) and
the decoding speed after it. The load time is kept beside them. The
figures go into the registry, where the model picker and ``deepdive model list`` read them without
loading anything. Tokens are counted by the runtime (transformers, llama.cpp: one streamed piece per
token); for Ollama, as streamed pieces (one token each).
"""

from __future__ import annotations

import time
from typing import Any, Optional

from deepdive.codegen.backends import Backend, BackendError

from . import ModelError
from .registry import ModelEntry, Speed

SYSTEM = "You are a Python programmer. Answer with code only."
REQUEST = "Write a Python function fib(n) that returns the n-th Fibonacci number, with a docstring and a loop."
DEFAULT_TOKENS = 64
WARM_UP = "Reply with one word."


def backend_for(entry: ModelEntry, *, worker: Any = None, max_new_tokens: int = DEFAULT_TOKENS) -> Backend:
    """The backend that runs ``entry``, writing at most ``max_new_tokens`` tokens per answer."""
    from deepdive.codegen.backends.openai_compat import OpenAICompatibleBackend
    from deepdive.codegen.backends.worker_client import LlamaCppBackend, TransformersBackend

    try:
        if entry.kind == "gguf":
            return LlamaCppBackend(entry.path, worker=worker, max_new_tokens=max_new_tokens)
        if entry.kind == "hf-folder":
            return TransformersBackend(entry.path, worker=worker, max_new_tokens=max_new_tokens)
        return OpenAICompatibleBackend(entry.endpoint, model=entry.model, max_tokens=max_new_tokens)
    except BackendError as exc:
        raise ModelError(str(exc)) from None


def measure(entry: ModelEntry, *, worker: Any = None, max_new_tokens: int = DEFAULT_TOKENS) -> Speed:
    """Load ``entry`` and time one short generation; ModelError (one line) when it cannot run."""
    backend = backend_for(entry, worker=worker, max_new_tokens=max_new_tokens)
    load_s: Optional[float] = None
    threads: Optional[int] = None
    device = "server" if entry.kind == "ollama" else "cpu"
    try:
        if hasattr(backend, "load"):
            start = time.perf_counter()
            info = backend.load()
            load_s = round(time.perf_counter() - start, 3)
            threads, device = info.get("threads"), str(info.get("device") or device)
        # One token of another request first: the first request after a load also pages the weights in
        # and sizes buffers, which is load time. Another text, because llama.cpp reuses the cached
        # prefix of the previous prompt, and the measured request must be processed whole.
        for _ in backend_for(entry, worker=getattr(backend, "worker", None), max_new_tokens=1).stream(
                WARM_UP, [{"role": "user", "content": "Hello."}]):
            pass
        start = time.perf_counter()
        first = last = None
        pieces = 0
        for _ in backend.stream(SYSTEM, [{"role": "user", "content": REQUEST}]):
            last = time.perf_counter()
            first = first if first is not None else last
            pieces += 1
    except BackendError as exc:
        raise ModelError(f"{entry.name}: {exc}") from None
    if first is None or last is None:
        raise ModelError(f"{entry.name} wrote nothing for a short request: it cannot generate code")
    done = getattr(getattr(backend, "worker", None), "last_done", None) or {}
    tokens = int(done.get("tokens") or pieces)
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return Speed(
        ttft_s=round(first - start, 4),
        tokens_per_s=round(rate, 2),
        tokens=tokens,
        threads=threads,
        device=device,
        load_s=load_s,
        measured_at=round(time.time(), 3),
        prompt_tokens=done.get("prompt_tokens"),
    )


def describe(speed: Optional[Speed]) -> str:
    """"0.35 s to first token · 46 tokens/s (2 threads, cpu)", or what to run when not measured."""
    if speed is None:
        return ""
    return f"{speed.ttft_s:.2f} s to first token · {speed.tokens_per_s:.0f} tokens/s ({where(speed)})"


def where(speed: Speed) -> str:
    """"2 threads, cpu", "1 thread, cpu", or the device alone (a server's)."""
    if not speed.threads:
        return speed.device
    return f"{speed.threads} thread{'s' if speed.threads != 1 else ''}, {speed.device}"
