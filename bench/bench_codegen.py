"""Code generation speed: the builtin generator's latency and the verifier's wall time.

* ``generate_p50`` / ``generate_p95`` (ms): parse + builtin generation (no verification) over every
  prompt of tests/codegen (the PyTorch programs' prompts and the parser's), each repeated
  ``--repeat`` times after one warm-up pass. The daemon runs this in its own process.
* ``parse_p50`` (ms): the parser alone over the same prompts.
* ``verify_p50`` / ``verify_max`` (s): verify() (parse, imports, contract, sandboxed smoke run,
  and every property the prompt states) of ``--verify`` builtin programs, one at a time, from the
  warm template when it is up (bench_verify.py compares warm and cold). Load on the machine
  stretches it.

Prints one JSON object per line: {"bench": "codegen", "metric": ..., "value": ..., "unit": ...}.
No figure is asserted.

Usage: python bench/bench_codegen.py [--repeat 20] [--verify 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepdive.codegen.builtin import generate  # noqa: E402
from deepdive.codegen.parse import parse_intent  # noqa: E402

VERIFY_PROMPTS = [
    "a 3-layer CNN for MNIST with dropout, trained with mixed precision",
    "用LSTM做情感分类，词表大小20000，两个类别",
    "forecast the next 24 values of a univariate series with a transformer encoder",
    "ResNet-18 style classifier for CIFAR-10, 10 classes, with early stopping and checkpoints",
    "a GAN that generates 28x28 grayscale images to augment a small dataset",
    "prototypical network for 5-way 5-shot classification of 84x84 RGB images",
]


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"bench": "codegen", "metric": metric, "value": round(value, 4), "unit": unit, **extra}), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--verify", type=int, default=4, help="programs to verify (0: skip)")
    args = parser.parse_args()

    from tests.codegen.test_builtin_torch import PROMPTS as TORCH_PROMPTS
    from tests.codegen.test_parse import CASES

    prompts = [p for p, _, _ in TORCH_PROMPTS] + [p for p, _ in CASES]
    intents = [parse_intent(p) for p in prompts]
    torch_intents = [i for i in intents if i.framework == "torch"]
    for intent in torch_intents:  # warm-up (regex compilation, module imports)
        generate(intent)

    parse_times, gen_times = [], []
    for _ in range(args.repeat):
        for prompt in prompts:
            start = time.perf_counter()
            intent = parse_intent(prompt)
            parse_times.append(time.perf_counter() - start)
            if intent.framework != "torch":
                continue
            start = time.perf_counter()
            generate(intent)
            gen_times.append(time.perf_counter() - start)
    n = len(prompts)
    emit("parse_p50", statistics.median(parse_times) * 1e3, "ms", prompts=n)
    emit("generate_p50", statistics.median(gen_times) * 1e3, "ms", prompts=len(torch_intents), repeat=args.repeat)
    emit("generate_p95", percentile(gen_times, 0.95) * 1e3, "ms", prompts=len(torch_intents), repeat=args.repeat)
    emit("generate_max", max(gen_times) * 1e3, "ms")

    if args.verify:
        from deepdive.codegen.verify import verify

        from deepdive.codegen.understand import read_request

        seconds, ok = [], 0
        for prompt in VERIFY_PROMPTS[: args.verify]:
            reading = read_request(prompt)  # the stated properties are judged too, as in generation
            result = verify(generate(reading.intent).code, reading.intent, spec=reading.spec, timeout_s=300)
            seconds.append(result.seconds)
            ok += result.verified
        emit("verify_p50", statistics.median(seconds), "s", programs=len(seconds), verified=ok)
        emit("verify_max", max(seconds), "s", programs=len(seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
