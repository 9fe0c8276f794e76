"""The lists both sides show: every choice a user picks from, defined once.

The engine (which imports torch and nothing of the daemon), the daemon's job kinds, the command
line's ``choices`` and the extension (through ``Vocabularies`` in the generated
``extension/src/protocol.ts``) all read these tuples. This module imports nothing, so the engine,
the daemon and a job's own process can each import it at no cost.

Adding a choice (a quantization mode, a sampler): add it here and implement it where the tuple is
used; the command line, the job kind's check and the editor's list follow.
"""

from __future__ import annotations

TRAIN_PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
"""Mixed precision of a training run (``dd.setup(precision=...)``, ``deepdive train --precision``)."""

GRAD_COMPRESSIONS: tuple[str, ...] = ("auto", "none", "fp16", "bf16", "powersgd", "topk")
"""DDP gradient compression (``dd.setup(grad_compression=...)``, ``deepdive train --grad-compression``)."""

QUANTIZE_MODES: tuple[str, ...] = ("int8", "int8-dynamic", "int8-static", "int8-weight", "int4-weight")
"""Quantization modes of ``deepdive compress --quantize`` (``none`` is leaving the option out)."""

COMPRESS_TARGETS: tuple[str, ...] = ("x86", "arm")
"""The CPU a compressed model will run on (its int8 kernels)."""

PRUNE_IMPORTANCES: tuple[str, ...] = ("l1", "l2", "taylor", "bn")
"""Structured pruning's criterion for which channels, neurons and heads go."""

TUNE_SAMPLERS: tuple[str, ...] = ("tpe", "gp", "cmaes", "random")
"""Optuna samplers ``deepdive tune --sampler`` offers (the first is the default: a fixed choice, named as such)."""

TUNE_PRUNERS: tuple[str, ...] = ("asha", "hyperband-quarter", "hyperband", "median", "none")
"""Optuna pruners ``deepdive tune --pruner`` offers (the first is the default: successive halving, one
bracket, a fixed choice measured by ``bench/bench_tune_quality.py``; ``hyperband`` is Optuna's own
schedule, ``hyperband-quarter`` Hyperband whose first rung waits for a quarter of a trial's reports)."""

TUNE_DIRECTIONS: tuple[str, ...] = ("minimize", "maximize")
"""Whether a study's metric should go down or up."""

TUNE_VALUES: tuple[str, ...] = ("last", "best")
"""A trial's value: its last report of the metric, or its best one."""

TUNE_TRIAL_STATES: tuple[str, ...] = ("waiting", "running", "pruned", "complete", "fail")
"""A trial's state as the Tune view shows it: Optuna's, plus waiting for a free worker."""

COMPRESS_STEPS: tuple[str, ...] = ("original", "prune", "layers", "distill", "quantize")
"""The rows of a compression report, in the order the pipeline runs them (the original model first)."""

CODEGEN_BACKENDS: tuple[str, ...] = ("auto", "builtin", "transformers", "llamacpp", "openai-compatible")
"""Where generated code comes from (``deepdive generate --backend``, the ``deepdive.codegen.backend`` setting)."""

FRAMEWORKS: tuple[str, ...] = ("torch", "tensorflow")
"""The framework a generated program uses."""

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
"""Where a run or a measurement runs (``auto``: CUDA when there is a GPU)."""

VOCABULARIES: dict[str, tuple[str, ...]] = {
    "trainPrecisions": TRAIN_PRECISIONS,
    "gradCompressions": GRAD_COMPRESSIONS,
    "quantizeModes": QUANTIZE_MODES,
    "compressTargets": COMPRESS_TARGETS,
    "pruneImportances": PRUNE_IMPORTANCES,
    "tuneSamplers": TUNE_SAMPLERS,
    "tunePruners": TUNE_PRUNERS,
    "tuneDirections": TUNE_DIRECTIONS,
    "tuneValues": TUNE_VALUES,
    "tuneTrialStates": TUNE_TRIAL_STATES,
    "compressSteps": COMPRESS_STEPS,
    "codegenBackends": CODEGEN_BACKENDS,
    "frameworks": FRAMEWORKS,
    "devices": DEVICES,
}
"""Every list by the name the extension knows it by (``Vocabularies.<name>`` in protocol.ts)."""
