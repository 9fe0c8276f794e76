"""The local model worker on a tiny model: cold start, time to first token, tokens/s, cancel latency.

A random 2-layer GPT-2 (n_embd 64, BPE vocabulary of a few hundred tokens trained here, offline) is
built in a temporary directory, then driven the way the daemon drives a real model: through
:class:`deepdive.codegen.backends.worker_client.ModelWorker`, a subprocess speaking JSON lines.
The tiny model makes the figures the worker's own overhead (process start, torch and transformers
imports, the JSON-lines round trip, the streamer), not a model's speed.

Metrics, one JSON line each ({"bench": "codegen_model", "metric", "value", "unit", ...}):

* ``cold_load_s``: from ``ModelWorker()`` to the ``loaded`` reply (process start, imports, load);
  ``load_in_worker_s`` is the part the worker spent in ``from_pretrained``.
* ``warm_load_s``: a second load of the same model (answered from the client's cache).
* ``ttft_s``: request sent -> first text chunk, warm worker, median of ``--repeats``.
* ``tokens_per_s``: tokens generated / generation wall time, ``--tokens`` new tokens, median.
* ``in_process_tokens_per_s``: the same generation in this process with no worker (the baseline).
* ``chunks_per_generation``: text chunks the client received for ``--tokens`` tokens.
* ``cancel_s``: cancel set -> :class:`Cancelled` raised, during a long generation, median.
* ``restart_s``: the worker killed -> the next request's first chunk (restart + reload).
* ``openai_ttfc_s`` and ``openai_chunks_per_s``: the OpenAI-compatible client against a local SSE
  server that answers at once (``--chunks`` chunks of 8 characters): the client's own latency to the
  first chunk and its throughput, i.e. what it adds to a real server's.

Usage: python bench/bench_codegen_model.py [--tokens 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

from deepdive.codegen.backends import Cancelled
from deepdive.codegen.backends.worker_client import ModelWorker, TransformersBackend

LINES = [
    "import torch",
    "import torch.nn as nn",
    "def build_model():",
    "    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))",
    "def example_batch():",
    "    return torch.randn(2, 4), torch.randint(0, 2, (2,))",
    "def main():",
    "    loss = nn.functional.cross_entropy(build_model()(example_batch()[0]), example_batch()[1])",
    "if __name__ == '__main__':",
    "    main()",
]


def build_tiny_model(path: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(LINES * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_embd=64, n_head=2, n_positions=4096, vocab_size=len(fast),
        bos_token_id=None, eos_token_id=None, pad_token_id=fast.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    extra["load_average_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine weighs on every figure
    print(json.dumps({"bench": "codegen_model", "metric": metric, "value": round(value, 4), "unit": unit, **extra}),
          flush=True)


def in_process_tokens_per_s(path: Path, tokens: int, repeats: int) -> float:
    """The same greedy generation without the worker, streamer or pipe: the baseline of tokens_per_s."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    text = tok.apply_chat_template([{"role": "system", "content": SYSTEM}, *CHAT], add_generation_prompt=True,
                                   tokenize=False)
    ids = tok(text, return_tensors="pt").input_ids
    rates = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            rates.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - start))
    return statistics.median(rates)


CHAT = [{"role": "user", "content": "a 2-layer MLP classifier with 4 classes"}]
SYSTEM = "You write complete, runnable PyTorch training programs in Python."


def openai_client(chunks: int) -> tuple[float, float]:
    import http.server

    from deepdive.codegen.backends.openai_compat import OpenAICompatibleBackend

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # noqa: ANN002
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            event = json.dumps({"choices": [{"index": 0, "delta": {"content": "x = 1;\n"}}]})
            raw = f"data: {event}\n\n".encode()
            frame = f"{len(raw):x}\r\n".encode() + raw + b"\r\n"
            for _ in range(chunks):
                self.wfile.write(frame)
            done = b"data: [DONE]\n\n"
            self.wfile.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
            self.wfile.flush()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        backend = OpenAICompatibleBackend(f"http://127.0.0.1:{httpd.server_address[1]}")
        start = time.perf_counter()
        first = None
        n = 0
        for _text in backend.stream(SYSTEM, CHAT):
            if first is None:
                first = time.perf_counter() - start
            n += 1
        total = time.perf_counter() - start
        return first or total, n / total
    finally:
        httpd.shutdown()
        httpd.server_close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunks", type=int, default=5000)
    args = ap.parse_args()

    ttfc, rate = openai_client(args.chunks)
    emit("openai_ttfc_s", ttfc, "s", server="local SSE, answers at once")
    emit("openai_chunks_per_s", rate, "chunks/s", chunks=args.chunks)

    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "tiny-gpt2")
        t0 = time.perf_counter()
        worker = ModelWorker()
        try:
            info = worker.load("transformers", str(path))
            cold = time.perf_counter() - t0
            emit("cold_load_s", cold, "s", load_in_worker_s=info.get("seconds"), device=info.get("device"))
            t0 = time.perf_counter()
            worker.load("transformers", str(path))
            emit("warm_load_s", time.perf_counter() - t0, "s")

            backend = TransformersBackend(str(path), worker=worker, max_new_tokens=args.tokens)
            ttfts, rates, chunk_counts = [], [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                first = None
                chunks = 0
                for _text in backend.stream(SYSTEM, CHAT):
                    if first is None:
                        first = time.perf_counter() - start
                    chunks += 1
                total = time.perf_counter() - start
                tokens = int(worker.last_done.get("tokens", 0))
                ttfts.append(first or total)
                rates.append(tokens / total if total else 0.0)
                chunk_counts.append(chunks)
            emit("ttft_s", statistics.median(ttfts), "s", repeats=args.repeats, min=round(min(ttfts), 4))
            emit("tokens_per_s", statistics.median(rates), "tokens/s", new_tokens=args.tokens,
                 device=info.get("device"), note="tiny random GPT-2: worker overhead, not a model's speed")
            emit("chunks_per_generation", statistics.median(chunk_counts), "chunks", new_tokens=args.tokens)

            long_backend = TransformersBackend(str(path), worker=worker, max_new_tokens=4000)
            cancels = []
            for _ in range(args.repeats):
                cancel = threading.Event()
                at = None
                try:
                    for i, _text in enumerate(long_backend.stream(SYSTEM, CHAT, cancel)):
                        if i == 10:
                            cancel.set()
                            at = time.perf_counter()
                except Cancelled:
                    cancels.append(time.perf_counter() - at)
            emit("cancel_s", statistics.median(cancels), "s", repeats=len(cancels))

            os.kill(worker.pid, signal.SIGKILL)
            while worker.alive:
                time.sleep(0.01)
            start = time.perf_counter()
            for _text in backend.stream(SYSTEM, CHAT):
                emit("restart_s", time.perf_counter() - start, "s", restarts=worker.restarts)
                break
        finally:
            worker.shutdown()
        n = max(1, min(3, args.repeats))
        emit("in_process_tokens_per_s", in_process_tokens_per_s(path, args.tokens, n), "tokens/s",
             new_tokens=args.tokens, repeats=n)


if __name__ == "__main__":
    main()
