"""``make gpu-check``: every GPU code path of Deepdive, run once on this machine, each part named, timed and limited.

Usage::

    python -m deepdive.gpu_check [--out DIR] [--only PART,PART] [--budget 450] [--limit-s N] [--cpu] [--list]

The parts (:data:`PARTS`, in this order; ``--list`` prints them): the environment, NVML sampling of
every field (recorded as a fixture the CPU tests replay), CUDA AMP in bf16 and in fp16 with the loss
scaler through the engine, DDP over NCCL with each gradient compression hook, FSDP2 on a transformer,
torchao weight-only int8 and int4, generated code with the GPU allowed in the sandbox, ``deepdive tune
--pack`` and ``bench/bench_amp.py`` on a transformer block. The checks themselves are in
:mod:`deepdive.gpu_check_parts`.

Each part runs in its own process (under ``torchrun`` for the distributed ones: one process per GPU,
at most two), so a hang, a crash or a poisoned CUDA context ends that part only: it is stopped at its
own time limit, or when the whole run's budget (default 450 s, inside the 8 minutes a lent GPU
machine gives) is spent, recorded as failed with the end of its output, and the next part starts.

Output, in one folder (``--out``; else ``$OUT`` when set, else ``gpu-check/<UTC time>/``):

- ``results.jsonl``: one JSON object per line, also printed as it comes:
  ``{"check": PART, "ok": bool, "skipped": bool, "device": "cuda"|"cpu", "seconds": float, "detail": ...}``
  per part (``reason`` too when skipped), bench-style lines for figures
  (``{"bench", "check", "metric", "value", "unit"}``, with ``baseline`` and ``ratio`` where two arms are
  compared), and a last ``{"check": "summary", ...}`` line;
- ``gpu-check.log``: every part's own output, for the failures' details;
- ``nvml-<gpu>.json``: the NVML readings, in the format ``tests/fixtures/nvml/`` holds.

Without CUDA (or with ``--cpu``) the parts that can run on a CPU rehearse there (``device: "cpu"``) and
every part is also recorded for ``device: "cuda"`` as skipped, with the reason: never as passed.
The exit status is 0 when no part failed (skipped parts are listed in the summary), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import attrs

DEFAULT_BUDGET_S = 450.0
"""The whole run's time: inside the 8 minutes of a lent GPU machine, with room to start and copy back."""
MIN_PART_S = 10.0
"""A part gets at least this long, or is skipped because the budget is spent."""
LOG_TAIL_LINES = 8
#: Launcher settings that would change what a part checks (a hub, a forced precision): not passed on.
_DROPPED_ENV = ("DEEPDIVE_HUB", "DEEPDIVE_METRICS_OUT", "DEEPDIVE_PRECISION", "DEEPDIVE_GRAD_COMPRESSION",
                "DEEPDIVE_CHECKPOINT_DIR", "DEEPDIVE_EVENTS_FD")


@attrs.define(frozen=True)
class Part:
    """One GPU code path.

    Attributes:
        name (str): its name in the results (``check``).
        about (str): what it proves, in a line.
        limit_s (float): its own time limit on one GPU (the budget may leave it less).
        cpu (bool): it also runs on a CPU (a rehearsal of the same code, ``device: "cpu"``).
        ranks (int): 0: one process; N: under torchrun, one process per GPU up to N (N on a CPU).
        gate (str): what it needs besides the part's own imports: ``cuda`` or ``nvml``.
    """

    name: str
    about: str
    limit_s: float
    cpu: bool = False
    ranks: int = 0
    gate: str = "cuda"


