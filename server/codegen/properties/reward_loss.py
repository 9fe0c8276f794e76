"""Whether a program trains from rewards, read from its source: a policy-gradient loss or Q-learning.

What makes a policy network a policy is its training, which one forward pass cannot show: the
log-probability of the actions it took multiplied by the returns or advantages they earned
(REINFORCE, actor-critic, PPO's ratio), or Q-values of the taken actions regressed on a TD target
``r + gamma * max Q(s')`` (DQN). A classifier's cross-entropy on labels has the same shapes and
neither. This module follows the data flow of each function of the parsed program by names: a name
assigned from a ``log_prob`` is a log-probability, a name assigned from ``rewards`` carries rewards,
and so on through assignments, loops, ``zip`` and ``list.append``; the words used for rewards and
log-probabilities (``returns``, ``advantages``, ``log_probs``) count as what they say, so a helper
``def pg_loss(log_probs, returns)`` is read as its caller means it.
"""

from __future__ import annotations

import ast
import re
from typing import Iterator, Optional

import attrs

#: Calls whose result is the log-probability of given actions (a distribution's, or a negative
#: log-likelihood per example that a policy gradient weights by advantages).
_LOG_PROB_CALLS = frozenset({"log_prob", "cross_entropy", "nll_loss", "sparse_categorical_crossentropy",
                             "categorical_crossentropy", "binary_cross_entropy_with_logits"})
#: Loss classes whose instances compute it (``ce = nn.CrossEntropyLoss(reduction="none")``).
_LOG_PROB_CLASSES = frozenset({"CrossEntropyLoss", "NLLLoss", "SparseCategoricalCrossentropy",
                               "CategoricalCrossentropy"})
_LOG_CALLS = frozenset({"log_softmax", "log"})
#: Calls that pick the entry of the taken action from a per-action tensor.
_SELECT_CALLS = frozenset({"gather", "take_along_dim", "gather_nd", "one_hot", "batch_gather"})
#: Calls that bootstrap from the next state's best value.
_BOOTSTRAP_CALLS = frozenset({"max", "amax", "argmax", "reduce_max", "gather", "min"})
_FIT_CALLS = frozenset({"fit", "train_on_batch"})
_VALUE_LOSSES = frozenset({"mse_loss", "smooth_l1_loss", "huber_loss", "l1_loss", "MSELoss", "SmoothL1Loss",
                           "HuberLoss", "MeanSquaredError", "Huber"})

_REWARD_WORDS = frozenset({"reward", "rewards", "rew", "rews", "return", "returns", "ret", "rets", "advantage",
                           "advantages", "adv", "advs", "gae", "td", "discounted"})
_DISCOUNT_WORDS = frozenset({"gamma", "discount", "discounts"})
_NEXT_WORDS = frozenset({"next", "q", "qs", "bootstrap"})


