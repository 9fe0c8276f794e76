"""Knowledge distillation, one stage or several: teacher -> (intermediates) -> student.

Why distil at all: a small student trained on hard labels alone learns only which class is right;
the teacher's softened logits also say how wrong the other classes are ("a 3 that looks like an
8"), which is much more signal per sample. That matters most when the labelled data is small or
when the student is a pruned copy of the teacher that must recover its accuracy.

- :func:`distill` trains ``student`` in place against ``teacher`` with
  ``alpha * T² * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)`` (Hinton et al., 2015;
  the ``T²`` keeps the soft gradients' size independent of the temperature), plus, optionally,
  ``feature_weight * MSE`` between chosen intermediate activations (FitNets, Romero et al., 2015).
  Activations are caught with forward hooks on the named modules. Where the widths differ, a
  learned bias-free ``nn.Linear`` maps the student's activation onto the teacher's width; it is
  trained with the student and thrown away afterwards. The width axis is the one axis on which
  the two shapes differ, so ``(N, C, H, W)`` convolution maps and ``(N, L, D)`` sequences both work.
- :func:`progressive_distill` runs stages on a schedule: stage ``k`` distils ``students[k]`` from the
  stage before's trained student (stage 0 from the teacher). A large gap between teacher and
  student is easier to bridge through an intermediate model (Mirzadeh et al., 2020, "teacher
  assistants"). ``config`` may be one :class:`DistillConfig` for every stage or one per stage.

The teacher is put in eval mode and only ever runs under ``torch.no_grad``. The student may be the
pruned teacher (a copy of it): weights that ``torch.nn.utils.prune`` masks stay masked by its own
hooks, and with ``keep_sparsity`` the exact zeros of partly-zero weight tensors (pruning that was
made permanent) are zeroed again after every optimiser step, so AdamW does not grow them back.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import attrs
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DistillConfig", "DistillError", "DistillResult", "distill", "progressive_distill"]


class DistillError(ValueError):
    """A distillation that cannot run as asked; the message says what to change."""


@attrs.define
class DistillConfig:
    """How one distillation stage trains.

    Attributes:
        epochs (int): passes over ``train_loader``, >= 1.
        temperature (float): softening of both models' logits, > 0; 1 is plain softmax.
        alpha (float): weight of the soft (KL) term in [0, 1]; ``1 - alpha`` goes to the hard labels.
        lr (float): AdamW learning rate.
        weight_decay (float): AdamW weight decay.
        features (list[tuple[str, str]]): ``(student module, teacher module)`` name pairs whose
            outputs are matched with an MSE loss.
        feature_weight (float): weight of the summed feature losses.
        device (str): where both models and the batches go, e.g. ``"cpu"`` or ``"cuda:0"``.
        keep_sparsity (bool): zero again, after every step, the entries that were exactly zero at the
            start in weight tensors that were partly (not wholly) zero: a pruned student stays pruned.
    """

    epochs: int = 3
    temperature: float = 4.0
    alpha: float = 0.7
    lr: float = 1e-3
    weight_decay: float = 0.0
    features: list[tuple[str, str]] = attrs.field(factory=list)
    feature_weight: float = 1.0
    device: str = "cpu"
    keep_sparsity: bool = True


@attrs.define
class DistillResult:
    """What one stage produced.

    Attributes:
        student (nn.Module): the trained student (the same object that was passed in), in eval mode.
        history (list[dict]): one record per epoch: ``epoch`` (1-based) and the batch means of
            ``loss`` (the total), ``kl`` (already times ``T²``), ``ce`` and ``feature`` (0.0 with no
            feature pairs).
        seconds (float): wall time of the stage.
    """

    student: nn.Module
    history: list[dict[str, float]]
    seconds: float


EpochCallback = Callable[[int, dict], None]
StageCallback = Callable[[int, DistillResult], None]


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train_loader: Iterable,
    config: Optional[DistillConfig] = None,
    *,
    on_epoch: Optional[EpochCallback] = None,
) -> DistillResult:
    """Train ``student`` in place to match ``teacher`` (and the labels).

    Args:
        student (nn.Module): trained with AdamW; returned in eval mode.
        teacher (nn.Module): put in eval mode, never updated.
        train_loader (Iterable): yields ``(inputs, labels)``; ``inputs`` is a tensor, a tuple of
            tensors (positional arguments) or a dict (keyword arguments); ``labels`` are class indices.
            It is iterated once per epoch, so it must be re-iterable (a DataLoader or a list).
        config (DistillConfig): defaults to ``DistillConfig()``.
        on_epoch (callable): called as ``on_epoch(epoch, record)`` after every epoch.

    Returns:
        DistillResult: the student, the per-epoch history and the wall time.

    Raises:
        DistillError: a bad config, the student being the teacher or sharing its parameters, an
            unknown feature module, logits or feature shapes that cannot be compared, or a loader
            that yields nothing.

    Example::

        result = distill(small, big, loader, DistillConfig(epochs=5, temperature=4.0, alpha=0.7))
        print(result.history[-1]["loss"])
    """
    cfg = config if config is not None else DistillConfig()
    _validate_config(cfg)
    if student is teacher:
        raise DistillError("the student is the teacher itself: distil into a copy (copy.deepcopy(teacher), then prune it)")
    teacher_params = {id(p) for p in teacher.parameters()}
    if any(id(p) in teacher_params for p in student.parameters()):
        raise DistillError("the student shares parameters with the teacher: give the student its own copy (copy.deepcopy)")

    device = torch.device(cfg.device)
    start = time.perf_counter()
    teacher.to(device).eval()
    student.to(device).train()
    student_acts, teacher_acts, handles = _hook_features(student, teacher, cfg.features)
    projections = nn.ModuleDict()  # str(pair index) -> Linear, made on the first batch
    masks = _sparsity_masks(student) if cfg.keep_sparsity else []
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    checked = False
    try:
        for epoch in range(1, cfg.epochs + 1):
            sums = {"loss": 0.0, "kl": 0.0, "ce": 0.0, "feature": 0.0}
            batches = 0
            for batch in train_loader:
                inputs, labels = _split_batch(batch)
                inputs, labels = _to_device(inputs, device), labels.to(device)
                with torch.no_grad():
                    t_logits = _logits(_call(teacher, inputs))
                s_logits = _logits(_call(student, inputs))
                if not checked:
                    _check_logits(s_logits, t_logits)
                    new = _make_projections(cfg.features, student_acts, teacher_acts, projections)
                    if new:
                        projections.to(device)
                        optimizer.add_param_group({"params": new})
                    checked = True
                kl = _soft_loss(s_logits, t_logits, cfg.temperature)
                ce = F.cross_entropy(s_logits, labels)
                feat = _feature_loss(cfg.features, student_acts, teacher_acts, projections, s_logits)
                loss = cfg.alpha * kl + (1.0 - cfg.alpha) * ce + cfg.feature_weight * feat
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if masks:
                    with torch.no_grad():
                        for param, keep in masks:
                            param.mul_(keep)
                student_acts.clear()
                teacher_acts.clear()
                sums["loss"] += float(loss.detach())
                sums["kl"] += float(kl.detach())
                sums["ce"] += float(ce.detach())
                sums["feature"] += float(feat.detach())
                batches += 1
            if batches == 0:
                raise DistillError("train_loader yielded no batches: pass a non-empty, re-iterable loader (a DataLoader or a list)")
            record: dict[str, float] = {"epoch": epoch, **{k: v / batches for k, v in sums.items()}}
            history.append(record)
            if on_epoch is not None:
                on_epoch(epoch, record)
    finally:
        for handle in handles:
            handle.remove()
        student.eval()
    return DistillResult(student=student, history=history, seconds=time.perf_counter() - start)


def progressive_distill(
    teacher: nn.Module,
    students: list[nn.Module],
    train_loader: Iterable,
    config: Union[DistillConfig, Sequence[DistillConfig], None] = None,
    *,
    on_stage: Optional[StageCallback] = None,
) -> list[DistillResult]:
    """Distil along a chain: ``teacher -> students[0] -> students[1] -> ...``.

    Args:
        teacher (nn.Module): the first stage's teacher; never updated.
        students (list[nn.Module]): one per stage, largest first; each is trained in place and then
            teaches the next.
        train_loader (Iterable): as for :func:`distill`, iterated by every stage.
        config: one :class:`DistillConfig` for every stage, one per stage (the schedule: e.g. more
            epochs or another temperature for the last stage, and feature pairs that name each
            stage's own modules), or None for the defaults.
        on_stage (callable): called as ``on_stage(stage, result)`` after every stage (0-based).

    Returns:
        list[DistillResult]: one per stage, in order.

    Raises:
        DistillError: no students, a schedule whose length is not the number of students, the
            same model twice in the chain, or anything :func:`distill` refuses.
    """
    if not students:
        raise DistillError("progressive_distill needs at least one student: pass students=[intermediate, ..., student]")
    if config is None or isinstance(config, DistillConfig):
        configs = [config if config is not None else DistillConfig()] * len(students)
    else:
        configs = list(config)
        if len(configs) != len(students):
            raise DistillError(
                f"the schedule has {len(configs)} configs for {len(students)} students: pass one DistillConfig per stage, or one for all"
            )
        if not all(isinstance(c, DistillConfig) for c in configs):
            raise DistillError("every entry of the schedule must be a DistillConfig")
    chain = [teacher, *students]
    if len({id(m) for m in chain}) != len(chain):
        raise DistillError("the same model appears twice in the chain: every stage needs its own student (copy.deepcopy)")
    results: list[DistillResult] = []
    current = teacher
    for stage, (student, cfg) in enumerate(zip(students, configs)):
        result = distill(student, current, train_loader, cfg)
        results.append(result)
        if on_stage is not None:
            on_stage(stage, result)
        current = result.student
    return results


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


def _soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² * KL(p_teacher || p_student)`` over the class axis (1), averaged over everything else."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(dim=1)
    return kl.mean() * temperature**2


def _feature_loss(
    pairs: Sequence[tuple[str, str]],
    student_acts: dict[str, torch.Tensor],
    teacher_acts: dict[str, torch.Tensor],
    projections: nn.ModuleDict,
    like: torch.Tensor,
) -> torch.Tensor:
    total = like.new_zeros(())
    for index, (s_name, t_name) in enumerate(pairs):
        s_act, t_act = _activation(student_acts, s_name, "student"), _activation(teacher_acts, t_name, "teacher")
        key = str(index)
        if key in projections:
            s_act = _project(s_act, projections[key], _width_axis(s_act, t_act))
        total = total + F.mse_loss(s_act.float(), t_act.detach().float())
    return total


def _project(act: torch.Tensor, linear: nn.Module, axis: int) -> torch.Tensor:
    return linear(act.movedim(axis, -1)).movedim(-1, axis)


# --------------------------------------------------------------------------------------------
# feature hooks and projections
# --------------------------------------------------------------------------------------------


def _hook_features(
    student: nn.Module, teacher: nn.Module, pairs: Sequence[tuple[str, str]]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[Any]]:
    student_acts: dict[str, torch.Tensor] = {}
    teacher_acts: dict[str, torch.Tensor] = {}
    s_modules, t_modules = dict(student.named_modules()), dict(teacher.named_modules())
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise DistillError(f"feature pair {pair!r} is not a (student module, teacher module) pair of names")
        _find(s_modules, pair[0], "student")
        _find(t_modules, pair[1], "teacher")
    handles: list[Any] = []
    for s_name in dict.fromkeys(p[0] for p in pairs):
        handles.append(s_modules[s_name].register_forward_hook(_catcher(student_acts, s_name)))
    for t_name in dict.fromkeys(p[1] for p in pairs):
        handles.append(t_modules[t_name].register_forward_hook(_catcher(teacher_acts, t_name)))
    return student_acts, teacher_acts, handles


def _find(modules: dict[str, nn.Module], name: str, side: str) -> nn.Module:
    if name in modules:
        return modules[name]
    valid = [n for n in modules if n][:8]
    more = ", ..." if len(modules) - 1 > len(valid) else ""
    raise DistillError(f"the {side} has no module named {name!r}: use one of {', '.join(map(repr, valid))}{more}")


def _catcher(store: dict[str, torch.Tensor], name: str) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        store[name] = _first_tensor(output, name)

    return hook


def _first_tensor(output: Any, name: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise DistillError(f"module {name!r} does not output a tensor (got {type(output).__name__}): match a module that does")


def _activation(acts: dict[str, torch.Tensor], name: str, side: str) -> torch.Tensor:
    if name not in acts:
        raise DistillError(f"the {side} module {name!r} did not run in the forward pass: match a module the model calls")
    return acts[name]


def _width_axis(s_act: torch.Tensor, t_act: torch.Tensor) -> int:
    """The one axis on which the two activations differ (they must have the same rank)."""
    differ = [i for i, (a, b) in enumerate(zip(s_act.shape, t_act.shape)) if a != b]
    return differ[0]


def _make_projections(
    pairs: Sequence[tuple[str, str]],
    student_acts: dict[str, torch.Tensor],
    teacher_acts: dict[str, torch.Tensor],
    projections: nn.ModuleDict,
) -> list[nn.Parameter]:
    """Check each pair's shapes on the first batch; a Linear for each pair whose widths differ."""
    new: list[nn.Parameter] = []
    for index, (s_name, t_name) in enumerate(pairs):
        s_act, t_act = _activation(student_acts, s_name, "student"), _activation(teacher_acts, t_name, "teacher")
        s_shape, t_shape = tuple(s_act.shape), tuple(t_act.shape)
        if s_shape == t_shape:
            continue
        differ = [i for i, (a, b) in enumerate(zip(s_shape, t_shape)) if a != b]
        if len(s_shape) != len(t_shape) or len(differ) != 1 or differ[0] == 0:
            raise DistillError(
                f"features {s_name!r} {s_shape} and {t_name!r} {t_shape} differ in more than the width: "
                "pair modules whose outputs differ on one axis at most"
            )
        axis = differ[0]
        linear = nn.Linear(s_shape[axis], t_shape[axis], bias=False).to(device=s_act.device)
        projections[str(index)] = linear
        new.extend(linear.parameters())
    return new


# --------------------------------------------------------------------------------------------
# batches, outputs and checks
# --------------------------------------------------------------------------------------------


def _validate_config(cfg: DistillConfig) -> None:
    if not isinstance(cfg, DistillConfig):
        raise DistillError(f"config must be a DistillConfig, got {type(cfg).__name__}")
    if not isinstance(cfg.epochs, int) or cfg.epochs < 1:
        raise DistillError(f"epochs must be an integer >= 1, got {cfg.epochs!r}")
    if not cfg.temperature > 0:
        raise DistillError(f"temperature must be > 0 (1 is plain softmax, 2-8 is usual), got {cfg.temperature!r}")
    if not 0.0 <= cfg.alpha <= 1.0:
        raise DistillError(f"alpha is the soft-loss weight and must be in [0, 1], got {cfg.alpha!r}")
    if not cfg.lr > 0:
        raise DistillError(f"lr must be > 0, got {cfg.lr!r}")
    if cfg.weight_decay < 0:
        raise DistillError(f"weight_decay must be >= 0, got {cfg.weight_decay!r}")
    if cfg.feature_weight < 0:
        raise DistillError(f"feature_weight must be >= 0, got {cfg.feature_weight!r}")


def _split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], torch.Tensor):
        return batch[0], batch[1]
    raise DistillError("train_loader must yield (inputs, labels) pairs with labels a tensor of class indices")


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, (tuple, list)):
        return tuple(_to_device(x, device) for x in inputs)
    if isinstance(inputs, dict):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    return inputs


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, tuple):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


def _logits(output: Any) -> torch.Tensor:
    """The logits of a model's output: a tensor, the first of a tuple, or ``.logits`` (Hugging Face)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise DistillError(f"cannot find logits in a model output of type {type(output).__name__}: return a tensor of logits")


def _check_logits(s_logits: torch.Tensor, t_logits: torch.Tensor) -> None:
    if s_logits.shape != t_logits.shape:
        raise DistillError(
            f"the logits' shapes differ: student {tuple(s_logits.shape)}, teacher {tuple(t_logits.shape)}: "
            "both models must predict the same classes"
        )


def _sparsity_masks(student: nn.Module) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(parameter, 0/1 mask) for every weight tensor (2-D or more) that is partly, not wholly, zero."""
    masks = []
    for param in student.parameters():
        if param.dim() < 2 or not param.requires_grad:
            continue
        zero = param.detach() == 0
        if bool(zero.any()) and not bool(zero.all()):
            masks.append((param, (~zero).to(param.dtype)))
    return masks