PARTS: tuple[Part, ...] = (
    Part("environment", "torch, CUDA, the GPUs and the optional packages the parts need", 60, cpu=True),
    Part("nvml", "NVML readings of every field the telemetry samples, recorded as a replayable fixture", 60,
         gate="nvml"),
    Part("amp_bf16", "the engine's bf16 autocast: a transformer trains, Linear in bf16, norms and weights fp32", 90,
         cpu=True),
    Part("amp_fp16", "fp16 autocast with the loss scaler: trains, an injected overflow is skipped, a plain "
                     "loss.backward() is refused", 90, cpu=True),
    Part("nccl_ddp", "DDP over NCCL with each gradient compression hook (none, fp16, bf16, powersgd, topk)", 150,
         cpu=True, ranks=2),
    Part("fsdp2_transformer", "FSDP2 on a transformer whose blocks sit in an nn.ModuleList; losses match one "
                              "unsharded copy", 120, cpu=True, ranks=2),
    Part("torchao_int8", "torchao weight-only int8 through deepdive's quantize(): error, size, eager latency", 90),
    Part("torchao_int4", "torchao weight-only int4 (tinygemm, bf16) through deepdive's quantize()", 90),
    Part("codegen_gpu", "the code-generation sandbox with the GPU allowed (and hidden when not): a probe, then "
                        "a builtin program verified", 120, cpu=True),
    Part("tune_pack", "deepdive tune --pack: several trials share one GPU, packed by measured peak memory "
                      "(on a CPU, where --pack changes nothing, three workers in parallel)", 180, cpu=True),
    Part("bench_amp", "bench/bench_amp.py on a transformer block: fp32 against bf16 and fp16", 120, cpu=True),
    Part("deploy_gpu", "deepdive deploy on the GPU: deploy bench's CUDA candidates (eager fp32/fp16/bf16, ONNX Runtime's "
                       "providers) and a model split across the GPU and the CPU, checked against the unsplit model", 120),
)
PART_NAMES = tuple(p.name for p in PARTS)


def no_cuda_reason() -> Optional[str]:
    """Why torch cannot use a CUDA GPU here, in one line (None when it can). Initialises no CUDA context."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install 'deepdive[engine]')"
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build: install the CUDA build for your driver"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device{where}"


def no_nvml_reason() -> Optional[str]:
    """Why NVML cannot be read here (None when it can), as the telemetry sampler says it."""
    from deepdive.telemetry.samplers import NO_DEVICE_REASON, nvml_init

    nvml, reason = nvml_init()
    if nvml is None:
        return reason
    try:
        count = nvml.nvmlDeviceGetCount()
    except nvml.NVMLError as exc:
        return f"NVML could not count the GPUs: {exc}"
    finally:
        nvml.nvmlShutdown()
    return None if count else NO_DEVICE_REASON


# ---------------------------------------------------------------------------------------------
# The run: every part in its own process
# ---------------------------------------------------------------------------------------------


@attrs.define
class Results:
    """The results file, echoed to stdout, and what the summary needs."""

    path: Path
    passed: list[str] = attrs.Factory(list)
    failed: list[str] = attrs.Factory(list)
    skipped: dict[str, str] = attrs.Factory(dict)

    def write(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, default=str, allow_nan=False)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text + "\n")
        print(text, flush=True)

    def part(self, line: dict[str, Any]) -> None:
        key = f"{line['check']}@{line['device']}"
        if line.get("skipped"):
            self.skipped[key] = line.get("reason", "")
        elif line["ok"]:
            self.passed.append(key)
        else:
            self.failed.append(key)
        self.write(line)


def skipped_line(part: str, device: str, reason: str) -> dict[str, Any]:
    return {"check": part, "ok": False, "skipped": True, "device": device, "seconds": 0.0, "reason": reason,
            "detail": reason}


def output_dir(out: Optional[str]) -> Path:
    """``--out``, else ``$OUT`` (the lent GPU machine brings back what is written there), else ``gpu-check/<time>``."""
    if out:
        path = Path(out)
    elif os.environ.get("OUT"):
        path = Path(os.environ["OUT"])
    else:
        path = Path("gpu-check") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _child_env(part: Part, device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu" and part.ranks:
        env.setdefault("OMP_NUM_THREADS", "1")  # several ranks on one CPU: no oversubscription
    return env


def _world(part: Part, device: str) -> int:
    if device == "cpu":
        return part.ranks
    import torch

    return max(1, min(part.ranks, torch.cuda.device_count()))


def part_command(part: Part, device: str, lines: Path, out: Path, work: Path) -> list[str]:
    """The command that runs ``part`` on ``device`` (under torchrun when it is distributed)."""
    args = ["-m", "deepdive.gpu_check", "--part", part.name, "--device", device, "--lines", str(lines),
            "--out", str(out), "--work", str(work)]
    if not part.ranks:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={_world(part, device)}",
            *args]


def _stop(proc: subprocess.Popen) -> None:
    """End the part's process group: SIGTERM, then SIGKILL after 5 s."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(text: str, n: int = LOG_TAIL_LINES) -> list[str]:
    return [line for line in text.splitlines() if line.strip()][-n:]