def _words(identifier: str) -> set[str]:
    """``next_q_values`` -> {next, q, values}; ``nextQ`` -> {next, q}."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier)
    return {w for w in spaced.lower().split("_") if w}


def _logp_name(identifier: str) -> bool:
    """``log_probs``, ``logp``, ``old_logp``, ``action_log_probs``, ``log_pi``, ``log_likelihood``."""
    flat = identifier.lower().replace("_", "")
    return "logprob" in flat or flat.startswith("logp") or flat.endswith("logp") or "logpi" in flat or "loglik" in flat


def _reward_name(identifier: str) -> bool:
    return identifier in ("R", "G", "G_t", "Gt") or bool(_words(identifier) & _REWARD_WORDS)


def _last(call: ast.Call) -> Optional[str]:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _identifiers(node: ast.AST) -> Iterator[str]:
    """Names, attribute names and string subscripts (``batch["rewards"]``) in ``node``."""
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            yield n.id
        elif isinstance(n, ast.Attribute):
            yield n.attr
        elif isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str):
            yield n.slice.value


def _calls(node: ast.AST) -> set[str]:
    return {name for n in ast.walk(node) if isinstance(n, ast.Call) and (name := _last(n))}


_ACTION_WORDS = frozenset({"a", "act", "acts", "action", "actions"})


def _selects(node: ast.AST, strict: bool = False) -> bool:
    """``q.gather(1, a)``, ``tf.one_hot(a, n)``, ``q[torch.arange(n), a]``, ``logp[a]``: the taken action's
    entry. ``strict``: an index by a name only when the name says it is the action."""
    if _calls(node) & _SELECT_CALLS:
        return True
    for n in ast.walk(node):
        if not isinstance(n, ast.Subscript):
            continue
        index = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
        if any(isinstance(e, ast.Call) and _last(e) in ("range", "arange") for e in index):
            return True
        if any(isinstance(e, ast.Name) and (not strict or _words(e.id) & _ACTION_WORDS) for e in index):
            return True
    return False


def _discounted(node: ast.AST) -> bool:
    """A product with a discount factor: ``gamma * next_q``, ``0.99 * v``."""
    for n in ast.walk(node):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult):
            if any(_words(i) & _DISCOUNT_WORDS or i == "γ" for i in _identifiers(n)):
                return True
            if any(isinstance(c, ast.Constant) and isinstance(c.value, float) and 0.5 <= c.value < 1
                   for c in ast.walk(n)):
                return True
    return False


class _Scope:
    """One function (or the module's top level): what each name it assigns holds."""

    def __init__(self, node: ast.AST) -> None:
        self.nodes = sorted(_own_nodes(node), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))
        self.kinds: dict[str, set[str]] = {}
        for _ in range(3):  # assignments may come in any order (loops); a few passes reach the fixed point
            for n in self.nodes:
                self._assign(n)

    def has(self, node: ast.AST, kind: str) -> bool:
        return any(kind in self.kinds.get(i, ()) for i in _identifiers(node))

    def logp(self, node: ast.AST) -> bool:
        """``node`` computes log-probabilities of the taken actions."""
        calls = _calls(node)
        if calls & _LOG_PROB_CALLS or self.has(node, "logp") or any(_logp_name(i) for i in _identifiers(node)):
            return True
        if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and "nll" in self.kinds.get(n.func.id, ())
               for n in ast.walk(node)):
            return True
        logs = bool(calls & _LOG_CALLS) or self.has(node, "log")
        return logs and (_selects(node) or self.has(node, "select"))

    def reward(self, node: ast.AST) -> bool:
        """``node`` carries rewards, returns or advantages."""
        return self.has(node, "reward") or any(_reward_name(i) for i in _identifiers(node))

    def bootstrap(self, node: ast.AST) -> bool:
        """``node`` holds the next state's value: a max over actions, or a name like ``next_q``."""
        if _calls(node) & _BOOTSTRAP_CALLS or self.has(node, "boot"):
            return True
        return any(_words(i) & _NEXT_WORDS for i in _identifiers(node))

    def _kinds_of(self, value: ast.AST) -> set[str]:
        kinds = set()
        if self.logp(value):
            kinds.add("logp")
        if self.reward(value):
            kinds.add("reward")
        if _calls(value) & _LOG_CALLS or self.has(value, "log"):
            kinds.add("log")
        if _selects(value) or self.has(value, "select"):
            kinds.add("select")
        if _calls(value) & _BOOTSTRAP_CALLS or self.has(value, "boot"):
            kinds.add("boot")
        if isinstance(value, ast.Call) and _last(value) in _LOG_PROB_CLASSES:
            kinds.add("nll")
        return kinds

    def _mark(self, target: ast.AST, kinds: set[str]) -> None:
        """``target`` (``x``, ``a, b``, ``returns[t]``, ``self.x``) now holds ``kinds`` too."""
        if not kinds:
            return
        if isinstance(target, (ast.Tuple, ast.List)):
            for e in target.elts:
                self._mark(e, kinds)
        elif isinstance(target, (ast.Starred, ast.Subscript, ast.Attribute)):
            self._mark(target.value, kinds)
        elif isinstance(target, ast.Name):
            self.kinds.setdefault(target.id, set()).update(kinds)

    def _assign(self, n: ast.AST) -> None:
        if isinstance(n, ast.Assign):
            for t in n.targets:
                if isinstance(t, ast.Tuple) and isinstance(n.value, ast.Tuple) and len(t.elts) == len(n.value.elts):
                    for te, ve in zip(t.elts, n.value.elts):
                        self._mark(te, self._kinds_of(ve))
                else:
                    self._mark(t, self._kinds_of(n.value))
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign)) and n.value is not None:
            self._mark(n.target, self._kinds_of(n.value))
        elif isinstance(n, (ast.For, ast.comprehension)):
            it = n.iter
            if (isinstance(n.target, ast.Tuple) and isinstance(it, ast.Call) and _last(it) == "zip"
                    and len(it.args) == len(n.target.elts)):
                for te, arg in zip(n.target.elts, it.args):
                    self._mark(te, self._kinds_of(arg))
            else:
                self._mark(n.target, self._kinds_of(it))
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("append", "extend",
              "insert") and isinstance(n.func.value, ast.Name) and n.args):
            self._mark(n.func.value, self._kinds_of(n.args[-1]))


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``scope``, without those of the functions and classes defined inside it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield n
        stack.extend(ast.iter_child_nodes(n))


