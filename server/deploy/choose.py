"""``deploy bench``: the candidate runtimes measured on this machine, the fastest within tolerance chosen.

A **candidate** is a way to run the exported model: one of the folder's forms (``eager``,
``torchscript``, ``pt2``, ``onnx``, ``int8``, ``split``) opened through
:func:`deepdive.deploy.runners.open_runner`, ``compiled`` (``torch.compile`` of the eager module),
ONNX Runtime once per execution provider present, the eager module under bf16 autocast where the CPU
runs bf16 natively (AVX512-BF16 or AMX-BF16), and on a CUDA GPU the eager module in fp32, fp16 and
bf16. ``int8`` runs on the quantized engine of this machine's architecture (``x86`` on x86-64,
``qnnpack`` on ARM). A candidate that this machine or folder lacks is listed under ``skipped`` with
the reason, never silently dropped.

How each is judged (:func:`bench`):

- **Speed**: every candidate runs the manifest's example rows at each batch size the batcher forms
  (rows repeated past the 64 stored), all candidates in alternating rounds (the order reversed every
  other round, as :func:`deepdive.engine.compress.measure.paired_latency` does), so a change in the
  machine's load falls on all of them alike. p50 and p90 of the single-call times per batch size.
- **Accuracy**: the largest absolute difference of any output from the eager model's, on the same
  batches. A candidate is *eligible* when it is within ``tolerance`` at every batch size. ``int8``
  of a classifier (first output ``[batch, classes]`` with at least 2 classes) is judged instead by
  top-1 agreement with eager over the example rows, at least ``int8_agreement`` (default 0.98: with
  64 rows, at most one row may change class), since int8 logits always differ by more than a float
  tolerance; an int8 model that is not a classifier is held to ``tolerance`` like the rest.
- **Rule**: the eligible candidate with the lowest *geometric mean over the batch sizes of its p50
  divided by eager's p50 at that size* wins (eager itself scores 1.0 and is always eligible, so there
  is always a choice). The reason sentence says the ratio, the per-size p50s and what faster
  candidates were left out and why.

The choice is written into ``deploy.json`` (atomically, :func:`deepdive.deploy.manifest.write`) as
``choice``; these fields are stable — the server reads them::

    {
      "form": "onnx",                   # a form the folder holds (open_runner's name); what `serve` opens
      "provider": "CPUExecutionProvider" | null,   # onnx: the execution provider to use
      "precision": "bf16" | "fp16" | null,         # eager/compiled under autocast at this precision
      "device": "cpu" | "cuda",
      "label": "onnx:CPUExecutionProvider",        # the candidate's name in reports and --forms
      "threads": 2,                     # intra-op threads it was measured with
      "reason": "one sentence with the numbers",
      "tolerance": 0.001, "int8_agreement": 0.98,
      "batch_sizes": [1, 8, 32],
      "latency_ms": {"1": {"p50": 0.21, "p90": 0.25}, ...},   # the chosen candidate's, per batch size
      "measured": [{"label", "form", "provider", "precision", "device", "batch", "p50_ms", "p90_ms",
                    "runs", "max_abs_diff", "top1_agreement" (int8 classifiers, else null),
                    "eligible", "why_not" (null when eligible)}, ...],
      "skipped": [{"label", "why"}, ...],
      "measured_at": "2026-12-07T06:00:00Z", "host": "CPU model name"
    }

:func:`open_choice` opens the chosen candidate (its form, provider and precision) for the server.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import attrs
import numpy as np

from deepdive.deploy.errors import DeployError
from deepdive.deploy.export import max_abs_diff
from deepdive.deploy.manifest import DATATYPES, Manifest, read, write

from deepdive.deploy.defaults import BENCH_BATCH_SIZES as DEFAULT_BATCH_SIZES
from deepdive.deploy.defaults import BENCH_BUDGET_S as DEFAULT_BUDGET_S
from deepdive.deploy.defaults import BENCH_INT8_AGREEMENT as DEFAULT_INT8_AGREEMENT
from deepdive.deploy.defaults import BENCH_TOLERANCE as DEFAULT_TOLERANCE

ROUNDS = 8
WARMUP = 3
MIN_RUNS = 3
NON_COMPUTE_PROVIDERS = frozenset({"AzureExecutionProvider"})
"""onnxruntime providers that run no kernels here (remote endpoints): never candidates."""

Progress = Callable[[float, str], None]


@attrs.frozen
class Candidate:
    """One way to run the exported model: a form, with an onnx provider or an autocast precision."""

    form: str
    provider: Optional[str] = None
    precision: Optional[str] = None
    device: str = "cpu"

    @property
    def label(self) -> str:
        parts = [self.form]
        if self.device != "cpu":
            parts[0] += f"@{self.device}"
        if self.provider:
            parts.append(self.provider)
        if self.precision:
            parts.append(self.precision)
        return ":".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "form": self.form, "provider": self.provider, "precision": self.precision,
                "device": self.device}


# ---------------------------------------------------------------------------------------------- runners


def _float_dtype(datatype: str) -> np.dtype:
    return np.dtype(DATATYPES.get(datatype, "float32"))


class AutocastRunner:
    """The eager (or compiled) module on ``device`` under autocast at ``precision`` (None: as saved).

    Outputs come back as the manifest's datatypes (autocast's bf16/fp16 results are cast), so the
    server and the comparison with eager see the same arrays as from any other form.
    """

    def __init__(self, form: str, module: Any, device: str, precision: Optional[str], out_dtypes: list[np.dtype]):
        import torch

        self.form = form
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[precision]
        self.out_dtypes = out_dtypes

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import contextlib

        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in inputs]
        context = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None
                   else contextlib.nullcontext())
        with torch.inference_mode(), context:
            result = self.module(*tensors)
        items = result if isinstance(result, (tuple, list)) else (result,)
        outs = []
        for item, dtype in zip(items, self.out_dtypes):
            if not isinstance(item, torch.Tensor):
                raise DeployError(f"the model returned a {type(item).__name__}: deploy serves models that "
                                  "return tensors")
            if item.is_floating_point() and dtype.kind == "f":
                item = item.to(getattr(torch, dtype.name))
            outs.append(item.detach().cpu().numpy())
        return outs


class OrtProviderRunner:
    """An onnxruntime session on one execution provider, ``threads`` intra-op threads."""

    def __init__(self, path: Path, provider: str, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.form = "onnx"
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=[provider])
        self.names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(a) for a in self.session.run(None, dict(zip(self.names, inputs)))]


def int8_engine() -> str:
    """The quantized engine for this machine (``x86``/``fbgemm`` on x86-64, ``qnnpack`` on ARM), as int8's opener
    sets it."""
    from deepdive.deploy.runners import quantized_engine

    try:
        return quantized_engine()
    except Exception as exc:  # noqa: BLE001 - no int8 kernels for this CPU in this torch build
        raise DeployError(f"this torch has no int8 engine for {platform.machine()} ({exc}): leave int8 out of --forms"
                          ) from None


def _eager_module(folder: Path, manifest: Manifest, threads: int) -> Any:
    from deepdive.deploy.runners import open_runner

    runner = open_runner(folder, manifest, "eager", threads=threads)
    module = getattr(runner, "module", None)
    if module is None:
        raise DeployError("the eager runner exposes no module to run under autocast: leave bf16/fp16 out of --forms")
    return module


def open_candidate(folder: Path | str, manifest: Manifest, candidate: Candidate, *, threads: int = 1) -> Any:
    """A runner (``run(list[np.ndarray]) -> list[np.ndarray]``) of ``candidate`` from the export folder."""
    import torch

    from deepdive.deploy.runners import open_runner

    folder = Path(folder)
    torch.set_num_threads(max(1, threads))
    if candidate.form == "onnx" and candidate.provider:
        return OrtProviderRunner(manifest.form_path(folder, "onnx"), candidate.provider, threads)
    if candidate.precision or candidate.device != "cpu":
        if candidate.form != "eager":
            raise DeployError(f"{candidate.label}: autocast and devices apply to the eager form only")
        out_dtypes = [_float_dtype(t.datatype) for t in manifest.outputs]
        return AutocastRunner("eager", _eager_module(folder, manifest, threads), candidate.device,
                              candidate.precision, out_dtypes)
    if candidate.form == "int8":
        torch.backends.quantized.engine = int8_engine()
    return open_runner(folder, manifest, candidate.form, threads=threads)


def open_choice(folder: Path | str, manifest: Optional[Manifest] = None, *, threads: Optional[int] = None) -> Any:
    """The runner ``deploy bench`` chose (its provider and precision honoured), else the eager one."""
    folder = Path(folder)
    manifest = manifest or read(folder)
    choice = manifest.choice or {"form": "eager"}
    candidate = Candidate(form=choice["form"], provider=choice.get("provider"), precision=choice.get("precision"),
                          device=choice.get("device") or "cpu")
    return open_candidate(folder, manifest, candidate, threads=threads or int(choice.get("threads") or 1))


# ------------------------------------------------------------------------------------------- candidates


def _cuda() -> tuple[bool, bool]:
    """(CUDA present, bf16 supported there)."""
    try:
        import torch

        if torch.cuda.is_available():
            return True, bool(torch.cuda.is_bf16_supported())
    except Exception:  # noqa: BLE001 - a broken driver is "no GPU" here; doctor reports it
        pass
    return False, False


def candidates(folder: Path, manifest: Manifest, wanted: Optional[Sequence[str]] = None
               ) -> tuple[list[Candidate], list[dict[str, str]]]:
    """The candidates to measure and the skipped ones with their reason.

    ``wanted`` names forms (``eager``, ``compiled``, ``torchscript``, ``pt2``, ``onnx``, ``int8``,
    ``split``) or precisions (``bf16``, ``fp16``, meaning the eager module under autocast); None means
    everything this machine and folder offer. Named bf16 is measured even without native support.
    """
    from deepdive.cpuinfo import cpu_has_native_bf16
    from deepdive.deploy.runners import OPENERS

    forms_known = sorted(set(OPENERS) | set(manifest.forms) | {"compiled", "onnx", "int8", "torchscript", "pt2"})
    names = list(dict.fromkeys(wanted)) if wanted else None
    if names is not None:
        unknown = [n for n in names if n not in forms_known and n not in ("bf16", "fp16")]
        if unknown:
            raise DeployError(f"unknown form {', '.join(unknown)} in --forms: choose from "
                              f"{', '.join(forms_known + ['bf16', 'fp16'])}")
    found: list[Candidate] = [Candidate("eager")]
    skipped: list[dict[str, str]] = []

    def want(name: str) -> bool:
        return names is None or name in names

    def skip(label: str, why: str) -> None:
        skipped.append({"label": label, "why": why})

    present = [f for f in manifest.forms if f not in ("eager", "onnx")]
    for form in present:
        if not want(form):
            continue
        if form not in OPENERS:
            skip(form, f"this Deepdive cannot open the {form} form")
        elif form == "int8":
            try:
                int8_engine()
                found.append(Candidate("int8"))
            except DeployError as exc:
                skip("int8", str(exc))
        else:
            found.append(Candidate(form))
    for form in ("torchscript", "pt2", "int8"):
        if want(form) and form not in manifest.forms:
            why = manifest.failed.get(form)
            skip(form, f"its export failed: {why}" if why else
                 f"not exported: run `deepdive deploy export ... --forms {form}` first")
    if want("compiled"):
        if "compiled" in OPENERS:
            found.append(Candidate("compiled"))
        else:
            skip("compiled", "this Deepdive cannot open the compiled form yet")
    if want("onnx"):
        if "onnx" not in manifest.forms:
            why = manifest.failed.get("onnx")
            skip("onnx", f"its export failed: {why}" if why else
                 "not exported: run `deepdive deploy export ... --forms onnx` first")
        else:
            try:
                import onnxruntime

                providers = [p for p in onnxruntime.get_available_providers() if p not in NON_COMPUTE_PROVIDERS]
            except ImportError:
                providers = []
                skip("onnx", "onnxruntime is not installed: pip install 'deepdive[deploy]'")
            for provider in providers:
                found.append(Candidate("onnx", provider=provider))
    if want("bf16"):
        if cpu_has_native_bf16() or (names is not None and "bf16" in names):
            found.append(Candidate("eager", precision="bf16"))
        else:
            skip("eager:bf16", "this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag)")
    cuda, cuda_bf16 = _cuda()
    if cuda:
        if want("eager"):
            found.append(Candidate("eager", device="cuda"))
        if want("fp16"):
            found.append(Candidate("eager", precision="fp16", device="cuda"))
        if want("bf16") and cuda_bf16:
            found.append(Candidate("eager", precision="bf16", device="cuda"))
    elif names is not None and "fp16" in names:
        skip("eager:fp16", "fp16 autocast is measured on a CUDA GPU and there is none here")
    return found, skipped


# ----------------------------------------------------------------------------------------- measurement


def batch_of(rows: dict[str, np.ndarray], names: list[str], size: int) -> list[np.ndarray]:
    """``size`` example rows of each input (the stored rows repeated when there are fewer)."""
    out = []
    for name in names:
        array = rows[name]
        reps = -(-size // array.shape[0])
        out.append(np.ascontiguousarray(np.concatenate([array] * reps, axis=0)[:size]) if reps > 1
                   else np.ascontiguousarray(array[:size]))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def paired_times(calls: dict[str, Callable[[], Any]], *, budget_s: float, rounds: int = ROUNDS,
                 warmup: int = WARMUP, min_runs: int = MIN_RUNS) -> dict[str, list[float]]:
    """Single-call times in ms of each call, measured in alternating rounds.

    Each round runs every call in turn for about ``budget_s / (rounds * len(calls))`` seconds (at
    least ``min_runs`` calls); the order reverses every other round, so all calls see the same machine.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    slot = budget_s / (max(1, rounds) * max(1, len(names)))
    for r in range(max(1, rounds)):
        for name in (names if r % 2 == 0 else list(reversed(names))):
            call, own = calls[name], times[name]
            started, count = time.perf_counter(), 0
            while count < min_runs or time.perf_counter() - started < slot:
                t0 = time.perf_counter()
                call()
                own.append((time.perf_counter() - t0) * 1000)
                count += 1
    return times


