"""The figures half of :class:`deepdive.engine.run.Run`: per-step samples, events, the summary, ``auto`` compression.

:class:`RunTelemetry` is a base class of ``Run`` and holds no state of its own: its methods use the
attributes ``Run.__init__`` sets (``reporter``, ``scaler``, ``_step_times``, ``_comm_history``, ...).
What a sample and the summary hold is the contract with the dashboard and the metrics file
(:mod:`deepdive.engine.reporter`), and ``grad_compression="auto"`` decides from these same figures.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from deepdive.engine import distributed as ddist
from deepdive.engine.compression import decide_auto
from deepdive.engine.precision import Promotion


class RunTelemetry:
    """What ``Run`` measures and reports; see the module docstring."""

    def event(self, kind: str, **fields: Any) -> None:
        """A rare, important message (on rank 0) for the dashboard and the metrics file."""
        if self.reporter.enabled and self.is_main:
            self.reporter.event(kind, **fields)

    def _on_promote(self, promotion: Promotion) -> None:
        self.event("promotion", module=promotion.module, module_type=promotion.module_type, step=promotion.step,
                   message=f"{promotion.module} ({promotion.module_type}) overflowed in {self.plan.mode}: "
                           "it runs in fp32 from now on")

    def _end_step(self) -> None:
        if self._step_start is None:
            return
        sampled = self.reporter.enabled and self.batch_index % self.log_every == 0
        if sampled and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        step_time = time.perf_counter() - self._step_start
        self._step_times.append(step_time)
        self._throughput.add(self._batch_size, self._data_wait + step_time)
        if self.hparams.binding is not None:
            self.hparams.binding.step_seconds += step_time
        if sampled:
            self.reporter.record(self._sample(step_time))
        self._metrics = {}

    def _sample(self, step_time: float) -> dict[str, Any]:
        sample: dict[str, Any] = {
            "step": self.batch_index, "epoch": self.epoch, "total_steps": self.total_steps,
            "step_time_s": step_time, "data_wait_s": self._data_wait,
            **self._throughput.figures(),  # samples/s over the last 10 s, all ranks, loader wait included
            "lr": self._lr, "loss_scale": self.scaler.scale,
            "skipped_steps": self.scaler.skipped_steps, "precision": self.plan.mode,
        }
        if self._loss is not None and "loss" not in self._metrics:
            sample["loss"] = float(self._loss)
        for key, value in self._metrics.items():
            sample[key] = float(value.detach()) if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        sample.update(self._comm)
        sample.update(_memory(self.device))
        return sample

    def _decide_compression(self) -> None:
        """Decide from the measured steps (the same decision on every rank: figures are averaged)."""
        assert self.compression is not None
        measured = self._comm_history[1:] or self._comm_history  # the first step builds buckets
        times = self._step_times[1:] or self._step_times
        local = {
            "step_time_s": statistics.fmean(times),
            "comm_time_s": statistics.fmean(c["comm_time_s"] for c in measured),
            "comm_exposed_s": statistics.fmean(c["comm_exposed_s"] for c in measured),
            "comm_bytes_uncompressed": statistics.fmean(c["comm_bytes_uncompressed"] for c in measured),
        }
        evidence: dict[str, Any] = ddist.all_mean(local, self.dist)
        evidence.update(backend=self.dist.backend, world_size=self.world_size, link=self.topology.get("link"))
        mode, reason = decide_auto(evidence)
        self._evidence = evidence
        if mode != self.compression.mode:
            self.compression.set_mode(mode, **self._options["compression_options"])
            # on trial: kept only if the compressed steps are measurably shorter
            self._trial_from = len(self._step_times)
        self.compression_reason = reason
        self.event("compression", mode=mode, reason=reason, evidence=evidence, step=self.step_count,
                   trial=mode != "none")

    def _judge_trial(self) -> None:
        """After the trial steps with compression on: keep it only if it shortened the step."""
        assert self.compression is not None and self._trial_from is not None
        trial = [t for t, c in zip(self._step_times[self._trial_from:], self._comm_history[self._trial_from:])
                 if not c.get("comm_warmup")]
        if len(trial) < max(3, self._options["auto_steps"] // 2):
            return
        figures = ddist.all_mean({"step_time_s": statistics.fmean(trial)}, self.dist)
        mode, reason = decide_auto(self._evidence, trial=figures)
        self._trial_from = None
        if mode != self.compression.mode:
            self.compression.set_mode(mode, **self._options["compression_options"])
        self.compression_reason = reason
        self.event("compression", mode=mode, reason=reason, evidence={**self._evidence, "trial": figures},
                   step=self.step_count, trial=False)

    def summary(self) -> dict[str, Any]:
        """The run's figures so far."""
        times = self._step_times[2:] or self._step_times
        comm = self._comm_history[2:] or self._comm_history
        mean_step = statistics.fmean(times) if times else None
        out: dict[str, Any] = {
            "run": self.run_id, "steps": self.step_count, "epochs": self.epoch + 1 if self.step_count else 0,
            "world_size": self.world_size, "backend": self.dist.backend, "device": str(self.device),
            "topology": self.topology.get("summary"), "strategy": self.strategy,
            "precision": self.plan.mode, "precision_reason": self.plan.reason,
            "mean_step_time_s": mean_step,
            **self._throughput.figures(),  # the same figure as the last sample's
            "final_loss": float(self._loss) if self._loss is not None else None,
            "skipped_steps": self.scaler.skipped_steps, "loss_scale": self.scaler.scale,
            "scale_changes": self.scaler.scale_changes,
            "promoted_to_fp32": [p.module for p in self.guard.promotions] if self.guard else [],
            "kept_fp32": self.kept_fp32,
            "compression": self.compression.mode if self.compression else "none",
            "compression_reason": self.compression_reason,
        }
        if comm:
            for key in ("comm_bytes_uncompressed", "comm_bytes_sent", "comm_time_s", "comm_overlap"):
                out[f"{key}_per_step"] = statistics.fmean(c[key] for c in comm)
        out.update(_memory(self.device))
        return out


def _memory(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        stats = torch.cuda.memory_stats(device)
        return {
            "mem_allocated_mib": stats.get("allocated_bytes.all.current", 0) / 2**20,
            "mem_reserved_mib": stats.get("reserved_bytes.all.current", 0) / 2**20,
            "mem_peak_mib": stats.get("allocated_bytes.all.peak", 0) / 2**20,
            # the caching allocator freed its cache and retried a cudaMalloc: memory pressure
            "alloc_retries": stats.get("num_alloc_retries", 0),
        }
    import psutil

    return {"mem_rss_mib": psutil.Process().memory_info().rss / 2**20}