def _read_lines(lines: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(lines.parent.glob(lines.name + "*")):
        for text in path.read_text(encoding="utf-8").splitlines():
            if text.strip():
                out.append(json.loads(text))
    return out


def _combine(part: Part, device: str, found: list[dict[str, Any]], status: Optional[int], stopped: Optional[str],
             seconds: float, log: str) -> list[dict[str, Any]]:
    """The part's lines: its figures, then one result line (every rank's result folded into it)."""
    figures = [line for line in found if "metric" in line]
    results = [line for line in found if "metric" not in line and line.get("check") == part.name]
    if stopped is not None or not results:
        why = stopped or (f"its process exited with status {status} before reporting" if status
                          else "it reported no result")
        detail: dict[str, Any] = {"error": why, "output_tail": _tail(log)}
        if results:
            detail["reported"] = results[0].get("detail")
        return figures + [{"check": part.name, "ok": False, "skipped": False, "device": device,
                           "seconds": round(seconds, 2), "detail": detail}]
    first = dict(results[0])
    if len(results) > 1:
        first["ok"] = all(r["ok"] for r in results)
        first["skipped"] = all(r.get("skipped") for r in results)
        errors = {f"rank{r.get('rank', i)}": r["detail"] for i, r in enumerate(results) if not r["ok"]}
        if errors and isinstance(first.get("detail"), dict):
            first["detail"] = {**first["detail"], "ranks_failed": errors}
    if status and first["ok"]:
        first["ok"] = False
        first["detail"] = {"error": f"reported success but exited with status {status}", "reported": first["detail"],
                           "output_tail": _tail(log)}
    first["seconds"] = round(seconds, 2)
    return figures + [first]


def run_part(part: Part, device: str, *, out: Path, scratch: Path, limit_s: float, why_limit: str,
             log_path: Path) -> list[dict[str, Any]]:
    """Run one part in its own process group, stopped after ``limit_s``; its lines (the result line last)."""
    lines = scratch / f"{part.name}-{device}.jsonl"
    work = scratch / f"{part.name}-{device}"
    work.mkdir()
    own_log = scratch / f"{part.name}-{device}.log"
    start = time.monotonic()
    stopped = None
    with own_log.open("wb") as sink:
        proc = subprocess.Popen(part_command(part, device, lines, out, work), stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=_child_env(part, device), start_new_session=True)
        try:
            status: Optional[int] = proc.wait(limit_s)
        except subprocess.TimeoutExpired:
            _stop(proc)
            status = proc.returncode
            stopped = f"timed out: stopped after {limit_s:.0f} s ({why_limit})"
    seconds = time.monotonic() - start
    log = own_log.read_text(encoding="utf-8", errors="replace")
    with log_path.open("a", encoding="utf-8") as f:
        f.write(f"\n===== {part.name} on {device}: {seconds:.1f} s, exit {status} =====\n{log}")
    try:
        found = _read_lines(lines)
    except (OSError, json.JSONDecodeError) as exc:
        found, stopped = [], stopped or f"its results could not be read: {exc}"
    shutil.rmtree(work, ignore_errors=True)
    return _combine(part, device, found, status, stopped, seconds, log)


def _gate_reason(part: Part, cuda_reason: Optional[str]) -> Optional[str]:
    if part.gate == "nvml":
        return no_nvml_reason()
    return cuda_reason


def _plan(selected: list[Part], cuda_reason: Optional[str], forced_cpu: bool) -> list[tuple[Part, str, Optional[str]]]:
    """(part, device, reason it is skipped or None), in order: the GPU run, or the CPU rehearsal and the skip."""
    plan = []
    for part in selected:
        reason = cuda_reason if forced_cpu else _gate_reason(part, cuda_reason)
        if reason is None:
            plan.append((part, "cuda", None))
            continue
        if part.cpu:
            plan.append((part, "cpu", None))
        plan.append((part, "cuda", reason))
    return plan


def run_all(selected: list[Part], *, out: Path, budget_s: float, limit_s: Optional[float], forced_cpu: bool) -> int:
    """Every selected part, in order, within ``budget_s``; returns the exit status."""
    results = Results(out / "results.jsonl")
    results.path.write_text("", encoding="utf-8")
    log_path = out / "gpu-check.log"
    log_path.write_text("", encoding="utf-8")
    start = time.monotonic()
    deadline = start + budget_s
    scratch = Path(tempfile.mkdtemp(prefix="deepdive-gpu-check-"))
    cuda_reason = "--cpu was given" if forced_cpu else no_cuda_reason()
    try:
        for part, device, reason in _plan(selected, cuda_reason, forced_cpu):
            if reason is not None:
                results.part(skipped_line(part.name, device, reason))
                continue
            left = deadline - time.monotonic()
            if left < MIN_PART_S:
                results.part(skipped_line(part.name, device, f"the run's budget of {budget_s:.0f} s is spent"))
                continue
            own = min(part.limit_s, limit_s) if limit_s else part.limit_s
            why = "its limit" if own <= left else f"the run's budget of {budget_s:.0f} s ran out"
            lines = run_part(part, device, out=out, scratch=scratch, limit_s=min(own, left), why_limit=why,
                             log_path=log_path)
            for line in lines[:-1]:
                results.write(line)
            results.part(lines[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    fixtures = sorted(str(p) for p in out.glob("nvml-*.json"))
    ok = not results.failed
    results.write({"check": "summary", "ok": ok, "skipped": False, "device": "cpu" if cuda_reason else "cuda",
                   "seconds": round(time.monotonic() - start, 2),
                   "detail": {"passed": results.passed, "failed": results.failed, "skipped": results.skipped,
                              "out": str(out), "nvml_fixtures": fixtures}})
    print(f"gpu-check: {len(results.passed)} passed, {len(results.failed)} failed, {len(results.skipped)} skipped "
          f"in {time.monotonic() - start:.0f} s; results in {out}", file=sys.stderr)
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# One part, in its own process
# ---------------------------------------------------------------------------------------------


def run_child(name: str, device: str, lines: Path, out: Path, work: Path) -> int:
    """Run one part here and write its lines (each torchrun rank to its own file)."""
    from deepdive import gpu_check_parts as parts

    rank = int(os.environ.get("RANK", "0"))
    ctx = parts.Context(part=name, device=device, out_dir=out, work_dir=work, rank=rank)
    start = time.perf_counter()
    outcome = parts.run(ctx)
    line = {"check": name, "ok": outcome.ok, "skipped": outcome.skipped, "device": device,
            "seconds": round(time.perf_counter() - start, 2), "detail": outcome.detail, "rank": rank}
    if outcome.skipped:
        line["reason"] = outcome.detail
    path = lines if rank == 0 else lines.with_name(f"{lines.name}.rank{rank}")
    with path.open("w", encoding="utf-8") as f:
        for item in [*ctx.lines, line]:
            f.write(json.dumps(item, default=str, allow_nan=False) + "\n")
    return 0


def _parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deepdive.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: $OUT, else gpu-check/<UTC time>/)")
    parser.add_argument("--only", default=None, help=f"comma-separated parts (default all: {', '.join(PART_NAMES)})")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                        help=f"seconds for the whole run (default {DEFAULT_BUDGET_S:.0f})")
    parser.add_argument("--limit-s", type=float, default=None, help="cap every part's own time limit at this")
    parser.add_argument("--cpu", action="store_true", help="rehearse on the CPU even where CUDA is available")
    parser.add_argument("--list", action="store_true", help="print the parts and exit")
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help=argparse.SUPPRESS)
    parser.add_argument("--lines", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _selected(only: Optional[str]) -> list[Part]:
    if not only:
        return list(PARTS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in PART_NAMES]
    if unknown:
        raise ValueError(f"unknown part {unknown[0]!r}: choose from {', '.join(PART_NAMES)}")
    return [p for p in PARTS if p.name in names]


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse(argv)
    if args.part is not None:
        return run_child(args.part, args.device, Path(args.lines), Path(args.out), Path(args.work))
    if args.list:
        for part in PARTS:
            where = "GPU, rehearsed on a CPU" if part.cpu else ("NVML" if part.gate == "nvml" else "GPU only")
            print(f"{part.name:18} {part.limit_s:4.0f} s  {where:24} {part.about}")
        return 0
    try:
        selected = _selected(args.only)
        if args.budget <= 0 or (args.limit_s is not None and args.limit_s <= 0):
            raise ValueError("--budget and --limit-s are seconds: give a positive number")
    except ValueError as exc:
        print(f"gpu-check: {exc}", file=sys.stderr)
        return 2
    return run_all(selected, out=output_dir(args.out), budget_s=args.budget, limit_s=args.limit_s,
                   forced_cpu=args.cpu)


if __name__ == "__main__":
    sys.exit(main())