def is_classifier(manifest: Manifest) -> bool:
    """First output ``[batch, classes]`` (classes >= 2) of a float type: top-1 agreement means something."""
    if not manifest.outputs:
        return False
    first = manifest.outputs[0]
    return len(first.shape) == 2 and first.shape[1] >= 2 and first.datatype.startswith("FP")


def decide(rows: list[dict[str, Any]], batch_sizes: Sequence[int]) -> tuple[str, float, dict[str, float]]:
    """The chosen label, its score and every measured label's score (eligible or not).

    Score: the geometric mean over ``batch_sizes`` of the label's p50 over eager's p50 at that size.
    The eligible label (eligible at every batch size) with the lowest score wins; ties go to the first
    measured (eager is first, so an equal candidate never displaces it).
    """
    p50 = {(r["label"], r["batch"]): r["p50_ms"] for r in rows}
    labels = list(dict.fromkeys(r["label"] for r in rows))
    if "eager" not in labels:
        raise DeployError("eager was not measured: it is the reference every candidate is compared with")
    scores: dict[str, float] = {}
    for label in labels:
        ratios = [p50[(label, b)] / p50[("eager", b)] for b in batch_sizes
                  if (label, b) in p50 and p50.get(("eager", b), 0) > 0]
        if len(ratios) == len(batch_sizes):
            scores[label] = math.exp(statistics.fmean(math.log(max(x, 1e-12)) for x in ratios))
    eligible = {r["label"] for r in rows if r["eligible"]} - {r["label"] for r in rows if not r["eligible"]}
    best = min((label for label in labels if label in eligible and label in scores), key=lambda k: scores[k])
    return best, scores[best], scores