def _scopes(tree: ast.Module) -> Iterator[ast.AST]:
    yield tree
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield n


def _shown(node: ast.AST, limit: int = 70) -> str:
    text = ast.unparse(node)
    return f"{text[:limit - 3]}..." if len(text) > limit else text


@attrs.define
class RewardLosses:
    """Where the program's training uses rewards, each as ``"<source> (line N)"``.

    Attributes:
        policy_gradient: log-probabilities of the taken actions times returns or advantages (a product,
            or a cross-entropy whose ``sample_weight`` is the advantages).
        q_learning: Q-values of the taken actions and a TD target, found in one function.
        value: a regression of values on returns (a critic's loss; alone it trains no actions).
    """

    policy_gradient: list[str] = attrs.Factory(list)
    q_learning: list[str] = attrs.Factory(list)
    value: list[str] = attrs.Factory(list)


def read_reward_losses(tree: ast.Module) -> RewardLosses:
    """The reward-driven losses of a parsed program (see the module docstring for what counts)."""
    found = RewardLosses()
    for node in _scopes(tree):
        scope = _Scope(node)
        found.policy_gradient += _policy_gradients(scope)
        found.q_learning += _q_learning(scope)
        found.value += _value_losses(scope)
    return found


def _policy_gradients(scope: _Scope) -> list[str]:
    out = []
    for n in scope.nodes:
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Mult, ast.MatMult)):
            if (scope.logp(n.left) and scope.reward(n.right)) or (scope.reward(n.left) and scope.logp(n.right)):
                out.append(f"{_shown(n)} (line {n.lineno})")
        elif isinstance(n, ast.Call) and _last(n) in ("mul", "multiply", "dot") and len(n.args) == 2:
            a, b = n.args
            if (scope.logp(a) and scope.reward(b)) or (scope.reward(a) and scope.logp(b)):
                out.append(f"{_shown(n)} (line {n.lineno})")
        elif isinstance(n, ast.Call):
            weight = next((k.value for k in n.keywords if k.arg == "sample_weight"), None)
            if weight is not None and scope.reward(weight) and (_last(n) in _FIT_CALLS or scope.logp(n)
                                                                or _last(n) in _LOG_PROB_CLASSES):
                out.append(f"{_shown(n)} (line {n.lineno})")
    return out


def _q_learning(scope: _Scope) -> list[str]:
    """``Q-values of the taken actions (line 14) and a TD target r + gamma * next_q (line 17)``."""
    selected = [n for n in scope.nodes if isinstance(n, ast.expr) and not isinstance(n, ast.Name)
                and _selects(n, strict=True) and not scope.logp(n)]
    targets = []
    for n in scope.nodes:
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
            for reward, rest in ((n.left, n.right), (n.right, n.left)):
                if scope.reward(reward) and _discounted(rest) and scope.bootstrap(rest):
                    targets.append(n)
                    break
    if not selected or not targets:
        return []
    return [f"Q-values of the taken actions (line {selected[0].lineno}) and a TD target {_shown(targets[0])} "
            f"(line {targets[0].lineno})"]


def _value_losses(scope: _Scope) -> list[str]:
    out = []
    for n in scope.nodes:
        if isinstance(n, ast.Call) and _last(n) in _VALUE_LOSSES and any(scope.reward(a) for a in n.args):
            out.append(f"{_shown(n)} (line {n.lineno})")
    return out
