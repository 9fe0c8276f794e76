"""The training checks, read from the source: loss, mixed precision, distribution.

What a CPU smoke run in one process cannot show (an autocast that takes effect on a GPU, DDP under
torchrun) is read from the program's calls, resolved through its imports; the details say so.
"""

from __future__ import annotations

import re
from typing import Any

from deepdive.codegen.properties.facts import FAILED, MET, NOT_CHECKED, Judgement, ProgramFacts
from deepdive.codegen.source_facts import Call, is_expr
from deepdive.codegen.spec import Spec


# -- training: loss, precision, distribution --------------------------------------------------------

_TORCH_LOSS_FUNCTIONS = {"cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
                         "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "ctc_loss",
                         "cosine_embedding_loss", "margin_ranking_loss", "triplet_margin_loss", "poisson_nll_loss",
                         "gaussian_nll_loss", "hinge_embedding_loss", "multilabel_soft_margin_loss",
                         "soft_margin_loss", "multi_margin_loss", "multilabel_margin_loss"}
_LOSS_GROUPS = {
    "crossentropy": {"ce"}, "sparsecategoricalcrossentropy": {"ce"}, "categoricalcrossentropy": {"ce"},
    "nll": {"nll"}, "bcewithlogits": {"bce_logits"}, "binarycrossentropywithlogits": {"bce_logits"},
    "bce": {"bce"}, "binarycrossentropy": {"bce", "bce_logits"}, "mse": {"mse"}, "meansquarederror": {"mse"},
    "l1": {"l1"}, "mae": {"l1"}, "meanabsoluteerror": {"l1"}, "smoothl1": {"huber"}, "huber": {"huber"},
    "kldiv": {"kl"}, "kldivergence": {"kl"}, "kld": {"kl"}, "ctc": {"ctc"}, "cosineembedding": {"cosine"},
    "cosinesimilarity": {"cosine"},
}


def loss_keys(name: str) -> set[str]:
    """The kinds of loss ``name`` is (``CrossEntropyLoss``, ``F.cross_entropy`` and Keras' sparse CE agree)."""
    norm = re.sub(r"[^a-z0-9]", "", name.rsplit(".", 1)[-1].lower())
    if norm.endswith("loss") and norm != "loss":
        norm = norm[:-4]
    return _LOSS_GROUPS.get(norm, {norm})


def losses(f: ProgramFacts) -> list[tuple[str, str]]:
    """``(loss name, where)`` for each loss the program uses: its source's calls and the probe's findings."""
    found: list[tuple[str, str]] = []
    for c in f.source.calls:
        head = c.name.rsplit(".", 1)[0]
        if (head in ("torch.nn", "torch.nn.modules.loss") and c.last.endswith("Loss")
                or head == "torch.nn.functional" and c.last in _TORCH_LOSS_FUNCTIONS
                or head == "keras.losses"
                or c.name in f.source.classes and c.last.endswith("Loss")):
            found.append((c.last, f"line {c.line}"))
        if c.last == "compile" and "loss" in c.kwargs:
            value = c.kwargs["loss"]
            if isinstance(value, str):
                found.append((value, f"compile(), line {c.line}"))
    for name in f.run.get("losses", []):
        found.append((name, "the model" if f.framework == "tensorflow" else "module level"))
    seen, out = set(), []
    for name, where in found:
        if name not in seen:
            seen.add(name)
            out.append((name, where))
    return out


def loss(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    used = losses(f)
    if not used:
        return NOT_CHECKED, "no loss class or loss function found in the program (it may compute its loss by hand)"
    want = loss_keys(str(expected))
    match = [(n, w) for n, w in used if loss_keys(n) & want]
    listed = ", ".join(f"{n} ({w})" for n, w in used[:4])
    if match:
        return MET, f"the program uses {listed}"
    return FAILED, f"the program uses {listed}, not {expected}"


def _engine_setup(f: ProgramFacts) -> list[Call]:
    return f.source.find("deepdive.engine.setup", "deepdive.engine.run.setup")


def _mixed_evidence(f: ProgramFacts) -> tuple[list[str], list[str]]:
    """Where the program turns on mixed precision: ``(in its source, seen when it ran)``."""
    source: list[str] = []
    for c in f.source.calls:
        if c.name in ("torch.autocast", "torch.amp.autocast", "torch.cuda.amp.autocast", "torch.cpu.amp.autocast"):
            if c.kwargs.get("enabled") is not False:
                source.append(f"{c.name} (line {c.line})")
        elif c.last in ("set_global_policy", "set_policy", "Policy") and "mixed_precision" in c.name:
            arg = c.args[0] if c.args else c.kwargs.get("name")
            if is_expr(arg) or isinstance(arg, str) and arg.startswith("mixed"):
                source.append(f"{c.name} (line {c.line})")
    setups = _engine_setup(f)
    engine_autocast = [c for c in f.source.find_last("autocast") if not c.name.startswith("torch.")]
    if setups and engine_autocast:
        precision = setups[0].kwargs.get("precision", "auto")
        if precision != "fp32":
            shown = precision.text if is_expr(precision) else precision
            source.append(f"deepdive.engine precision={shown!s} with run.autocast() (line {engine_autocast[0].line})")
    policy = f.run.get("policy")
    seen = [f"Keras' global policy is {policy} after build_model()"] if policy and str(policy).startswith("mixed") else []
    return source, seen


def _evidence(source: list[str], seen: list[str]) -> str:
    parts = ([", ".join(source[:3]) + " (read from the source)"] if source else []) + seen
    return "; ".join(parts)


def precision(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    source, seen = _mixed_evidence(f)
    if str(expected) == "mixed":
        if source or seen:
            return MET, "the program uses " + _evidence(source, seen)
        return FAILED, "no torch.autocast, mixed precision policy or engine autocast in the program"
    if source or seen:
        return FAILED, "the program turns on mixed precision: " + _evidence(source, seen)
    return MET, "no autocast, mixed precision policy or engine autocast in the program"


_DISTRIBUTED = ("torch.nn.parallel.DistributedDataParallel", "torch.nn.parallel.distributed.DistributedDataParallel",
                "torch.distributed.init_process_group", "torch.distributed.fsdp.FullyShardedDataParallel",
                "torch.distributed.fsdp.fully_shard", "torch.distributed._composable.fsdp.fully_shard",
                "tensorflow.distribute.MirroredStrategy", "tensorflow.distribute.MultiWorkerMirroredStrategy",
                "tensorflow.distribute.TPUStrategy", "tensorflow.distribute.experimental.MultiWorkerMirroredStrategy")


def distributed(expected: Any, f: ProgramFacts, spec: Spec) -> Judgement:
    calls = f.source.find(*_DISTRIBUTED)
    found = [f"{c.last} (line {c.line})" for c in calls]
    prepare = [c for c in f.source.find_last("prepare") if not c.name.startswith("torch.")]
    engine = bool(_engine_setup(f) and prepare)
    if expected:
        if found:
            return MET, "the program uses " + ", ".join(found[:3]) + " (read from the source; the checks run one process)"
        if engine:
            return MET, (f"deepdive.engine's run.prepare (line {prepare[0].line}) wraps the model in DDP under torchrun "
                         "(read from the source; the checks run one process)")
        return FAILED, "no DistributedDataParallel, FSDP, init_process_group, tf.distribute strategy or engine run.prepare"
    if found:
        return FAILED, "the program sets up distributed training: " + ", ".join(found[:3])
    return MET, "no DDP, FSDP, process group or tf.distribute strategy" + (
        " (deepdive.engine wraps in DDP only when launched with torchrun)" if engine else "")
