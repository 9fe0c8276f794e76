"""The metric a study optimises when none is given: read from the script, statically (``ast``).

A script reports several things with ``run.log``: the training batch's ``loss`` at every step, and
an evaluation (``accuracy``, ``val_acc``, ``val_loss``) once an epoch or after training. The batch
loss is the wrong objective for a search (it rewards whatever fits the training batches), so the
default is, in order:

1. the metric of ``setup(keep_best="accuracy:max")``: the script already says which figure is best,
   and which way (``max`` -> maximize);
2. the first logged name that reads as an evaluation: a validation/test prefix or part (``val_``,
   ``valid``, ``eval``, ``test``, ``dev``) or a higher-is-better measure (``accuracy``, ``f1``, ``auc``...);
3. the first name logged outside every loop (a figure reported after training);
4. the first name logged at all;
5. ``loss`` when the script logs nothing by name (the engine's summary may still have it).

Bookkeeping names (``epoch``, ``step``, ``lr``...) are never the metric. The direction is the
``keep_best`` mode, else :func:`guess_direction` of the name. :class:`MetricChoice` says where the
choice came from, for the terminal and the editor. The editor's Tune command applies the same rules
(``extension/src/tune/finder.ts``; both are checked on ``tests/tune/shared_cases.json``).
Nothing here imports torch: the daemon and the coordinator call it.
"""

from __future__ import annotations

import ast
import re
from typing import Iterator, Optional

import attrs

BOOKKEEPING = frozenset({"epoch", "epochs", "step", "steps", "iteration", "iter", "batch", "batch_idx", "lr",
                         "learning_rate", "time", "elapsed", "seconds", "samples", "tokens"})
_EVAL_PARTS = frozenset({"val", "valid", "validation", "eval", "evaluation", "test", "dev", "holdout", "heldout"})
_HIGHER = frozenset({"acc", "accuracy", "auc", "auroc", "f1", "precision", "recall", "score", "reward", "return",
                     "iou", "miou", "dice", "bleu", "rouge", "map", "r2", "ndcg", "mrr"})
_TOP_K = re.compile(r"^top\d+$")
_LOWER = ("loss", "error", "err", "perplexity", "ppl", "wer", "cer", "mse", "mae", "rmse", "nll")


def _parts(name: str) -> list[str]:
    return [p for p in re.split(r"[_\W]+", name.lower()) if p]


def guess_direction(metric: str) -> str:
    """``maximize`` for a higher-is-better name (``accuracy``, ``val_acc``, ``f1``, ``top5``), else ``minimize``.

    A lower-is-better part wins (``acc_loss`` is minimized): a loss is never maximized by guess.
    """
    parts = _parts(metric)
    if any(p in _LOWER or p.endswith("loss") for p in parts):
        return "minimize"
    return "maximize" if any(p in _HIGHER or _TOP_K.match(p) for p in parts) else "minimize"


def is_evaluation(name: str) -> bool:
    """A name that reads as a held-out evaluation rather than a training-batch figure."""
    parts = _parts(name)
    return any(p in _EVAL_PARTS for p in parts) or any(p in _HIGHER or _TOP_K.match(p) for p in parts)


@attrs.frozen
class MetricChoice:
    """The default metric, its direction, and where they came from (one line, for people)."""

    metric: str
    direction: str
    source: str


@attrs.frozen
class _Logged:
    name: str
    line: int
    in_loop: bool


def _is_setup(func: ast.AST) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "setup") or (isinstance(func, ast.Name)
                                                                          and func.id == "setup")


def _keep_best(tree: ast.AST) -> Optional[tuple[str, Optional[str], int]]:
    """``setup(keep_best="name:mode")``'s name, mode and line (a string literal only)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_setup(node.func):
            for kw in node.keywords:
                if kw.arg == "keep_best" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    name, _, mode = kw.value.value.partition(":")
                    if name.strip():
                        return name.strip(), (mode.strip() or None), kw.value.lineno
    return None


def _logged(tree: ast.AST) -> Iterator[_Logged]:
    """Each ``<expr>.log(name=...)`` keyword, in source order, and whether a loop encloses it."""
    found: list[_Logged] = []

    def visit(node: ast.AST, in_loop: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            in_loop = False  # a function's body runs where it is called: judge it by its own loops
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "log":
            for kw in node.keywords:
                if kw.arg is not None:
                    found.append(_Logged(kw.arg, kw.value.lineno, in_loop))
        looping = isinstance(node, (ast.For, ast.AsyncFor, ast.While))
        for child in ast.iter_child_nodes(node):
            visit(child, in_loop or looping)

    visit(tree, False)
    return iter(sorted(found, key=lambda item: item.line))


def default_metric(source: str) -> MetricChoice:
    """The metric a study of this script optimises by default (see the module's rules).

    Raises:
        SyntaxError: the script does not parse.
    """
    tree = ast.parse(source)
    best = _keep_best(tree)
    if best is not None:
        name, mode, line = best
        direction = {"max": "maximize", "min": "minimize"}.get(mode or "", guess_direction(name))
        spec = f"{name}:{mode}" if mode else name
        return MetricChoice(name, direction, f"keep_best={spec!r} in setup() at line {line}")
    logged = [item for item in _logged(tree) if item.name not in BOOKKEEPING]
    names = list(dict.fromkeys(item.name for item in logged))
    others = lambda chosen: [n for n in names if n != chosen]  # noqa: E731
    for item in logged:
        if is_evaluation(item.name):
            return _choice(item, "the first evaluation metric the script logs", others(item.name))
    for item in logged:
        if not item.in_loop:
            return _choice(item, "logged after training", others(item.name))
    if logged:
        why = "the only metric the script logs" if len(names) == 1 else "the first metric the script logs"
        return _choice(logged[0], why, others(logged[0].name))
    return MetricChoice("loss", "minimize", "the script logs no metric by name (run.log(name=...)): loss")


def _choice(item: _Logged, why: str, others: list[str]) -> MetricChoice:
    also = f"; it also logs {', '.join(others)}" if others else ""
    return MetricChoice(item.name, guess_direction(item.name),
                        f"run.log({item.name}=...) at line {item.line}, {why}{also}")
