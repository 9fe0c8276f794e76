"""The model worker's llama.cpp runner: a GGUF file, loaded with llama-cpp-python, its tokens streamed; the
threads it runs on and the prompt cache it keeps.

:func:`check_gguf_path` is also the client's argument check (before a worker starts). The runner
itself runs only in the worker process (:mod:`deepdive.codegen.worker`).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from deepdive.codegen.worker_base import DEFAULT_MAX_NEW_TOKENS, MAX_NEW_TOKENS, WorkerError, one_line

__all__ = ["check_gguf_path", "LlamaCppModel", "PROMPT_CACHE_BYTES", "batch_threads", "cpu_threads"]


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
            raise WorkerError(f"cannot load {model_path}: {one_line(exc)}") from None
        # The states of earlier prompts, so a prompt that starts like one of them (the frame prompt's
        # instructions and example, a repair round's conversation) evaluates only the rest.
        self.llm.set_cache(_lean_cache(PROMPT_CACHE_BYTES))
        self.model_path = model_path
        self.device = "cuda" if gpu else "cpu"
        self._formatter = _chat_formatter(self.llm)

    def generate(self, req: dict, cancel: threading.Event, emit_text: Callable[[str], None]) -> dict:
        system = str(req.get("system", ""))
        chat = ([{"role": "system", "content": system}] if system else []) + list(req.get("messages", []))
        max_new = max(1, min(int(req.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS), MAX_NEW_TOKENS))
        prompt_tokens, reused = self._prompt_reuse(chat)
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
        info = {"tokens": tokens, "reason": reason}
        if prompt_tokens:
            info.update(prompt_tokens=prompt_tokens, reused_tokens=reused)
        return info

    def _prompt_reuse(self, chat: list[dict]) -> tuple[int, int]:
        """The prompt's length in tokens and how many of them an earlier state holds (the context's own,
        or the prompt cache's), which llama-cpp-python then does not evaluate again; (0, 0) without a
        chat template to render."""
        if self._formatter is None:
            return 0, 0
        tokens = self.llm.tokenize(self._formatter(messages=chat).prompt.encode("utf-8"), special=True)
        reused = self.llm.longest_token_prefix(self.llm._input_ids.tolist(), tokens)
        cache = self.llm.cache
        key = cache._find_longest_prefix_key(tuple(tokens)) if cache is not None else None
        if key is not None:
            reused = max(reused, self.llm.longest_token_prefix(list(key), tokens))
        return len(tokens), min(reused, len(tokens) - 1)

    def warm(self, system: str, stop: Callable[[], bool]) -> bool:
        """Evaluate the chat prompt's beginning up to the end of ``system`` and keep its state in the prompt
        cache, in chunks of :data:`WARM_CHUNK` tokens; ``stop()`` between chunks ends it early (the part
        evaluated is kept). True when the whole beginning is in the cache."""
        tokens = self._system_tokens(system)
        if not tokens:
            return True
        llm = self.llm
        cache = llm.cache
        key = cache._find_longest_prefix_key(tuple(tokens)) if cache is not None else None
        if key is not None and llm.longest_token_prefix(list(key), tokens) >= len(tokens):
            return True  # an earlier prompt's state already covers it
        # start from what the context already holds (llama-cpp-python's generate() does the same)
        llm.n_tokens = llm.longest_token_prefix(llm._input_ids.tolist(), tokens)
        if key is not None:
            state = cache[tokens]
            if llm.longest_token_prefix(state.input_ids.tolist(), tokens) > llm.n_tokens:
                llm.load_state(state)
                llm.n_tokens = llm.longest_token_prefix(llm._input_ids.tolist(), tokens)
        finished = True
        while llm.n_tokens < len(tokens):
            if stop():
                finished = False
                break
            llm.eval(tokens[llm.n_tokens:llm.n_tokens + WARM_CHUNK])
        if cache is not None and llm.n_tokens:
            done = tokens[:llm.n_tokens]
            cache[done] = llm.save_state()
            if hasattr(cache, "pin"):
                cache.pin(done)
                if key is not None and len(key) < len(done) and list(key) == done[:len(key)]:
                    cache.unpin(key)  # an earlier, partial warm-up of this beginning: the longer state covers it
        return finished

    def _system_tokens(self, system: str) -> list[int]:
        """The tokens a chat prompt with this system message starts with, as create_chat_completion makes
        them (the model's own chat template), up to the end of the system text."""
        if self._formatter is None:
            return []
        rendered = self._formatter(messages=[{"role": "system", "content": system},
                                             {"role": "user", "content": "-"}]).prompt
        end = rendered.find(system)
        if end < 0:
            return []
        return self.llm.tokenize(rendered[:end + len(system)].encode("utf-8"), special=True)

    def release(self) -> str:
        # llama.cpp keeps its layers where they were loaded: free them; the next request reloads.
        self.llm = None
        import gc

        gc.collect()
        return "unloaded"


#: The RAM the llama.cpp worker keeps earlier prompts' states in (about 12 KB a token for the 0.5B
#: Qwen2.5-Coder, 28 KB for the 1.5B): the least recently used go first. The compact frame prompts' warmed
#: system prompts (33 of about 940 tokens) take about 0.4 GB for the 0.5B and 0.9 GB for the 1.5B; 2 GiB
#: keeps them and the last dozen or more requests' states.
PROMPT_CACHE_BYTES = 2 << 30
#: Tokens evaluated between two looks at the request queue during a warm-up (about 0.2-0.4 s here).
WARM_CHUNK = 64


def _lean_cache(capacity_bytes: int) -> Any:
    """llama-cpp-python's RAM prompt cache, keeping each state without its copy of the logits buffer.

    ``Llama.save_state`` copies the whole ``scores`` array (``n_batch`` x vocabulary floats: 300 MB for
    Qwen2.5's 151,936 tokens) into every state, and the cache counts only the llama.cpp state (about
    12 KB a token) against its capacity: 20 cached prompts held 7 GB here. Without ``logits_all`` nothing
    reads those scores (sampling runs in llama.cpp, and a loaded state re-evaluates its last token), so
    a one-row placeholder is kept instead (``load_state`` broadcasts it)."""
    import numpy as np
    from llama_cpp import LlamaRAMCache

    class LeanRAMCache(LlamaRAMCache):
        """Also keeps pinned states (the warmed prompt beginnings, :meth:`pin`) while it can: when over
        capacity the least recently used unpinned state goes first, a pinned one only when nothing else is
        left. (Unpinned, the beginnings of the examples no recent request used were the first to go: in a
        75-prompt evaluation with 1 GiB, the recommenders' warmed prompts were gone when their requests came
        late in the run, which then evaluated ~900 tokens instead of ~150.)"""

        def __init__(self, capacity_bytes: int) -> None:
            super().__init__(capacity_bytes=capacity_bytes)
            self.pinned: set[tuple[int, ...]] = set()

        def pin(self, key: Any) -> None:
            key = tuple(key)
            if key in self.cache_state:
                self.pinned.add(key)

        def unpin(self, key: Any) -> None:
            self.pinned.discard(tuple(key))

        def __setitem__(self, key: Any, value: Any) -> None:
            scores = getattr(value, "scores", None)
            if scores is not None and getattr(scores, "ndim", 0) == 2 and scores.shape[0] > 1:
                value.scores = np.zeros((1, scores.shape[1]), dtype=scores.dtype)
            key = tuple(key)
            if key in self.cache_state:
                del self.cache_state[key]
            self.cache_state[key] = value
            size = self.cache_size
            while size > self.capacity_bytes and len(self.cache_state) > 1:  # the state just stored stays
                others = [k for k in self.cache_state if k != key]
                victim = next((k for k in others if k not in self.pinned), others[0])
                size -= self.cache_state.pop(victim).llama_state_size
                self.pinned.discard(victim)

    return LeanRAMCache(capacity_bytes=capacity_bytes)


def _chat_formatter(llm: Any) -> Any:
    """The GGUF's chat template as llama-cpp-python renders it (None when the file has none)."""
    template = (llm.metadata or {}).get("tokenizer.chat_template")
    if not template:
        return None
    from llama_cpp import llama_chat_format

    def piece(token: int) -> str:
        return llm._model.token_get_text(token) if token >= 0 else ""

    return llama_chat_format.Jinja2ChatFormatter(template=template, eos_token=piece(llm.token_eos()),
                                                 bos_token=piece(llm.token_bos()),
                                                 stop_token_ids=[llm.token_eos()])


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
