"""Time to first token of frame prompts on the real Qwen2.5-Coder 0.5B: cold against warmed, compact against full.

The llama.cpp model worker evaluates the frame prompts' shared beginnings
(``deepdive.codegen.frames.prompt.warm_prefixes``) while it is idle after a load. In the ``full`` form
those are the instructions, each reference example and what to write, and the request's own part (the
frame's constants as code, each property in the checker's words) ends the system prompt; in the
``compact`` form (the default) the whole system prompt is request-independent and warmed, and the request's
part is the short user message. This bench measures what each buys a request: for each prompt of the
evaluation set (``bench/data/codegen_eval.jsonl``) whose frame shows a reference example, the frame prompt
exactly as the pipeline builds it, in each form, is answered up to its first token cold and warmed, the
arms alternating (reversed order every other prompt):

- ``cold``: an empty prompt cache and a cleared context: the whole prompt is evaluated;
- ``warmed``: an empty cache, its beginning warmed (untimed, as the worker does while idle), then the
  context cleared: the prompt is answered from the cached state plus its own part.

Figures (one JSON line each, ``{"bench": "frame_ttft", ...}``): per form and arm the median time to first
token and the median tokens evaluated before it; the ratio cold/warmed per form and full/compact warmed;
the prompts' median length. The model runs in this process with the worker's own runner
(``LlamaCppModel``: the same threads and cache). Without the cached GGUF (``make test-model``) or
llama-cpp-python the bench prints one ``skipped`` line.

    python bench/bench_frame_ttft.py [--prompts 8] [--threads N] [--styles compact,full]
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


def frame_prompts(limit: int, style: Optional[str] = None) -> list[tuple[str, str, list[dict]]]:
    """``(id, system, messages)`` of the set's prompts whose frame shows a reference example, as the pipeline asks."""
    from deepdive.codegen.frames import frame_for
    from deepdive.codegen.generation import GenerateParams
    from deepdive.codegen.frames.prompt import frame_prompt
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
        system, ask = frame_prompt(frame, request.spec, entry["prompt"], style)
        out.append((entry["id"], system, [{"role": "user", "content": ask}]))
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
    parser.add_argument("--styles", default="compact,full", help="frame prompt forms measured (default compact,full)")
    args = parser.parse_args(argv)
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
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
    from deepdive.codegen.frames.prompt import STYLES, warm_prefixes
    from deepdive.codegen.worker_llamacpp import PROMPT_CACHE_BYTES, LlamaCppModel, _lean_cache

    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        parser.error(f"--styles: {', '.join(unknown)} is not one of {', '.join(STYLES)}")
    model = LlamaCppModel(str(path))
    prefixes = {style: warm_prefixes(style) for style in styles}
    prompts = {style: frame_prompts(args.prompts, style) for style in styles}
    arms = [(style, warmed) for style in styles for warmed in (False, True)]
    figures: dict[tuple[str, bool], list[tuple[float, int, int]]] = {arm: [] for arm in arms}
    lengths: dict[str, list[int]] = {style: [] for style in styles}
    for index in range(min(len(p) for p in prompts.values())):
        order = arms if index % 2 == 0 else arms[::-1]  # alternating, so a change in load falls on every arm
        for style, warmed in order:
            pid, system, messages = prompts[style][index]
            model.llm.set_cache(_lean_cache(PROMPT_CACHE_BYTES))
            model.llm.reset()
            if warmed:
                # the warmed beginning that shares the most with this prompt (the worker warms them all)
                model.warm(max(prefixes[style], key=lambda p: _shared(p, system)), lambda: False)
                model.llm.reset()  # another request ran in between: only the cache holds the beginning
            seconds, tokens, reused = first_token(model, system, messages)
            figures[(style, warmed)].append((seconds, tokens, reused))
            if not warmed:
                lengths[style].append(tokens)
            print(f"{pid}: {style} {'warmed' if warmed else 'cold'} {seconds:.2f} s ({tokens} prompt tokens, "
                  f"{reused} cached)", file=sys.stderr, flush=True)
    for (style, warmed), rows in figures.items():
        arm = "warmed" if warmed else "cold"
        emit("ttft_s", round(statistics.median(r[0] for r in rows), 3), "s (median)", arm=arm, style=style,
             prompts=len(rows), threads=model.threads, max=round(max(r[0] for r in rows), 3))
        emit("evaluated_tokens", statistics.median(r[1] - r[2] for r in rows), "tokens (median, before the first)",
             arm=arm, style=style, max=max(r[1] - r[2] for r in rows))
    for style in styles:
        cold = statistics.median(r[0] for r in figures[(style, False)])
        warm = statistics.median(r[0] for r in figures[(style, True)])
        emit("ttft_s", round(warm, 3), "s (median, warmed)", baseline=round(cold, 3), ratio=round(cold / warm, 2),
             arm="warmed vs cold", style=style)
        emit("prompt_tokens", statistics.median(lengths[style]), "tokens (median)", style=style)
    if "compact" in styles and "full" in styles:
        compact = statistics.median(r[0] for r in figures[("compact", True)])
        full = statistics.median(r[0] for r in figures[("full", True)])
        emit("ttft_s", round(compact, 3), "s (median, warmed)", baseline=round(full, 3), ratio=round(full / compact, 2),
             arm="compact vs full, both warmed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
