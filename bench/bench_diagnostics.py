"""Performance diagnostics on the corpus: how right the static rules are, how fast, and what their fixes gain.

The corpus is tests/diagnostics/corpus/ (its README says what is where): slow scripts with one planted
problem each, its line marked ``# planted: DDnnn``, and clean, idiomatic scripts.

Static part (no torch; what the daemon runs on every save):

- ``precision``: planted problems found at their line, over every finding in the corpus (slow and clean
  scripts); a finding is a true positive only with the planted code on the planted line. ``false_positives``
  lists the others (``slow/x.py:12 DD110``).
- ``recall``: planted problems found at their line, over all planted; ``rule_recall`` once per rule whose
  recall is below 1, with the scripts it missed.
- ``clean_findings``: findings on the clean scripts (the goal is zero).
- ``analyze_ms_per_file``: the median time of one ``deepdive.diagnose.rules.analyze`` call (parse and every
  rule) over the corpus files, each analysed ``--reps`` times; ``p95`` with it.
- ``analyze_ms_2000_lines``: the p95 (and median) of ``analyze`` on one file of at least 2,000 lines, built by
  concatenating whole corpus scripts (slow ones, then clean ones, in name order, cycling) until the text has
  2,000 lines; it is a valid module (later definitions rebind earlier ones). Timed ``--big-reps`` times.

Measured part (``--no-fixes`` skips it): for each slow script whose planted rule has a mechanical fix and is not
CUDA-only, *Apply and measure* on this machine's CPU through ``deepdive.diagnose.compare.measure_fix``: the
script and its fixed copy timed in alternating pairs. One line per fix: ``value`` the fixed script's median
ms/step, ``baseline`` the script's as it is, ``ratio`` the median paired speed-up (>1: faster) with ``ci_low``
and ``ci_high``. ``--only DD110,DD101`` restricts it to those rules. Scripts the corpus marks ``needs-cuda`` or
``not-runnable`` are listed as skipped, saying why; so is a measurement that fails (its error in one line).

Nothing is asserted. Usage: python bench/bench_diagnostics.py [--no-fixes] [--only DD101,DD176] [--pairs 6]
[--steps 10] [--warmup 3] [--reps 20] [--big-reps 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.diagnostics.corpus.planted import Script, scripts  # noqa: E402  (the corpus' own reader)

from deepdive.diagnose.rules import RULES, analyze  # noqa: E402

BIG_LINES = 2000


def emit(metric: str, value: Any, unit: str, **extra: Any) -> None:
    print(json.dumps({"bench": "diagnostics", "metric": metric, "value": value, "unit": unit, **extra}), flush=True)


def skip(metric: str, reason: str, **extra: Any) -> None:
    print(json.dumps({"bench": "diagnostics", "metric": metric, **extra, "skipped": reason}), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --------------------------------------------------------------------------------------------
# Static: precision, recall, findings on clean scripts
# --------------------------------------------------------------------------------------------


def accuracy(corpus: list[Script]) -> None:
    true_pos: list[tuple[str, int, str]] = []
    false_pos: list[tuple[str, int, str]] = []
    planted_by_rule: dict[str, list[str]] = defaultdict(list)
    missed_by_rule: dict[str, list[str]] = defaultdict(list)
    clean_findings = 0
    for script in corpus:
        got = {(f.line, f.code) for f in analyze(script.source, str(script.path))}
        for line, code in sorted(script.planted):
            planted_by_rule[code].append(script.name)
            if (line, code) in got:
                true_pos.append((script.name, line, code))
            else:
                missed_by_rule[code].append(script.name)
        extra = got - script.planted
        false_pos.extend((script.name, line, code) for line, code in sorted(extra))
        if script.kind == "clean":
            clean_findings += len(got)
    planted = sum(len(v) for v in planted_by_rule.values())
    found = len(true_pos) + len(false_pos)
    emit("precision", round(len(true_pos) / found, 4) if found else None, "ratio", true_positives=len(true_pos),
         findings=found, false_positives=[f"{name}:{line} {code}" for name, line, code in false_pos])
    emit("recall", round(len(true_pos) / planted, 4) if planted else None, "ratio", found=len(true_pos),
         planted=planted, rules=len(RULES), rules_planted=len(planted_by_rule))
    for code in sorted(planted_by_rule):
        total, missed = len(planted_by_rule[code]), missed_by_rule.get(code, [])
        if missed:
            emit("rule_recall", round((total - len(missed)) / total, 4), "ratio", rule=code, missed=missed)
    unplanted = sorted(set(RULES) - set(planted_by_rule))
    if unplanted:
        skip("rule_recall", "no slow script plants these rules", rules=unplanted)
    emit("clean_findings", clean_findings, "findings", clean_scripts=sum(s.kind == "clean" for s in corpus))


# --------------------------------------------------------------------------------------------
# Static: time per file, and a 2,000-line file
# --------------------------------------------------------------------------------------------


def timed_analyze(source: str, path: str) -> float:
    start = time.perf_counter()
    analyze(source, path)
    return (time.perf_counter() - start) * 1e3


def big_source(corpus: list[Script]) -> tuple[str, int]:
    """Whole corpus scripts concatenated, cycling, until at least BIG_LINES lines; and how many scripts it took."""
    parts: list[str] = []
    lines, used = 0, 0
    while lines < BIG_LINES:
        text = corpus[used % len(corpus)].source
        text = text if text.endswith("\n") else text + "\n"
        parts.append(text)
        lines += text.count("\n")
        used += 1
    return "".join(parts), used


def speed(corpus: list[Script], reps: int, big_reps: int) -> None:
    per_file: list[float] = []
    for script in corpus:
        source, path = script.source, str(script.path)
        analyze(source, path)  # first call: imports and caches warm
        per_file.extend(timed_analyze(source, path) for _ in range(reps))
    emit("analyze_ms_per_file", round(statistics.median(per_file), 3), "ms", p95=round(percentile(per_file, 95), 3),
         files=len(corpus), reps=reps,
         mean_lines=round(statistics.mean(s.source.count("\n") for s in corpus), 1))
    source, used = big_source(corpus)
    analyze(source, "big.py")
    times = [timed_analyze(source, "big.py") for _ in range(big_reps)]
    emit("analyze_ms_2000_lines", round(percentile(times, 95), 3), "ms", median=round(statistics.median(times), 3),
         lines=source.count("\n"), scripts_concatenated=used, findings=len(analyze(source, "big.py")),
         reps=big_reps, note="p95 of analyze() on corpus scripts concatenated whole to >= 2,000 lines")


# --------------------------------------------------------------------------------------------
# Measured: the speed-up of each fix on this CPU
# --------------------------------------------------------------------------------------------


def fixes(corpus: list[Script], only: Optional[set[str]], pairs: int, steps: int, warmup: int) -> None:
    targets = [(s, line, code) for s in corpus if s.kind == "slow" for line, code in sorted(s.planted)
               if code in RULES and RULES[code].fixable and not RULES[code].cuda_only
               and (only is None or code in only)]
    if not targets:
        skip("fix_speedup", "no planted fixable, non-CUDA rule matches" + (f" --only {','.join(sorted(only))}"
                                                                             if only else ""))
        return
    try:
        from deepdive.diagnose.compare import measure_fix
    except ImportError as exc:
        skip("fix_speedup", f"deepdive.diagnose.compare.measure_fix is not available: {exc}")
        return
    for script, line, code in targets:
        where = {"script": script.name, "code": code, "line": line}
        if script.needs_cuda:
            skip("fix_speedup", "the script needs CUDA", **where)
            continue
        if script.not_runnable is not None:
            skip("fix_speedup", f"the script is not runnable: {script.not_runnable}", **where)
            continue
        try:
            result = measure_fix(script.path, code, line, pairs=pairs, steps=steps, warmup=warmup)
        except Exception as exc:  # one failed measurement does not end the benchmark: it is reported
            reason = " ".join(str(exc).split()) or type(exc).__name__
            skip("fix_speedup", f"{type(exc).__name__}: {reason}"[:300], **where)
            continue
        emit("fix_speedup", round(result.fixed_ms, 3), "ms/step", baseline=round(result.baseline_ms, 3),
             ratio=round(result.speedup, 4), ci_low=round(result.ci_low, 4), ci_high=round(result.ci_high, 4),
             confidence=result.confidence, verdict=result.verdict, fix=result.title, pairs=result.pairs,
             steps=result.steps, wall_s=round(result.wall_s, 1), device="cpu",
             omp_threads=os.environ.get("OMP_NUM_THREADS", "default"), **where)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-fixes", action="store_true", help="skip the measured speed-ups of the fixes")
    parser.add_argument("--only", default="", help="measure only the fixes of these rules: DD101,DD176")
    parser.add_argument("--pairs", type=int, default=6, help="alternating runs per arm for each fix")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per run")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before timing")
    parser.add_argument("--reps", type=int, default=20, help="analyze() calls per corpus file")
    parser.add_argument("--big-reps", type=int, default=50, help="analyze() calls on the 2,000-line file")
    args = parser.parse_args(argv)
    only = {code.strip().upper() for code in args.only.split(",") if code.strip()} or None
    if only is not None and only - set(RULES):
        parser.error(f"--only names unknown rule codes {', '.join(sorted(only - set(RULES)))}: "
                     f"use codes such as {', '.join(sorted(RULES)[:3])}")
    for name, value in (("--pairs", args.pairs), ("--steps", args.steps), ("--reps", args.reps),
                        ("--big-reps", args.big_reps)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    corpus = scripts()
    accuracy(corpus)
    speed(corpus, args.reps, args.big_reps)
    if not args.no_fixes:
        fixes(corpus, only, args.pairs, args.steps, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