def _reason(best: str, scores: dict[str, float], rows: list[dict[str, Any]], batch_sizes: Sequence[int],
            tolerance: float) -> str:
    mine = {r["batch"]: r for r in rows if r["label"] == best}
    p50s = "/".join(f"{mine[b]['p50_ms']:.3g}" for b in batch_sizes)
    sizes = "/".join(str(b) for b in batch_sizes)
    if best == "eager":
        text = f"eager is the fastest eligible candidate (p50 {p50s} ms at batch {sizes})"
    else:
        diff = max(mine[b]["max_abs_diff"] for b in batch_sizes)
        agree = mine[batch_sizes[0]].get("top1_agreement")
        within = (f"top-1 agreement {agree:.3f} with eager" if agree is not None
                  else f"max abs diff {diff:.2g} within {tolerance:g}")
        text = (f"{best} runs in {scores[best]:.2f}x eager's time (geometric mean of p50 ratios; p50 {p50s} ms "
                f"at batch {sizes}), {within}")
    faster = sorted(((label, s) for label, s in scores.items() if s < scores[best] and label != best),
                    key=lambda kv: kv[1])
    if faster:
        whys = []
        for label, score in faster:
            why = next((r["why_not"] for r in rows if r["label"] == label and r["why_not"]), "not eligible")
            whys.append(f"{label} ({score:.2f}x) {why}")
        text += "; faster but left out: " + "; ".join(whys)
    return text + "."


