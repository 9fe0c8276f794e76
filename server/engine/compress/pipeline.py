"""``deepdive compress``: structured pruning, distillation and quantization in one run, with a report.

The steps run in this order, each on the previous step's model, and each is measured the same way
(:mod:`deepdive.engine.compress.measure`: serialized size, parameters, CPU latency p50/p95 at batch 1
and 32, and the user's own ``evaluate``):

1. ``original``: the model as loaded;
2. ``prune``: channels, neurons and attention heads removed physically (:func:`prune.prune`), in
   ``steps`` steps with fine-tuning between them — by distillation from the original model when
   ``distill`` is on, else by cross-entropy on the labels;
3. ``layers``: depth reduction (:mod:`deepdive.engine.compress.depth`): the student keeps ``layers``
   of the model's repeated blocks (the encoder layers), initialised from the teacher's own, and is
   fine-tuned ``fine_tune_epochs`` — distilled from the model before the cut when ``distill`` is on;
4. ``distill``: the student distilled for ``distill_epochs`` more epochs (KL on softened logits plus
   the hard labels) from the original model, or, after ``layers``, from the model before the cut
   (the pruned one when ``prune`` ran): progressive distillation, original → intermediate → shallow
   student (teacher assistants, Mirzadeh et al., 2020);
5. ``quantize``: int8 (dynamic for Linear/LSTM/GRU and int8 embedding tables; static with
   calibration and conv-bn-relu fusion for CNNs) for the ``target`` CPU. With ``int8`` (automatic)
   on a dynamic model, int8 embeddings with fp32 Linear layers are measured too, and kept when
   faster at batch 1 (small Linear layers run faster in fp32 than quantized per batch; the tables,
   most of a small text model's bytes, are int8 either way) unless they cost more than a quarter
   more bytes.

The last step's model then runs in the fastest measured runtime (:meth:`Pipeline._runtime`): eager,
or TorchScript (``torch.jit.trace`` then ``torch.jit.freeze``) when it gives the eager outputs on
inputs of several lengths and batch sizes and is faster at batch 1.

The evaluation script (the EVAL.py contract) is plain Python the user wrote; it is imported here,
so the pipeline runs only on the user's request (the CLI, or the editor's job in a trusted
workspace). It must define ``evaluate(model) -> float`` (higher is better, e.g. accuracy) and
``example_inputs(batch_size) -> tuple``; ``train_loader()`` (``(inputs, labels)`` batches) when
pruning or distilling; optionally ``calibration_loader()`` for static quantization,
``build_model()`` when MODEL holds a ``state_dict``, and ``student()`` to distil into a model of its
own instead of the pruned one.

The report (JSON and Markdown, written atomically next to the compressed model) has one row per
step with the cumulative figures, and a summary against the original: size ratio, speed-up at
batch 1 and 32, accuracy drop in points.

The modules
-----------
This module holds :class:`Pipeline` (the steps, the runtime choice, the report written to disk) and
re-exports the names callers import from it: :mod:`~deepdive.engine.compress.inputs` holds the
options and the loading of the evaluation script and the model, :mod:`~deepdive.engine.compress.report`
the Markdown report and :func:`load_compressed`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from deepdive.engine.compress.inputs import (CompressConfig, CompressError, Emit, _batches, _check, load_eval,
                                             load_model)
from deepdive.engine.compress.measure import count_params, latency, model_size_bytes, paired_latency
from deepdive.engine.compress.report import load_compressed, markdown
from deepdive.vocabulary import COMPRESS_TARGETS, QUANTIZE_MODES

__all__ = ["COMPRESS_TARGETS", "QUANTIZE_MODES", "CompressConfig", "CompressError", "Emit", "Pipeline", "compress",
           "fine_tune_ce", "load_compressed", "load_eval", "load_model", "markdown"]


def _forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    return model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)


def fine_tune_ce(model: nn.Module, loader: Any, epochs: int, lr: float = 1e-3) -> None:
    """Cross-entropy fine-tuning on the labels (the recovery step when no teacher is used)."""
    if epochs <= 0:
        return
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(epochs):
        for inputs, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(_forward(model, inputs), labels).backward()
            optimizer.step()
    model.eval()


class Pipeline:
    def __init__(self, config: CompressConfig, emit: Optional[Emit] = None):
        self.config = config
        self.emit = emit or (lambda kind, fields: None)
        self.rows: list[dict[str, Any]] = []

    def measure(self, name: str, model: nn.Module, started: float, *, weights: Optional[nn.Module] = None,
                **detail: Any) -> dict[str, Any]:
        """One report row. ``weights``: the module whose parameters and size count, when ``model`` is
        its compiled form (TorchScript hides packed weights from ``state_dict``)."""
        ns = self.namespace
        model.eval()
        weights = weights if weights is not None else model
        self.emit("compress.progress", {"step": name, "phase": "measuring"})
        lat = {}
        for batch in (1, 32):
            inputs = ns["example_inputs"](batch)
            lat[f"b{batch}"] = latency(model, inputs if isinstance(inputs, tuple) else (inputs,),
                                       budget_s=self.config.latency_budget_s)
        with torch.inference_mode():
            accuracy = float(ns["evaluate"](model))
        row = {"step": name, "params": count_params(weights), "size_mb": model_size_bytes(weights) / 1e6,
               "latency_ms": {k: {"p50": v["p50_ms"], "p95": v["p95_ms"], "runs": v["runs"]} for k, v in lat.items()},
               "accuracy": accuracy, "seconds": time.perf_counter() - started, "detail": detail}
        self.rows.append(row)
        self.weights = weights  # the last measured step's module (its parameters, not its compiled form)
        self.emit("compress.step", row)
        return row

    def run(self) -> dict[str, Any]:
        cfg = self.config
        _check(cfg)
        torch.manual_seed(cfg.seed)
        self.namespace = load_eval(cfg.eval_script)
        if cfg.distill and cfg.prune is None and cfg.layers is None and not callable(self.namespace.get("student")):
            raise CompressError("--distill needs a student: give --prune AMOUNT or --layers N (the smaller model is "
                                "the student) or define student() in the evaluation script")
        original = load_model(cfg.model, self.namespace)
        self.original = original  # measured again beside the final model for the summary's speed-ups
        if cfg.layers is not None:  # before any step runs: no repeated blocks, or N out of range
            from deepdive.engine.compress.depth import check_layers

            check_layers(original, cfg.layers)
        started = time.perf_counter()
        self.measure("original", original, started)
        self.last_step = ("quantize" if cfg.quantize else "distill" if cfg.distill else
                          "layers" if cfg.layers is not None else "prune")
        model = original
        teacher = original
        if cfg.prune is not None:
            model = self._prune(model, teacher)
        self.teacher_step = "original"
        if cfg.layers is not None:
            intermediate = model  # the teacher assistant: the pruned model (or the original)
            model = self._layers(model, intermediate, "prune" if cfg.prune is not None else "original")
            teacher = intermediate
            self.teacher_step = "prune" if cfg.prune is not None else "original"
        if cfg.distill:
            model = self._distill(model, teacher)
        if cfg.quantize:
            model = self._quantize(model)
        self.final_weights = self.weights  # the compressed model's own module (the runtime may be TorchScript)
        return self._finish(model)

    def _prune(self, model: nn.Module, teacher: nn.Module) -> nn.Module:
        from deepdive.engine.compress.prune import prune

        cfg = self.config
        started = time.perf_counter()
        loader = _batches(self.namespace, "pruning's fine-tuning") if cfg.fine_tune_epochs > 0 else None
        self.emit("compress.progress", {"step": "prune", "phase": "pruning", "amount": cfg.prune})

        def fine_tune(pruned: nn.Module, step: int) -> None:
            self.emit("compress.progress", {"step": "prune", "phase": f"fine-tuning after step {step + 1}"})
            if loader is None:
                return
            if cfg.distill:
                from deepdive.engine.compress.distill import DistillConfig, distill

                distill(pruned, teacher, loader, DistillConfig(epochs=cfg.fine_tune_epochs,
                                                               temperature=cfg.temperature, device=cfg.device))
            else:
                fine_tune_ce(pruned, loader, cfg.fine_tune_epochs)

        loss_fn = None
        if cfg.importance == "taylor":  # first-order Taylor: |weight x gradient| of the loss on a few batches
            batches = list(itertools.islice(iter(_batches(self.namespace, "Taylor importance")), 4))

            def loss_fn(candidate: nn.Module) -> torch.Tensor:
                return sum(F.cross_entropy(_forward(candidate, x), y) for x, y in batches) / len(batches)

        example = self.namespace["example_inputs"](1)
        result = prune(model, example, cfg.prune, importance=cfg.importance, steps=cfg.steps, fine_tune=fine_tune,
                       loss_fn=loss_fn)
        pruned = result.model.eval()
        notes: list[str] = []
        runtime = self._runtime(pruned, notes) if self.last_step == "prune" else pruned
        self.measure("prune", runtime, started, weights=pruned, amount=cfg.prune, importance=cfg.importance,
                     steps=cfg.steps,
                     fine_tune=("distill" if cfg.distill else "cross-entropy") if loader is not None else "none",
                     fine_tune_epochs=cfg.fine_tune_epochs, params_before=result.params_before,
                     params_after=result.params_after, **self._runtime_detail(runtime, pruned, notes))
        return runtime

    def _layers(self, model: nn.Module, teacher: nn.Module, teacher_step: str) -> nn.Module:
        """Depth reduction, then ``fine_tune_epochs`` of recovery (distilled from ``teacher`` with --distill)."""
        from deepdive.engine.compress.depth import reduce_depth

        cfg = self.config
        started = time.perf_counter()
        self.emit("compress.progress", {"step": "layers", "phase": f"keeping {cfg.layers} blocks"})
        result = reduce_depth(model, cfg.layers, self.namespace["example_inputs"](1))
        shallow = result.model
        with torch.inference_mode():
            cut_accuracy = float(self.namespace["evaluate"](shallow))
        recovery = "none"
        if cfg.fine_tune_epochs > 0:
            loader = _batches(self.namespace, "--layers' fine-tuning")
            self.emit("compress.progress", {"step": "layers", "phase": "fine-tuning the shallow model"})
            if cfg.distill:
                from deepdive.engine.compress.distill import DistillConfig, distill

                distill(shallow, teacher, loader, DistillConfig(epochs=cfg.fine_tune_epochs,
                                                                temperature=cfg.temperature, device=cfg.device))
                recovery = f"distilled from {teacher_step}"
            else:
                fine_tune_ce(shallow, loader, cfg.fine_tune_epochs)
                recovery = "cross-entropy"
        shallow.eval()
        notes: list[str] = []
        runtime = self._runtime(shallow, notes) if self.last_step == "layers" else shallow
        self.measure("layers", runtime, started, weights=shallow, blocks=result.path, block=result.block,
                     layers_before=result.layers_before, layers_after=result.layers_after, kept=result.kept,
                     accuracy_after_cut=cut_accuracy, fine_tune=recovery, fine_tune_epochs=cfg.fine_tune_epochs,
                     params_before=result.params_before, params_after=result.params_after,
                     **self._runtime_detail(runtime, shallow, notes))
        return runtime  # the shallow model itself unless this is the last step

    def _distill(self, model: nn.Module, teacher: nn.Module) -> nn.Module:
        from deepdive.engine.compress.distill import DistillConfig, distill

        cfg = self.config
        started = time.perf_counter()
        student = model
        if cfg.prune is None and cfg.layers is None:
            if not callable(self.namespace.get("student")):
                raise CompressError("--distill needs a student: give --prune AMOUNT or --layers N (the smaller model "
                                    "is the student) or define student() in the evaluation script")
            student = self.namespace["student"]()
        elif student is teacher:
            student = copy.deepcopy(teacher)
        loader = _batches(self.namespace, "distillation")

        def on_epoch(epoch: int, stats: dict) -> None:
            self.emit("compress.progress", {"step": "distill", "phase": f"epoch {epoch}/{cfg.distill_epochs}",
                                            **{k: v for k, v in stats.items() if isinstance(v, (int, float))}})

        result = distill(student, teacher, loader, DistillConfig(epochs=cfg.distill_epochs, temperature=cfg.temperature,
                                                                 device=cfg.device), on_epoch=on_epoch)
        distilled = result.student.eval()
        notes: list[str] = []
        runtime = self._runtime(distilled, notes) if self.last_step == "distill" else distilled
        self.measure("distill", runtime, started, weights=distilled, epochs=cfg.distill_epochs,
                     temperature=cfg.temperature, teacher=self.teacher_step,
                     final_loss=result.history[-1].get("loss") if result.history else None,
                     **self._runtime_detail(runtime, distilled, notes))
        return runtime  # the distilled model itself unless this is the last step

    def _quantize(self, model: nn.Module) -> nn.Module:
        from deepdive.engine.compress.quantize import quantize, quantize_embeddings

        cfg = self.config
        started = time.perf_counter()
        self.emit("compress.progress", {"step": "quantize", "phase": cfg.quantize})
        calibration = None
        if callable(self.namespace.get("calibration_loader")):
            calibration = list(self.namespace["calibration_loader"]())
        elif callable(self.namespace.get("train_loader")):
            calibration = [inputs for inputs, _ in list(self.namespace["train_loader"]())[:8]]
        example = self.namespace["example_inputs"](1)
        example = example if isinstance(example, tuple) else (example,)
        result = quantize(model, cfg.quantize, target=cfg.target, calibration=calibration, example_inputs=example,
                          device=cfg.device)
        notes = list(result.notes)
        quantized, method = result.model, result.method
        runtime = self._runtime(quantized, notes)
        has_tables = any(type(m) is nn.Embedding for m in model.modules())
        if cfg.quantize == "int8" and "dynamic" in result.method and has_tables:
            # int8 tables with fp32 Linear layers: at batch 1 on short inputs, small Linear layers run
            # faster in fp32 than quantized per call, while the tables hold most of the bytes.
            self.emit("compress.progress", {"step": "quantize", "phase": "int8 tables, fp32 Linear"})
            try:
                alternative = quantize_embeddings(model, target=cfg.target, example_inputs=example)
            except ValueError as exc:
                notes.append(f"int8 tables with fp32 Linear layers not tried: {str(exc).splitlines()[0][:120]}")
            else:
                alt_notes: list[str] = []
                alt_runtime = self._runtime(alternative.model, alt_notes)
                choice = self._choose_precision(runtime, quantized, alt_runtime, alternative.model, example)
                notes.append(choice["note"])
                if choice["alternative"]:
                    quantized, runtime, method = alternative.model, alt_runtime, alternative.method
                    notes = [n for n in alternative.notes] + alt_notes + [choice["note"]]
        self.measure("quantize", runtime, started, weights=quantized, mode=cfg.quantize, method=method,
                     engine=result.engine, **self._runtime_detail(runtime, quantized, notes))
        return runtime

    def _choose_precision(self, full: nn.Module, full_weights: nn.Module, alt: nn.Module, alt_weights: nn.Module,
                          example: tuple) -> dict[str, Any]:
        """Int8 everywhere against int8 tables with fp32 Linear layers: the second is kept when it is
        faster at batch 1 (p50, the two timed in alternating rounds) and at most 25 % larger."""
        budget = min(0.5, self.config.latency_budget_s)
        figures = paired_latency({"full": full, "alt": alt}, example, budget_s=2 * budget, min_runs=2)
        t_full, t_alt = figures["full"]["p50_ms"], figures["alt"]["p50_ms"]
        s_full, s_alt = model_size_bytes(full_weights) / 1e6, model_size_bytes(alt_weights) / 1e6
        keep_alt = t_alt < t_full and s_alt <= 1.25 * s_full
        figures = (f"int8 Linear {t_full:.3f} ms, {s_full:.3f} MB; fp32 Linear with int8 tables {t_alt:.3f} ms, "
                   f"{s_alt:.3f} MB at batch 1")
        if keep_alt:
            note = f"kept the Linear layers in fp32 (faster at batch 1, at most 25 % larger): {figures}"
        elif t_alt < t_full:
            note = f"kept int8 Linear layers: fp32 ones were faster at batch 1 but more than 25 % larger ({figures})"
        else:
            note = f"kept int8 Linear layers: fp32 ones were not faster at batch 1 ({figures})"
        return {"alternative": keep_alt, "note": note}

    def _inputs_for_checks(self) -> list[tuple]:
        """Inputs the traced model must agree on with the eager one: batch 1 and 32 from example_inputs(),
        a few training batches and single rows of them (inputs of different lengths)."""
        ns = self.namespace
        found: list[tuple] = []
        for batch in (1, 32):
            x = ns["example_inputs"](batch)
            found.append(x if isinstance(x, tuple) else (x,))
        if callable(ns.get("calibration_loader")):
            loader, labelled = ns["calibration_loader"], False
        elif callable(ns.get("train_loader")):
            loader, labelled = ns["train_loader"], True  # (inputs, labels) batches
        else:
            return found
        try:
            batches = list(itertools.islice(iter(loader()), 3))
        except Exception:  # noqa: BLE001 - the checks then use example_inputs only
            return found
        for batch in batches:
            inputs = batch[0] if labelled and isinstance(batch, (tuple, list)) else batch
            args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
            if not args or not all(isinstance(a, torch.Tensor) and a.dim() > 0 for a in args):
                continue
            found.append(args)
            if all(a.shape[0] == args[0].shape[0] for a in args):  # single rows: batch 1 of other lengths
                found += [tuple(a[i:i + 1] for a in args) for i in range(min(3, args[0].shape[0]))]
        return found

    def _runtime(self, model: nn.Module, notes: list[str]) -> nn.Module:
        """The fastest measured of eager and TorchScript (``torch.jit.trace``, then ``torch.jit.freeze``).

        Python runs an eager model op by op, which at batch 1 on a small model is most of the time;
        TorchScript skips that. Tracing records one run, so the traced model is kept only when it gives
        the eager outputs on inputs of several lengths and batch sizes (a forward that trims the batch
        to its longest input has shapes that depend on the data), and only when it is faster at batch 1
        (p50, the two timed in alternating rounds; batch 32 is measured and noted too).
        """
        example = self.namespace["example_inputs"](1)
        example = example if isinstance(example, tuple) else (example,)
        kind = "FX graph" if isinstance(model, torch.fx.GraphModule) else "model"
        model.eval()
        try:
            with torch.inference_mode(), warnings_silenced():
                scripted = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False).eval())
        except Exception as exc:  # noqa: BLE001 - the eager model stays
            notes.append(f"runtime: eager; TorchScript tracing failed ({type(exc).__name__}: "
                         f"{(str(exc).strip().splitlines() or [''])[0][:100]})")
            return model
        checks = self._inputs_for_checks()
        try:
            with torch.inference_mode():
                for args in checks:
                    got, want = _forward(scripted, args), _forward(model, args)
                    if not _same_outputs(got, want):
                        shape = "x".join(str(d) for d in args[0].shape) if args and args[0].dim() else "?"
                        notes.append(f"runtime: eager; the traced {kind} gave other outputs than the eager one on an "
                                     f"input of shape {shape} (data-dependent shapes or control flow)")
                        return model
        except Exception as exc:  # noqa: BLE001
            notes.append(f"runtime: eager; the traced {kind} failed on another input ({type(exc).__name__})")
            return model
        budget = min(0.5, self.config.latency_budget_s)
        times = {}
        for batch in (1, 32):
            x = self.namespace["example_inputs"](batch)
            x = x if isinstance(x, tuple) else (x,)
            figures = paired_latency({"eager": model, "scripted": scripted}, x, budget_s=2 * budget, min_runs=2)
            times[batch] = (figures["eager"]["p50_ms"], figures["scripted"]["p50_ms"])
        (e1, t1), (e32, t32) = times[1], times[32]
        figures = f"batch 1 {e1:.3f} -> {t1:.3f} ms, batch 32 {e32:.3f} -> {t32:.3f} ms"
        if t1 < e1:
            notes.append(f"runtime: TorchScript (traced, frozen; same outputs on {len(checks)} inputs), "
                         f"{e1 / t1:.2f}x faster than the eager {kind} at batch 1 ({figures})")
            return scripted
        notes.append(f"runtime: eager; TorchScript was not faster at batch 1 ({figures})")
        return model

    @staticmethod
    def _runtime_detail(runtime: nn.Module, weights: nn.Module, notes: list[str]) -> dict[str, Any]:
        return {"runtime": "torchscript" if runtime is not weights else "eager", "notes": notes}

    def _finish(self, model: nn.Module) -> dict[str, Any]:
        from deepdive.fsutil import atomic_write_bytes, atomic_write_text

        cfg = self.config
        out = Path(cfg.out) if cfg.out else Path(cfg.model).resolve().parent
        stem = Path(cfg.model).stem
        first, last = self.rows[0], self.rows[-1]
        summary = {
            "size_ratio": first["size_mb"] / last["size_mb"] if last["size_mb"] else None,
            "params_ratio": first["params"] / last["params"] if last["params"] else None,
            "accuracy_drop_points": 100 * (first["accuracy"] - last["accuracy"]),
        }
        summary.update(self._paired_speedups(model))
        paths = {"model": str(out / f"{stem}.compressed.pt"), "json": str(out / f"{stem}.compress.json"),
                 "markdown": str(out / f"{stem}.compress.md")}
        data, paths["format"] = self._serialize(model)
        atomic_write_bytes(paths["model"], data)
        report = {"model": str(Path(cfg.model).resolve()), "eval": str(Path(cfg.eval_script).resolve()),
                  "target": cfg.target, "threads": torch.get_num_threads(), "steps": self.rows,
                  "summary": summary, "outputs": paths, "config": attrs.asdict(cfg)}
        atomic_write_text(paths["json"], json.dumps(report, indent=2, default=str) + "\n")
        atomic_write_text(paths["markdown"], markdown(report))
        self.emit("compress.report", report)
        return report

    def _paired_speedups(self, model: nn.Module) -> dict[str, Any]:
        """The summary's speed-ups: the original and the final model measured in alternating rounds
        (:func:`~deepdive.engine.compress.measure.paired_latency`), so load on the machine cancels in
        the ratio (the steps' own rows were measured minutes apart). Each model runs on one thread
        and on the caller's count, and each batch size compares the two at their own fastest: a small
        model at batch 1 often runs fastest on one thread, where a large one gains from several."""
        caller = torch.get_num_threads()
        counts = sorted({1, caller})
        out: dict[str, Any] = {"latency_paired_ms": {}}
        self.emit("compress.progress", {"step": "summary", "phase": "measuring"})
        for batch in (1, 32):
            inputs = self.namespace["example_inputs"](batch)
            entries = {f"{name}@{n}": m for name, m in (("original", self.original), ("compressed", model))
                       for n in counts}
            figures = paired_latency(entries, inputs, threads={key: int(key.split("@")[1]) for key in entries},
                                     budget_s=2 * len(counts) * self.config.latency_budget_s, min_runs=2)
            best = {name: min((figures[f"{name}@{n}"] for n in counts), key=lambda row: row["p50_ms"])
                    for name in ("original", "compressed")}
            before, after = best["original"]["p50_ms"], best["compressed"]["p50_ms"]
            out[f"speedup_b{batch}"] = before / after
            out["latency_paired_ms"][f"b{batch}"] = {
                "original": before, "compressed": after, "runs": best["compressed"]["runs"],
                "threads": {"original": best["original"]["threads"], "compressed": best["compressed"]["threads"]},
                "by_threads": {key: row["p50_ms"] for key, row in figures.items()}}
        return out

    def _serialize(self, model: nn.Module) -> tuple[bytes, str]:
        """The whole module (``torch.load``), or TorchScript (``torch.jit.load``) for what pickle cannot
        save, e.g. an FX-converted static int8 graph."""
        buffer = io.BytesIO()
        if isinstance(model, torch.jit.ScriptModule):
            torch.jit.save(model, buffer)
            return buffer.getvalue(), "torchscript"
        try:
            torch.save(model, buffer)
            return buffer.getvalue(), "module"
        except Exception as exc:  # noqa: BLE001 - pickling fails in many ways; TorchScript is the fallback
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        example = self.namespace["example_inputs"](1)
        try:
            with torch.inference_mode():
                traced = torch.jit.trace(model, example if isinstance(example, tuple) else (example,), check_trace=False)
        except Exception as exc:  # noqa: BLE001
            raise CompressError(f"cannot save the compressed model: pickle failed ({reason[:120]}) and so did "
                                f"TorchScript tracing ({type(exc).__name__}); try --quantize int8-dynamic") from None
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        return buffer.getvalue(), "torchscript"


def _same_outputs(got: Any, want: Any, rtol: float = 1e-3, atol: float = 1e-4) -> bool:
    """Whether two forward outputs (tensors, or tuples/lists/dicts of them) agree in shape and values."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return False
        if want.is_floating_point():
            return bool(torch.allclose(got.float(), want.float(), rtol=rtol, atol=atol))
        return bool(torch.equal(got, want))
    if isinstance(want, (tuple, list)):
        return isinstance(got, (tuple, list)) and len(got) == len(want) and all(
            _same_outputs(g, w, rtol, atol) for g, w in zip(got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            _same_outputs(got[k], want[k], rtol, atol) for k in want)
    return got == want


@contextlib.contextmanager
def warnings_silenced() -> Any:
    """Tracing warns about every Python value it records as a constant; the output check decides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield



def compress(config: CompressConfig, emit: Optional[Emit] = None) -> dict[str, Any]:
    """Run the pipeline; return the report (also written as JSON and Markdown).

    Raises:
        CompressError: a missing file, an evaluation script without the expected function, bad options.
    """
    return Pipeline(config, emit).run()

