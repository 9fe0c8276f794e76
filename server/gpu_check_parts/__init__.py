"""The checks of ``make gpu-check`` (:mod:`deepdive.gpu_check` runs each in its own process).

One function per part, taking a :class:`Context` and returning the part's facts (a JSON-ready dict).
A part fails by raising :class:`CheckFailed` (what did not hold, in a line) or any other exception
(recorded with where it was raised; the traceback goes to the part's log); it is skipped by raising
:class:`Skip`, or when a third-party module it imports is missing (the pip line that installs it).
Figures go through :meth:`Context.measure` as bench-style lines.

Every part calls Deepdive's own code the way a user's script or command reaches it (``dd.setup`` and
the ``run`` verbs, ``GradCompression`` on a DDP module, ``wrap_fsdp``, ``quantize``, the sandbox and
``generate``, ``run_study``, the NVML sampler), on ``ctx.device``: ``cuda`` on a GPU machine, ``cpu``
for the rehearsal of the parts that can run without one.

One module per group of parts: :mod:`.machine` (environment, nvml), :mod:`.amp` (amp_bf16, amp_fp16),
:mod:`.distributed` (nccl_ddp, fsdp2_transformer), :mod:`.quantization` (torchao_int8, torchao_int4),
:mod:`.sandbox` (codegen_gpu), :mod:`.tuning` (tune_pack), :mod:`.benchmarks` (bench_amp); what they
run with in :mod:`.context`, what they share in :mod:`.common`. This module keeps :data:`CHECKS` and
:func:`run`, and the names the runner and the tests import from it.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

from deepdive.gpu_check_parts.amp import amp_bf16, amp_fp16
from deepdive.gpu_check_parts.benchmarks import bench_amp
from deepdive.gpu_check_parts.context import CheckFailed, Context, Outcome, Skip
from deepdive.gpu_check_parts.deploy import deploy_gpu
from deepdive.gpu_check_parts.distributed import COMPRESSION_MODES, fsdp2_transformer, nccl_ddp
from deepdive.gpu_check_parts.machine import OPTIONAL, environment, nvml
from deepdive.gpu_check_parts.quantization import torchao_int4, torchao_int8
from deepdive.gpu_check_parts.sandbox import CODEGEN_PROMPT, codegen_gpu
from deepdive.gpu_check_parts.tuning import _concurrency, tune_pack

__all__ = ["CHECKS", "CODEGEN_PROMPT", "COMPRESSION_MODES", "OPTIONAL", "CheckFailed", "Context", "Outcome", "Skip",
           "_concurrency", "amp_bf16", "amp_fp16", "bench_amp", "codegen_gpu", "deploy_gpu", "environment", "fsdp2_transformer",
           "nccl_ddp", "nvml", "run", "torchao_int4", "torchao_int8", "tune_pack"]

CHECKS: dict[str, Callable[[Context], Any]] = {
    "environment": environment, "nvml": nvml, "amp_bf16": amp_bf16, "amp_fp16": amp_fp16, "nccl_ddp": nccl_ddp,
    "fsdp2_transformer": fsdp2_transformer, "torchao_int8": torchao_int8, "torchao_int4": torchao_int4,
    "codegen_gpu": codegen_gpu, "tune_pack": tune_pack, "bench_amp": bench_amp, "deploy_gpu": deploy_gpu,
}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def run(ctx: Context) -> Outcome:
    """Run the part ``ctx.part``; never raises."""
    try:
        return Outcome(True, False, CHECKS[ctx.part](ctx))
    except Skip as exc:
        return Outcome(False, True, str(exc))
    except CheckFailed as exc:
        return Outcome(False, False, {"error": str(exc), **exc.detail})
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "deepdive":
            from deepdive.extras import describe_missing

            return Outcome(False, True, describe_missing(exc))
        traceback.print_exc()
        return Outcome(False, False, {"error": _one_line(exc), "where": _where(exc)})
    except Exception as exc:  # noqa: BLE001 - a part's failure is recorded, never raised: the next part runs
        traceback.print_exc()
        return Outcome(False, False, {"error": _one_line(exc), "where": _where(exc)})