def bench(folder: Path | str, *, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
          forms: Optional[Sequence[str]] = None, threads: Optional[int] = None,
          tolerance: float = DEFAULT_TOLERANCE, int8_agreement: float = DEFAULT_INT8_AGREEMENT,
          budget_s: float = DEFAULT_BUDGET_S, progress: Optional[Progress] = None,
          save: bool = True) -> dict[str, Any]:
    """Measure the candidates, choose one, write it into ``deploy.json`` (``save``) and return the choice."""
    import torch

    from deepdive.cpuinfo import cpu_model

    folder = Path(folder)
    sizes = sorted(set(int(b) for b in batch_sizes))
    if not sizes or sizes[0] < 1:
        raise DeployError(f"batch sizes must be positive integers (got {list(batch_sizes)}): e.g. --batch-sizes 1,8,32")
    if not tolerance >= 0 or not 0 <= int8_agreement <= 1:
        raise DeployError("--tolerance must be >= 0 and --int8-agreement between 0 and 1")
    if not budget_s > 0:
        raise DeployError("--budget-s must be positive")
    manifest = read(folder)
    rows_in = manifest.example_rows(folder)
    names = [t.name for t in manifest.inputs]
    missing = [n for n in names if n not in rows_in]
    if missing:
        raise DeployError(f"{folder}'s example inputs lack {', '.join(missing)}: export the model again")
    threads = int(threads or torch.get_num_threads())
    if threads < 1:
        raise DeployError("--threads must be at least 1")
    caller_threads, caller_engine = torch.get_num_threads(), torch.backends.quantized.engine
    found, skipped = candidates(folder, manifest, forms)
    say = progress or (lambda fraction, text: None)
    steps = len(found) + len(sizes)
    try:
        torch.set_num_threads(threads)
        runners: dict[str, Any] = {}
        for index, candidate in enumerate(found):
            say(index / steps, f"opening {candidate.label}")
            try:
                runners[candidate.label] = open_candidate(folder, manifest, candidate, threads=threads)
            except Exception as exc:  # noqa: BLE001 - one candidate failing must not lose the others
                if candidate.label == "eager":
                    raise
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                skipped.append({"label": candidate.label, "why": f"could not be opened: {text}"[:300]})
        by_label = {c.label: c for c in found if c.label in runners}
        classifier = is_classifier(manifest)
        # accuracy: every candidate on the same batches as eager; int8 classifiers by top-1 agreement
        agreement: dict[str, Optional[float]] = {}
        diffs: dict[tuple[str, int], float] = {}
        errors: dict[str, str] = {}
        batches = {b: batch_of(rows_in, names, b) for b in sizes}
        all_rows = batch_of(rows_in, names, max(next(iter(rows_in.values())).shape[0], 1))
        try:
            truth = {b: runners["eager"].run(batches[b]) for b in sizes}
            truth_all = runners["eager"].run(all_rows)
        except DeployError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model: one line
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DeployError(f"the eager model fails on the example inputs: {type(exc).__name__}: {text}"[:300]
                              + ": export the model again") from None
        for label, runner in runners.items():
            torch.backends.quantized.engine = int8_engine() if by_label[label].form == "int8" else caller_engine
            try:
                for b in sizes:
                    diffs[(label, b)] = max_abs_diff(truth[b], runner.run(batches[b]))
                if by_label[label].form == "int8" and classifier:
                    got = runner.run(all_rows)[0]
                    agreement[label] = float(np.mean(np.argmax(got, axis=1) == np.argmax(truth_all[0], axis=1)))
            except Exception as exc:  # noqa: BLE001 - a form that fails at some batch size is not eligible
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                errors[label] = f"fails: {text}"[:300]
        for label in errors:
            skipped.append({"label": label, "why": errors[label]})
            runners.pop(label)
        # speed: all candidates in alternating rounds, batch size by batch size
        timed: dict[tuple[str, int], list[float]] = {}
        for index, b in enumerate(sizes):
            say((len(found) + index) / steps, f"timing batch {b} ({len(runners)} candidates)")

            def call(label: str, b: int = b) -> Callable[[], Any]:
                runner, engine = runners[label], (int8_engine() if by_label[label].form == "int8" else caller_engine)

                def once() -> Any:
                    if torch.backends.quantized.engine != engine:
                        torch.backends.quantized.engine = engine
                    return runner.run(batches[b])
                return once
            times = paired_times({label: call(label) for label in runners}, budget_s=budget_s / len(sizes))
            for label, own in times.items():
                timed[(label, b)] = own
    finally:
        torch.set_num_threads(caller_threads)
        torch.backends.quantized.engine = caller_engine
    measured: list[dict[str, Any]] = []
    for label in runners:
        candidate = by_label[label]
        agree = agreement.get(label)
        worst = max(diffs[(label, b)] for b in sizes)
        if label == "eager":
            eligible, why = True, None
        elif candidate.form == "int8" and classifier:
            eligible = agree is not None and agree >= int8_agreement
            why = None if eligible else f"top-1 agreement {agree:.3f} < {int8_agreement:g}"
        else:
            eligible = worst <= tolerance
            why = None if eligible else f"max abs diff {worst:.2g} > tolerance {tolerance:g}"
        for b in sizes:
            own = timed[(label, b)]
            measured.append({**candidate.to_json(), "batch": b, "p50_ms": round(statistics.median(own), 4),
                             "p90_ms": round(percentile(own, 0.9), 4), "runs": len(own),
                             "max_abs_diff": diffs[(label, b)], "top1_agreement": agree,
                             "eligible": eligible, "why_not": why})
    best, _, scores = decide(measured, sizes)
    chosen = by_label[best]
    choice = {**chosen.to_json(), "threads": threads,
              "reason": _reason(best, scores, measured, sizes, tolerance),
              "tolerance": tolerance, "int8_agreement": int8_agreement, "batch_sizes": sizes,
              "latency_ms": {str(r["batch"]): {"p50": r["p50_ms"], "p90": r["p90_ms"]}
                             for r in measured if r["label"] == best},
              "scores": {label: round(s, 4) for label, s in scores.items()},
              "measured": measured, "skipped": skipped,
              "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "host": cpu_model()}
    if save:
        fresh = read(folder)  # keep what another step wrote meanwhile; replace only the choice
        fresh.choice = choice
        write(folder, fresh)
    say(1.0, f"chose {best}")
    return choice
