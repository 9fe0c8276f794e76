"""Time to first token and tokens/s of the real test models on this machine, one JSON line each.

``make test-model`` prints these after the tests; the README's figures come from them. The same
measurement as ``deepdive model bench`` (:mod:`deepdive.models.bench`: a short fixed request, the
model already loaded), on the threads the worker uses (``DEEPDIVE_LLM_THREADS``, else every core).
"""

from __future__ import annotations

import json
import os
import sys

from deepdive.codegen.backends.worker_client import ModelWorker
from deepdive.models import ModelError
from deepdive.models.bench import measure
from deepdive.models.registry import ModelEntry

from . import testdata


def main() -> int:
    tokens = int(os.environ.get("DEEPDIVE_BENCH_TOKENS", "128"))
    for name, pieces in testdata.SETS.items():
        path = testdata.cached(pieces)
        if path is None:
            print(json.dumps({"model": name, "skipped": "not cached: python -m tests.models.testdata"}))
            continue
        worker = ModelWorker()
        try:
            speed = measure(ModelEntry(name=name, kind="gguf", path=str(path)), worker=worker, max_new_tokens=tokens)
        except ModelError as exc:
            print(json.dumps({"model": name, "error": str(exc)}))
            return 1
        finally:
            worker.shutdown()
        print(json.dumps({"model": name, "runtime": "llama-cpp-python", "threads": speed.threads,
                          "load_s": speed.load_s, "ttft_s": speed.ttft_s, "tokens_per_s": speed.tokens_per_s,
                          "tokens": speed.tokens, "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
