"""What a name in a training script holds, as far as the source tells: a model, a loss function, a tensor.

Several rules need these answers: ``print(loss)`` in the step loop syncs with the GPU only when ``loss`` is a
tensor; ``x.to(device)`` is a batch copy unless ``x`` is the model; an evaluation function "calls the model"
when it calls a module. The answers are heuristics read from the file alone (no imports are followed), chosen
to stay quiet when unsure: a rule that fires on a tensor only misses the cases the file does not make plain.

:func:`values_of` computes them once per :class:`~deepdive.diagnose.rules.base.Context`.
"""

from __future__ import annotations

import ast
import re
from typing import Optional

from deepdive.diagnose.rules.base import Context, dotted_name, method_name


_MODEL_NAME = re.compile(r"^(model|net|network|classifier|encoder|decoder|backbone|generator|discriminator|teacher|"
                         r"student|[a-z0-9_]*_(model|net))$")
_LOSS_NAME = re.compile(r"^([a-z0-9_]*criterion[a-z0-9_]*|[a-z0-9_]*loss_(fn|func|function|fcn|module)|lossfn)$")
_MODULE_METHODS = {"parameters", "named_parameters", "eval", "train", "modules", "children", "named_modules",
                   "buffers", "named_buffers"}
_SAME_MODULE_METHODS = {"to", "cuda", "cpu", "half", "float", "bfloat16", "double", "train", "eval",
                        "requires_grad_", "to_empty"}
_WRAPPERS = {"torch.nn.parallel.DistributedDataParallel", "torch.nn.DataParallel", "torch.nn.parallel.DataParallel",
             "torch.compile", "torch.distributed.fsdp.FullyShardedDataParallel", "torch.jit.script"}
_NOT_TENSOR_METHODS = {"item", "tolist", "numpy", "size", "dim", "numel", "nelement", "element_size", "data_ptr",
                       "stride", "is_contiguous", "get_device", "storage_offset", "ndimension", "__len__", "type",
                       "is_floating_point", "is_complex", "state_dict", "keys", "values", "items", "format", "join",
                       "append", "extend", "get", "copy", "split", "strip", "lower", "upper", "replace", "startswith",
                       "endswith"}
_NOT_TENSOR_ATTRS = {"shape", "dtype", "device", "ndim", "requires_grad", "is_cuda", "grad_fn", "is_leaf", "layout",
                     "names", "is_sparse", "is_quantized", "itemsize", "nbytes"}
_NOT_TENSOR_TORCH = re.compile(r"^torch\.(no_grad|enable_grad|inference_mode|set_grad_enabled|device|dtype|"
                               r"manual_seed|seed|save|load|compile|autocast|get_.*|set_.*|is_.*|use_.*|"
                               r"Generator|Size|finfo|iinfo|typename|numel|cuda\..*|backends\..*|distributed\..*|"
                               r"utils\..*|optim\..*|nn\.(?!functional).*|amp\..*|jit\..*|profiler\..*|"
                               r"accelerator\..*|mps\..*|cpu\..*|multiprocessing\..*|hub\..*|onnx\..*|"
                               r"testing\..*|library\..*|export\..*|fx\..*|version\..*|__version__)$")

def values_of(ctx: Context) -> "Values":
    """The :class:`Values` of ``ctx``'s file, computed on first use."""
    found = ctx.shared.get("values")
    if found is None:
        found = ctx.shared["values"] = Values(ctx)
    return found


