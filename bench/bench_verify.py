"""Verification time of the builtin's torch programs: checks started cold against checks forked from a
warm template (issue 19, item 7: a torch program's checks in at most 5 s).

Programs: the builtin's answers to five prompts (a CNN on MNIST, an LSTM sentiment classifier, a
transformer text classifier, a regression MLP on a CSV, a ResNet on CIFAR-10), each verified by
``verify()`` (parse, imports, contract, the sandboxed smoke run and property run) with the sandbox's
default limits and isolation.

Arms, in the same run: ``cold`` (``DEEPDIVE_SANDBOX_WARM=0``: every sandboxed run starts a new
interpreter that imports torch) and ``warm`` (the smoke and property runs forked from a template that
has torch imported already). ``--pairs`` pairs per program, the two arms taking turns and the order
swapped every pair, so that a change in the machine's load falls on both.

Metrics (one JSON object per line, ``{"bench": "verify", "metric", "value", "unit"}`` plus
``baseline`` (cold) and ``ratio`` (warm / cold) where compared):

- ``first_check_s``: the first verification with no template alive, so it includes the template's
  start (its import time is ``template_import_s``); against a cold verification of the same program;
- ``verify_s`` per program: median seconds of a whole verification, warm against cold;
- ``verify_s_all``: the median over every program's pairs, and ``verify_s_max`` the slowest warm one;
- ``stage_s`` per stage (imports, smoke, properties) over every pair, warm against cold: where the
  time goes;
- with ``--evict``: ``cold_evicted_s`` and ``first_check_evicted_s``, the same after the interpreter's
  and its packages' files were dropped from the page cache (``posix_fadvise(DONTNEED)``; pages that
  another process has mapped stay), i.e. a cold page cache as after a reboot.

Nothing is asserted. Usage: python bench/bench_verify.py [--pairs 3] [--evict]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import sysconfig
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = {
    "cnn_mnist": "a 3-layer CNN for MNIST",
    "lstm_sentiment": "LSTM sentiment classifier for movie reviews",
    "transformer_text": "a small transformer encoder for text classification",
    "mlp_regression_csv": "regression MLP on a CSV with 12 numeric features",
    "resnet_cifar": "ResNet-18 classifier for CIFAR-10",
}
STAGES = ("imports", "smoke", "properties")


def emit(metric: str, value: float, unit: str, baseline: Optional[float] = None, **extra: Any) -> None:
    line: dict[str, Any] = {"bench": "verify", "metric": metric, "value": round(value, 3), "unit": unit}
    if baseline is not None:
        line["baseline"] = round(baseline, 3)
        line["ratio"] = round(value / baseline, 3) if baseline else None
    line.update(extra)
    print(json.dumps(line), flush=True)


def programs() -> dict[str, tuple[str, Any]]:
    from deepdive.codegen.builtin import generate
    from deepdive.codegen.parse import parse_intent

    out = {}
    for name, prompt in PROMPTS.items():
        intent = parse_intent(prompt)
        out[name] = (generate(intent).code, intent)
    return out


def verify_once(code: str, intent: Any, arm: str) -> dict[str, float]:
    """One verification on ``arm``; seconds in all and per check. A failing verification is reported
    (its time would not be comparable) and ends the benchmark."""
    from deepdive.codegen.verify import verify

    if arm == "cold":
        os.environ["DEEPDIVE_SANDBOX_WARM"] = "0"
    else:
        os.environ.pop("DEEPDIVE_SANDBOX_WARM", None)
    result = verify(code, intent, timeout_s=300)
    if not result.ok:
        raise SystemExit(f"bench_verify: verification failed ({arm}): {result.message}")
    smoke = next(c for c in result.checks if c.name == "smoke")
    expected = "warm template" if arm == "warm" else "cold start"
    if f": {expected}" not in smoke.detail:
        raise SystemExit(f"bench_verify: the {arm} arm's smoke run did not start as {expected!r}: {smoke.detail}")
    times = {c.name: c.seconds for c in result.checks}
    times["total"] = result.seconds
    return times


def evict_page_cache() -> int:
    """Drop the interpreter's and its packages' files from the page cache; returns the files advised."""
    roots = sorted({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})
    count = 0
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                try:
                    fd = os.open(os.path.join(folder, name), os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    count += 1
                except OSError:
                    pass
                finally:
                    os.close(fd)
    return count


def first_check(code: str, intent: Any, *, evict: bool) -> tuple[float, float, float]:
    """(warm first verification with the template's start, the template's import seconds, a cold
    verification of the same program), each after an eviction when ``evict``."""
    from deepdive.codegen import warm

    warm.POOL.retire_all()
    if evict:
        evict_page_cache()
    first = verify_once(code, intent, "warm")["total"]
    imported = max((t.ready or {}).get("import_s", 0.0) for t in warm.POOL.templates)
    warm.POOL.retire_all()
    if evict:
        evict_page_cache()
    cold = verify_once(code, intent, "cold")["total"]
    return first, imported, cold


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="cold/warm pairs per program")
    parser.add_argument("--evict", action="store_true", help="also measure with a cold page cache")
    args = parser.parse_args()

    progs = programs()
    name0 = next(iter(progs))
    first, imported, cold = first_check(*progs[name0], evict=False)
    emit("first_check_s", first, "s", baseline=cold, program=name0)
    emit("template_import_s", imported, "s", program=name0)
    if args.evict:
        first_e, imported_e, cold_e = first_check(*progs[name0], evict=True)
        emit("cold_evicted_s", cold_e, "s", program=name0)
        emit("first_check_evicted_s", first_e, "s", baseline=cold_e, program=name0, template_import_s=imported_e)

    verify_once(*progs[name0], "warm")  # the template started and ready before the pairs
    every: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for name, (code, intent) in progs.items():
        runs: dict[str, list[float]] = {"cold": [], "warm": []}
        for pair in range(args.pairs):
            for arm in (("cold", "warm") if pair % 2 == 0 else ("warm", "cold")):
                times = verify_once(code, intent, arm)
                runs[arm].append(times["total"])
                every[arm].append(times)
        emit("verify_s", statistics.median(runs["warm"]), "s", baseline=statistics.median(runs["cold"]),
             program=name, pairs=args.pairs)
    warm_all = [t["total"] for t in every["warm"]]
    cold_all = [t["total"] for t in every["cold"]]
    emit("verify_s_all", statistics.median(warm_all), "s", baseline=statistics.median(cold_all),
         programs=len(progs), runs=len(warm_all))
    emit("verify_s_max", max(warm_all), "s", baseline=max(cold_all), programs=len(progs))
    for stage in STAGES:
        emit("stage_s", statistics.median(t.get(stage, 0.0) for t in every["warm"]), "s",
             baseline=statistics.median(t.get(stage, 0.0) for t in every["cold"]), stage=stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
