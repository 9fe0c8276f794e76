"""Time to first token of frame prompts on the real Qwen2.5-Coder 0.5B: cold against warmed.

The llama.cpp model worker evaluates the frame prompts' shared beginnings (the reading prompt and each
reference example's instructions, example and what to write: ``deepdive.codegen.frames.prompt.warm_prefixes``)
while it is idle after a load. This bench measures what that buys a request: for each prompt of the
evaluation set (``bench/data/codegen_eval.jsonl``) whose frame shows a reference example, the frame
prompt exactly as the pipeline builds it is answered up to its first token twice, in alternating order
(cold first for even prompts, warmed first for odd ones):

- ``cold``: an empty prompt cache and a cleared context: the whole prompt is evaluated;
- ``warmed``: an empty cache, its beginning warmed (untimed, as the worker does while idle), then the
  context cleared: the prompt is answered from the cached state plus its own part.

Figures (one JSON line each, ``{"bench": "frame_ttft", ...}``): per arm the median time to first token and
the median tokens evaluated before it; the ratio cold/warmed; the prompts' median length. The model runs
in this process with the worker's own runner (``LlamaCppModel``: the same threads and cache). Without the
cached GGUF (``make test-model``) or llama-cpp-python the bench prints one ``skipped`` line.

    python bench/bench_frame_ttft.py [--prompts 8] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.models.testdata: where the test model is cached

BENCH = "frame_ttft"


def emit(metric: str, value: Any, unit: str, **extra: Any) -> None:
    print(json.dumps({"bench": BENCH, "metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def frame_prompts(limit: int) -> list[tuple[str, str, list[dict]]]:
    """``(id, system, messages)`` of the set's prompts whose frame shows a reference example, as the pipeline asks."""
    from deepdive.codegen.frames import frame_for
    from deepdive.codegen.generation import GenerateParams
    from deepdive.codegen.instructions import user_message
    from deepdive.codegen.frames.prompt import frame_system_prompt
    from deepdive.codegen.run import Request
    from deepdive.codegen.understand import read_request

    out = []
    for line in (ROOT / "bench" / "data" / "codegen_eval.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        request = Request(GenerateParams(prompt=entry["prompt"], framework=entry.get("framework")),
                          read_request(entry["prompt"], entry.get("framework")), 0.0)
        frame = frame_for(request.spec, request.intent, request.framework)
        if frame is None or not frame.example_title.startswith("a reference example"):
            continue
        what = ", ".join(f"{n}()" for n in frame.write)
        ask = f"{user_message(request.spec, entry['prompt'])}\nWrite the model class and {what} in one ```python block."
        out.append((entry["id"], frame_system_prompt(frame, request.spec), [{"role": "user", "content": ask}]))
        if len(out) >= limit:
            break
    return out


def _shared(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def first_token(model: Any, system: str, messages: list[dict]) -> tuple[float, int, int]:
    """Seconds to the first streamed token, the prompt's tokens and those taken from a cached state."""
    chat = [{"role": "system", "content": system}, *messages]
    prompt_tokens, reused = model._prompt_reuse(chat)
    start = time.perf_counter()
    stream = model.llm.create_chat_completion(messages=chat, stream=True, max_tokens=4, temperature=0.0)
    seconds: Optional[float] = None
    for part in stream:
        if (part.get("choices") or [{}])[0].get("delta", {}).get("content"):
            seconds = time.perf_counter() - start
            break
    close = getattr(stream, "close", None)
    if close:
        close()
    return (seconds if seconds is not None else time.perf_counter() - start), prompt_tokens, reused


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help="prompts measured (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the worker's)")
    args = parser.parse_args(argv)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        emit("skipped", "llama-cpp-python is not installed: make test-model installs it", "text")
        return 0
    from tests.models import testdata

    path = testdata.cached(testdata.SETS["qwen2.5-coder-0.5b"])
    if path is None:
        emit("skipped", "the Qwen2.5-Coder 0.5B test file is not cached: run make test-model", "text")
        return 0
    if args.threads:
        os.environ["DEEPDIVE_LLM_THREADS"] = str(args.threads)
    from deepdive.codegen.frames.prompt import warm_prefixes
    from deepdive.codegen.worker_llamacpp import PROMPT_CACHE_BYTES, LlamaCppModel, _lean_cache

    model = LlamaCppModel(str(path))
    prefixes = warm_prefixes()
    prompts = frame_prompts(args.prompts)
    figures: dict[str, list[tuple[float, int, int]]] = {"cold": [], "warmed": []}
    lengths = []
    for index, (pid, system, messages) in enumerate(prompts):
        lengths.append(None)
        for arm in (("cold", "warmed") if index % 2 == 0 else ("warmed", "cold")):
            model.llm.set_cache(_lean_cache(PROMPT_CACHE_BYTES))
            model.llm.reset()
            if arm == "warmed":
                # the warmed beginning that shares the most with this prompt (the worker warms them all)
                model.warm(max(prefixes, key=lambda p: _shared(p, system)), lambda: False)
                model.llm.reset()  # another request ran in between: only the cache holds the beginning
            seconds, tokens, reused = first_token(model, system, messages)
            figures[arm].append((seconds, tokens, reused))
            lengths[-1] = tokens
            print(f"{pid}: {arm} {seconds:.2f} s ({tokens} prompt tokens, {reused} cached)", file=sys.stderr, flush=True)
    for arm, rows in figures.items():
        emit("ttft_s", round(statistics.median(r[0] for r in rows), 3), "s (median)", arm=arm, prompts=len(rows),
             threads=model.threads)
        emit("evaluated_tokens", statistics.median(r[1] - r[2] for r in rows), "tokens (median, before the first)",
             arm=arm)
    cold = statistics.median(r[0] for r in figures["cold"])
    warm = statistics.median(r[0] for r in figures["warmed"])
    emit("ttft_s", round(warm, 3), "s (median, warmed)", baseline=round(cold, 3), ratio=round(cold / warm, 2),
         arm="warmed vs cold")
    emit("prompt_tokens", statistics.median(lengths), "tokens (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