class Values:
    """The models, loss functions and tensors of one file (see the module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.calls: list[ast.Call] = ctx.nodes_of(ast.Call)
        """Every call of the file (the tree is walked once, by the Context, and shared by every rule)."""
        self._resolved: dict[int, str] = {}
        self._scopes: Optional[dict[ast.AST, dict[str, list[tuple[int, ast.AST, str]]]]] = None
        self._typed: dict[str, set[str]] = {}
        self._step_functions: Optional[set[ast.AST]] = None
        self.aliases = self._aliases()
        self.module_classes = self._module_classes()
        self.module_functions = self._module_functions()
        self.losses: set[str] = set()
        self.modules: set[str] = set()
        self.module_attrs: set[str] = set()
        self._find_modules()

    def of(self, *kinds: type) -> list[ast.AST]:
        """Every node of these exact types (``ast.FunctionDef``, ``ast.AsyncFunctionDef``), type by type."""
        return [node for kind in kinds for node in self.ctx.nodes_of(kind)]

    # -- names -----------------------------------------------------------------------------------

    def _aliases(self) -> dict[str, str]:
        """Local name → the dotted name it was imported as (``nn`` → ``torch.nn``, ``DDP`` → ``torch.nn.parallel.
        DistributedDataParallel``)."""
        aliases: dict[str, str] = {}
        for node in self.of(ast.Import, ast.ImportFrom):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        head = alias.name.split(".")[0]
                        aliases[head] = head
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        return aliases

    def resolve(self, node: ast.AST) -> str:
        """The dotted name ``node`` stands for with its imports undone (``F.relu`` → ``torch.nn.functional.relu``);
        names that were not imported stay as written."""
        found = self._resolved.get(id(node))
        if found is not None:
            return found
        name = dotted_name(node)
        if not name:
            found = ""
        else:
            head, _, rest = name.partition(".")
            full = self.aliases.get(head, head)
            found = f"{full}.{rest}" if rest else full
        self._resolved[id(node)] = found
        return found

    def _module_classes(self) -> set[str]:
        """Classes defined in the file that subclass ``nn.Module`` (directly or through each other)."""
        classes = [n for n in self.of(ast.ClassDef) if isinstance(n, ast.ClassDef)]
        found: set[str] = set()
        changed = True
        while changed:
            changed = False
            for cls in classes:
                if cls.name in found:
                    continue
                for base in cls.bases:
                    full = self.resolve(base)
                    last = full.rsplit(".", 1)[-1]
                    if full.startswith("torch.nn.") or last in {"Module", "Sequential", "LightningModule"} \
                            or last in found or last.endswith("PreTrainedModel"):
                        found.add(cls.name)
                        changed = True
                        break
        return found

    def _module_functions(self) -> set[str]:
        """Functions defined in the file that build a model (``build_model``, or annotated ``-> nn.Module``)."""
        found: set[str] = set()
        for node in self.of(ast.FunctionDef, ast.AsyncFunctionDef):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                returns = ast.unparse(node.returns) if node.returns is not None else ""
                if re.search(r"\bModule\b|Sequential", returns) or (
                        "model" in node.name.lower() and not returns and re.match(r"(build|make|create|get|new|"
                                                                                  r"init|load)_", node.name)):
                    found.add(node.name)
        return found

    def functions_returning(self, annotation: str) -> set[str]:
        """Names of the functions defined in the file whose return annotation mentions ``annotation``."""
        found = self._typed.get(annotation)
        if found is None:
            found = {node.name for node in self.of(ast.FunctionDef, ast.AsyncFunctionDef)
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None
                     and annotation in ast.unparse(node.returns)}
            self._typed[annotation] = found
        return found

    # -- modules -------------------------------------------------------------------------------

    def _class_kind(self, call: ast.Call) -> Optional[str]:
        """"module", "loss" or None for what calling ``call.func`` builds."""
        full = self.resolve(call.func)
        last = full.rsplit(".", 1)[-1]
        if full.startswith("torch.nn.") and last[:1].isupper() and ".functional." not in full:
            return "loss" if last.endswith("Loss") else "module"
        if last in self.module_classes:
            return "loss" if last.endswith("Loss") else "module"
        if full in self.module_functions or full in _WRAPPERS:
            return "module"
        if last == "from_pretrained" and "Model" in full:
            return "module"
        if re.match(r"^(torchvision\.models|timm)\.", full) and last[:1].islower() and not last.startswith("get_"):
            return "module"
        return None

    def is_module(self, node: ast.AST) -> bool:
        """``node`` is a model: a name or ``self.``-attribute bound to one, or called ``model``/``net``…"""
        if isinstance(node, ast.Name):
            return node.id in self.modules
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return node.attr in self.module_attrs or bool(_MODEL_NAME.match(node.attr))
        return False

    def is_loss(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.losses
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return bool(_LOSS_NAME.match(node.attr))
        return False

    def _module_value(self, value: ast.AST) -> Optional[str]:
        if isinstance(value, ast.Call):
            kind = self._class_kind(value)
            if kind is not None:
                if kind == "module" and self.resolve(value.func) in _WRAPPERS and value.args:
                    return "module" if self.is_module(value.args[0]) else None
                return kind
            func = value.func
            if isinstance(func, ast.Attribute) and func.attr in _SAME_MODULE_METHODS and self.is_module(func.value):
                return "module"
        return None

    def _find_modules(self) -> None:
        for node in self.of(ast.Name, ast.arg, ast.Call):
            if isinstance(node, ast.Name) and _MODEL_NAME.match(node.id):
                self.modules.add(node.id)
            elif isinstance(node, ast.Name) and _LOSS_NAME.match(node.id):
                self.losses.add(node.id)
            elif isinstance(node, ast.arg) and node.annotation is not None:
                note = ast.unparse(node.annotation)
                if re.search(r"\bModule\b", note) or note.strip("'\"") in self.module_classes:
                    self.modules.add(node.arg)
            elif isinstance(node, ast.Call) and method_name(node) in _MODULE_METHODS \
                    and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                    and not (method_name(node) == "train" and node.args and isinstance(node.args[0], ast.Constant)
                             and isinstance(node.args[0].value, str)):
                self.modules.add(node.func.value.id)
        assignments = [node for node in self.of(ast.Assign, ast.AnnAssign)
                       if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None]
        for _ in range(3):
            for node in assignments:
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    kind = self._module_value(node.value)
                    for target in targets:
                        if isinstance(target, ast.Name) and kind is not None:
                            (self.losses if kind == "loss" else self.modules).add(target.id)
                        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                                and target.value.id == "self" and kind == "module":
                            self.module_attrs.add(target.attr)
                        elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Call) \
                                and method_name(node.value) == "prepare":
                            # model, optimizer, loader = run.prepare(model, optimizer, loader)
                            for element, argument in zip(target.elts, node.value.args):
                                if isinstance(element, ast.Name) and self.is_module(argument):
                                    self.modules.add(element.id)
        self.modules -= self.losses

    def called_modules(self, root: ast.AST) -> list[ast.Call]:
        """The calls of a model under ``root`` (``model(x)``, ``self.net(x)``), in source order."""
        calls = [n for n in ast.walk(root) if isinstance(n, ast.Call) and self.is_module(n.func)]
        return sorted(calls, key=lambda c: (c.lineno, c.col_offset))

    # -- tensors -------------------------------------------------------------------------------

    def _scope_of(self, node: ast.AST) -> ast.AST:
        function = self.ctx.enclosing_function(node)
        return function if function is not None else self.ctx.tree

    def bindings(self, scope: ast.AST) -> dict[str, list[tuple[int, ast.AST, str]]]:
        """Each name's assignments in ``scope`` (a function, or the module for top-level code): (line, value, how)
        with how "=" (the value), "+=" (an augmented assignment), "[]" (one element of an unpacked value) or
        "for" (a loop target). All scopes are collected in one walk of the file, on first use."""
        if self._scopes is None:
            self._scopes = self._collect_bindings()
        return self._scopes.get(scope, {})

    def _collect_bindings(self) -> dict[ast.AST, dict[str, list[tuple[int, ast.AST, str]]]]:
        scopes: dict[ast.AST, dict[str, list[tuple[int, ast.AST, str]]]] = {}

        def bind(found: dict[str, list[tuple[int, ast.AST, str]]], target: ast.AST, value: ast.AST, line: int,
                 how: str) -> None:
            if isinstance(target, ast.Name):
                found.setdefault(target.id, []).append((line, value, how))
            elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                    and len(target.elts) == len(value.elts) and how == "=" \
                    and not any(isinstance(e, ast.Starred) for e in [*target.elts, *value.elts]):
                for element, part in zip(target.elts, value.elts):  # a, b = f(x), g(y)
                    bind(found, element, part, line, "=")
            elif isinstance(target, (ast.Tuple, ast.List)):
                for element in target.elts:
                    bind(found, element.value if isinstance(element, ast.Starred) else element, value, line, "[]")

        stack: list[tuple[ast.AST, ast.AST]] = [(self.ctx.tree, self.ctx.tree)]
        while stack:
            node, scope = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                    stack.append((child, child))  # another scope (class bodies and lambdas are not looked up)
                    continue
                found = scopes.setdefault(scope, {})
                if isinstance(child, ast.Assign):
                    for target in child.targets:
                        bind(found, target, child.value, child.lineno, "=")
                elif isinstance(child, ast.AnnAssign) and child.value is not None:
                    bind(found, child.target, child.value, child.lineno, "=")
                elif isinstance(child, ast.AugAssign):
                    bind(found, child.target, child.value, child.lineno, "+=")
                elif isinstance(child, ast.NamedExpr):
                    bind(found, child.target, child.value, child.lineno, "=")
                elif isinstance(child, (ast.For, ast.AsyncFor)):
                    bind(found, child.target, child, child.lineno, "for")
                stack.append((child, scope))
        for found in scopes.values():
            for entries in found.values():
                entries.sort(key=lambda entry: entry[0])
        return scopes

    def is_tensor(self, node: ast.AST, _depth: int = 0) -> bool:
        """``node`` evaluates to a tensor the file computed: a model's or a loss's output, a ``torch``/``F``
        function's result, or arithmetic, methods, attributes and items of one (not ``.shape``, not
        ``.item()``)."""
        if _depth > 12:
            return False
        if isinstance(node, ast.Call):
            func = node.func
            if self.is_module(func) or self.is_loss(func):
                return True
            full = self.resolve(func)
            if full.startswith("torch.nn.functional."):
                return True
            if full.startswith("torch.") and full.count(".") >= 1 and not _NOT_TENSOR_TORCH.match(full) \
                    and full.rsplit(".", 1)[-1][:1].islower():
                return True
            if isinstance(func, ast.Attribute) and not full.startswith("torch."):
                if func.attr in _NOT_TENSOR_METHODS:
                    return False
                return self.is_tensor(func.value, _depth + 1)
            return False
        if isinstance(node, ast.Name):
            return self._name_is_tensor(node, _depth)
        if isinstance(node, ast.Attribute):
            if node.attr in _NOT_TENSOR_ATTRS:
                return False
            return self.is_tensor(node.value, _depth + 1)
        if isinstance(node, ast.Subscript):
            return self.is_tensor(node.value, _depth + 1)
        if isinstance(node, ast.BinOp):
            return self.is_tensor(node.left, _depth + 1) or self.is_tensor(node.right, _depth + 1)
        if isinstance(node, ast.UnaryOp):
            return not isinstance(node.op, ast.Not) and self.is_tensor(node.operand, _depth + 1)
        if isinstance(node, ast.Compare):
            if any(isinstance(op, (ast.Is, ast.IsNot, ast.In, ast.NotIn)) for op in node.ops):
                return False
            return any(self.is_tensor(side, _depth + 1) for side in [node.left, *node.comparators])
        if isinstance(node, ast.IfExp):
            return self.is_tensor(node.body, _depth + 1) or self.is_tensor(node.orelse, _depth + 1)
        return False

    def _name_is_tensor(self, node: ast.Name, depth: int) -> bool:
        entries = self.bindings(self._scope_of(node)).get(node.id, [])
        if not entries:
            return False
        before = [entry for entry in entries if entry[0] < node.lineno]
        line, value, how = before[-1] if before else entries[-1]
        if how == "for":
            return False
        if how == "+=":
            if self.is_tensor(value, depth + 1):
                return True
            earlier = [entry for entry in entries if entry[0] < line and entry[2] != "+="]
            return bool(earlier) and earlier[-1][2] != "for" and self.is_tensor(earlier[-1][1], depth + 1)
        if how == "[]":
            # a, b = model(x) → both tensors; x, y = batch → unknown (not a computed tensor)
            return isinstance(value, ast.Call) and self.is_tensor(value, depth + 1)
        return self.is_tensor(value, depth + 1)

    # -- per step ------------------------------------------------------------------------------

    def step_functions(self) -> set[ast.AST]:
        """Functions that make one training step and are called from a loop: ``def train_step(batch): …
        loss.backward(); opt.step()`` with ``for batch in loader: train_step(batch)``. Their backward/step is not
        inside a loop of their own (a function holding the whole loop is not a step)."""
        if self._step_functions is not None:
            return self._step_functions
        ctx = self.ctx
        found: set[ast.AST] = set()
        functions = {node.name: node for node in self.of(ast.FunctionDef, ast.AsyncFunctionDef)  # type: ignore[attr-defined]
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        looped_calls = set()
        for call in self.calls:
            name = call.func.id if isinstance(call.func, ast.Name) else (
                call.func.attr if isinstance(call.func, ast.Attribute) else "")
            if name in functions and any(isinstance(p, (ast.For, ast.AsyncFor, ast.While)) for p in ctx.ancestors(call)):
                looped_calls.add(name)
        for name in looped_calls:
            function = functions[name]
            steps = [call for call in ctx.calls(function) if _is_step_call(call)]
            if not steps:
                continue
            if any(isinstance(parent, (ast.For, ast.AsyncFor, ast.While))
                   for call in steps for parent in _ancestors_until(ctx, call, function)):
                continue
            found.add(function)
        self._step_functions = found
        return found

    def per_step(self, node: ast.AST) -> bool:
        """:meth:`Context.per_step`, and also code of a step function (:meth:`step_functions`) that is not under an
        ``if`` there: it runs once per step of the loop that calls the function."""
        ctx = self.ctx
        if ctx.per_step(node):
            return True
        if ctx.step_loop_of(node) is not None:
            return False
        function = ctx.enclosing_function(node)
        if function is None or function not in self.step_functions():
            return False
        return not any(isinstance(parent, ast.If) for parent in _ancestors_until(ctx, node, function))


def _ancestors_until(ctx: Context, node: ast.AST, stop: ast.AST) -> list[ast.AST]:
    out = []
    for parent in ctx.ancestors(node):
        if parent is stop:
            break
        out.append(parent)
    return out


def _is_step_call(call: ast.Call) -> bool:
    name = method_name(call)
    if name == "backward":
        return True
    if name == "step" and isinstance(call.func, ast.Attribute):
        target = call.func.value
        return not (isinstance(target, ast.Name) and "sched" in target.id.lower())
    return False
