"""Facts about a generated program's model, gathered inside the sandbox: the verifier's ``properties`` run.

This file is not imported by the daemon: :mod:`deepdive.codegen.verify` copies its text into the
sandbox's working directory as ``probe.py`` next to ``program.py`` and runs
``python probe.py <framework> <wants>``. It imports the program, calls ``build_model()`` and
``example_batch()``, runs one forward pass and prints one line ``@@RESULT@@{json}`` with what it saw:

``modules``      ``[path, class name]`` of every module (torch: ``named_modules``; Keras: layers,
                 recursively), at most :data:`MAX_MODULES`; ``counts`` has them all by class
                 (a recurrent layer counts its ``num_layers``).
``inputs``, ``targets``, ``outputs``  ``{"key", "shape", "dtype"}`` of each tensor of
                 ``example_batch()``'s inputs and targets and of the forward pass's output (nested
                 tuples, lists and dicts keyed ``[0].boxes``; a ``torch.distributions`` object by its
                 parameters, ``logits`` or ``loc``/``scale``); integer tensors add ``"range": [min, max]``
                 (ids must index their tables, an edge_index its nodes), sparse ones ``"sparse": true``.
``convs``        kernel, stride, groups and input channels of each convolution (depthwise convolutions,
                 patch embeddings).
``losses``       loss classes the program holds at module level or in the model (torch), or the compiled
                 ``model.loss`` (Keras).
``policy``       Keras' global mixed precision policy after ``build_model()``.
``pretrained``   the model is a Hugging Face ``PreTrainedModel``.
``graph``        (torch, when ``wants`` has ``graph``) the forward pass's data flow, recorded op by op
                 with a ``TorchFunctionMode``: residual additions, skip concatenations, upsampling,
                 attention (softmax feeding a matmul), the narrowest per-example width, and ``reach``:
                 the keys of the inputs the output was computed from (a GNN must read its edges, a
                 recommender its item ids).

Only the standard library at import time, so that importing this module (its tests) costs nothing.
"""

from __future__ import annotations

import collections.abc
import importlib.util
import json
import math
import sys
import traceback
from typing import Any, Optional

MAX_MODULES = 2000
MAX_GRAPH_OPS = 20000
MAX_RANGE_ELEMENTS = 10_000_000  # an integer tensor's min and max are read up to this size

# Op names (torch functions and Tensor methods, underscores stripped) the graph recorder cares about.
WEIGHTED_OPS = frozenset({"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                          "linear", "lstm", "gru", "rnn_tanh", "rnn_relu", "embedding"})
ADD_OPS = frozenset({"add", "iadd", "radd"})
CAT_OPS = frozenset({"cat", "concat", "concatenate"})
UPSAMPLE_OPS = frozenset({"interpolate", "upsample", "upsample_nearest2d", "upsample_bilinear2d", "conv_transpose1d",
                          "conv_transpose2d", "conv_transpose3d", "pixel_shuffle", "repeat_interleave"})
MATMUL_OPS = frozenset({"matmul", "bmm", "einsum", "baddbmm", "mm"})
# Fused attention (torch's fast paths run a whole attention block, or encoder layer, as one op).
ATTENTION_OPS = frozenset({"scaled_dot_product_attention", "multi_head_attention_forward", "native_multi_head_attention",
                           "transformer_encoder_layer_fwd", "flash_attention_forward", "efficient_attention_forward"})


def _shape(x: Any) -> Optional[list]:
    shape = getattr(x, "shape", None)
    if shape is None:
        return None
    try:
        return [int(d) if d is not None else None for d in shape]
    except (TypeError, ValueError):
        return None


def _dtype(x: Any) -> str:
    """``int``, ``float``, ``bool`` or ``other``: what the checks need to tell ids from values."""
    text = str(getattr(x, "dtype", "")).lower()
    if "bool" in text:
        return "bool"
    if "int" in text:
        return "int"
    if "float" in text or "half" in text:
        return "float"
    return "other"


def _sparse(x: Any) -> bool:
    """A torch sparse layout (COO, CSR, ...) or a ``tf.SparseTensor``."""
    return "sparse" in str(getattr(x, "layout", "")) or type(x).__name__ == "SparseTensor"


def _int_range(x: Any) -> Optional[list]:
    """``[min, max]`` of an integer or boolean tensor (torch, numpy or eager TensorFlow); None when unknown."""
    shape = _shape(x)
    if shape is None or None in shape or _sparse(x) or not 0 < math.prod(shape) <= MAX_RANGE_ELEMENTS:
        return None
    try:
        values = x if hasattr(x, "min") else x.numpy()
        return [int(values.min()), int(values.max())]
    except Exception:  # noqa: BLE001 - a fact we could not read is left out
        return None


def _entry(x: Any, key: str) -> dict:
    entry = {"key": key, "shape": _shape(x), "dtype": _dtype(x)}
    if _sparse(x):
        entry["sparse"] = True
    if entry["dtype"] in ("int", "bool"):
        bounds = _int_range(x)
        if bounds is not None:
            entry["range"] = bounds
    return entry


def _distribution_params(o: Any) -> list[tuple[str, Any]]:
    """The parameters a ``torch.distributions`` object holds (``loc``, ``scale``, ``probs``), not those
    it would compute on access."""
    names = getattr(o, "arg_constraints", None)
    if not isinstance(names, dict) or not hasattr(o, "batch_shape"):
        return []
    held = vars(o) if hasattr(o, "__dict__") else {}
    return [(n, held[n]) for n in names if _shape(held.get(n)) is not None]


def keyed(obj: Any, key: str = "", limit: int = 16) -> list[tuple[str, Any]]:
    """``(key, tensor)`` for each tensor in ``obj``: nested tuples, lists, dicts, HF outputs and
    distributions, keyed ``[0]``, ``boxes``, ``[1].logits``."""
    found: list[tuple[str, Any]] = []

    def visit(o: Any, k: str, depth: int) -> None:
        if len(found) >= limit or o is None or depth > 6:
            return
        if _shape(o) is not None:
            found.append((k, o))
            return
        logits = getattr(o, "logits", None)
        if logits is not None and _shape(logits) is not None:
            found.append((f"{k}.logits" if k else "logits", logits))
            return
        params = _distribution_params(o)
        if params:
            found.extend((f"{k}.{n}" if k else n, v) for n, v in params)
            return
        if isinstance(o, dict) or hasattr(o, "items") and hasattr(o, "keys"):
            for name, value in list(o.items()):
                visit(value, f"{k}.{name}" if k else str(name), depth + 1)
        elif isinstance(o, (tuple, list)):
            for i, value in enumerate(o):
                visit(value, f"{k}[{i}]", depth + 1)

    visit(obj, key, 0)
    return found[:limit]


def tensors(obj: Any, key: str = "", limit: int = 16) -> list[dict]:
    """The tensors (anything with a shape) in ``obj``, nested tuples, lists, dicts and HF outputs included."""
    return [_entry(x, k) for k, x in keyed(obj, key, limit)]


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``example_batch()`` returns ``(inputs, targets)``; anything else is all inputs."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    return batch, None


# ------------------------------------------------------------------------------------------------
# torch
# ------------------------------------------------------------------------------------------------


def torch_modules(model: Any) -> tuple[list, dict, list]:
    """``(modules, counts, convs)`` of a torch model (or a tuple/list/dict of models)."""
    import torch

    roots = _roots(model)
    modules: list = []
    counts: dict[str, int] = {}
    convs: list = []
    for prefix, root in roots:
        if not isinstance(root, torch.nn.Module):
            continue
        for path, module in root.named_modules():
            name = type(module).__name__
            full = ".".join(p for p in (prefix, path) if p) or "(model)"
            weight = int(getattr(module, "num_layers", 1) or 1) if name in ("LSTM", "GRU", "RNN") else 1
            counts[name] = counts.get(name, 0) + weight
            if len(modules) < MAX_MODULES:
                modules.append([full, name])
            if isinstance(module, torch.nn.modules.conv._ConvNd) and len(convs) < 500:
                convs.append([full, name, list(module.kernel_size), list(module.stride), int(module.groups),
                              int(module.in_channels)])
    return modules, counts, convs


def _roots(model: Any) -> list[tuple[str, Any]]:
    if isinstance(model, (tuple, list)):
        return [(f"[{i}]", m) for i, m in enumerate(model)]
    if isinstance(model, dict):
        return [(str(k), m) for k, m in model.items()]
    return [("", model)]


def torch_losses(program: Any, model: Any) -> list[str]:
    """Loss classes at the program's module level (instances and subclasses it defines) and in the model."""
    import torch

    base = torch.nn.modules.loss._Loss
    names: list[str] = []
    for value in list(vars(program).values()):
        if isinstance(value, base):
            names.append(type(value).__name__)
        elif isinstance(value, type) and issubclass(value, base) and value.__module__ == program.__name__:
            names.append(value.__name__)
    for _, root in _roots(model):
        if isinstance(root, torch.nn.Module):
            names += [type(m).__name__ for m in root.modules() if isinstance(m, base)]
    return sorted(set(names))


def torch_forward(model: Any, inputs: Any, record: bool) -> tuple[Any, Optional[dict]]:
    """One forward pass in eval mode without gradients; with ``record``, its data flow too."""
    import torch

    first = _roots(model)[0][1]
    first.eval()
    recorder = GraphRecorder() if record else None
    with torch.no_grad():
        if recorder is not None:
            recorder.register(inputs)
            with recorder.mode():
                out = _call(first, inputs)
        else:
            out = _call(first, inputs)
    return out, (recorder.summary(_batch_size(inputs), out) if recorder is not None else None)


def _call(model: Any, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _batch_size(inputs: Any) -> Optional[int]:
    found = tensors(inputs)
    return found[0]["shape"][0] if found and found[0]["shape"] else None


class GraphRecorder:
    """The forward pass's data flow: one node per torch op, edges from the tensors it read.

    Tensors are told apart by ``id``; every tensor seen is kept alive until the summary, so an id is
    never reused within one pass. An in-place op (``out += x``) makes a new node for the same tensor.
    """

    def __init__(self) -> None:
        self.ops: list[str] = []
        self.parents: list[list[int]] = []
        self.widths: list[Optional[list]] = []
        self.node_of: dict[int, int] = {}
        self.keep: list[Any] = []
        self.input_keys: dict[int, str] = {}  # node -> the input's key, as in the facts' ``inputs``
        self.overflow = False

    def register(self, inputs: Any) -> None:
        """The model's inputs: the sources of the data flow."""
        for key, value in keyed(inputs, limit=256):
            if id(value) in self.node_of:
                continue
            self.node_of[id(value)] = len(self.ops)
            self.input_keys[len(self.ops)] = key
            self.ops.append("input")
            self.parents.append([])
            self.widths.append(None)
            self.keep.append(value)

    def mode(self) -> Any:
        from torch.overrides import TorchFunctionMode

        recorder = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                out = func(*args, **(kwargs or {}))
                if isinstance(out, collections.abc.Iterator):  # ``src, dst = edge_index``: the rows it yields
                    items = list(out)
                    recorder.add(func, args, kwargs or {}, items)
                    return iter(items)
                recorder.add(func, args, kwargs or {}, out)
                return out

        return Mode()

    def add(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        if len(self.ops) >= MAX_GRAPH_OPS:
            self.overflow = True
            return
        name = getattr(func, "__name__", str(func)).strip("_")
        ins: list[int] = []
        for value in _flat((args, kwargs)):
            node = self.node_of.get(id(value))
            if node is not None and node not in ins:
                ins.append(node)
        outs = [o for o in _flat(out) if _shape(o) is not None]
        if not outs:
            return
        index = len(self.ops)
        self.ops.append(name)
        self.parents.append(ins)
        self.widths.append(_shape(outs[0]) if ins else None)  # ops on parameters alone are not the data's width
        for o in outs:
            self.node_of[id(o)] = index
            self.keep.append(o)

    def summary(self, batch: Optional[int], out: Any = None) -> dict:
        """Residual additions, skip concatenations, upsampling, attention, the narrowest width, and
        which inputs ``out`` (the forward pass's output) was computed from."""
        n = len(self.ops)
        ancestors: list[set[int]] = []
        for i in range(n):
            acc: set[int] = set()
            for p in self.parents[i]:
                acc.add(p)
                acc |= ancestors[p]
            ancestors.append(acc)
        weighted = [i for i, op in enumerate(self.ops) if op in WEIGHTED_OPS]
        upsampled = [i for i, op in enumerate(self.ops) if op in UPSAMPLE_OPS]

        def through(a: int, b: int, via: list[int]) -> bool:
            """``b`` was computed from ``a`` through at least one op of ``via``."""
            return a in ancestors[b] and any(a in ancestors[w] and (w == b or w in ancestors[b]) for w in via)

        residual, skips, attention = [], [], []
        for i, op in enumerate(self.ops):
            ps = self.parents[i]
            if op in ADD_OPS and len(ps) >= 2:
                a, b = ps[0], ps[1]
                if through(a, b, weighted) or through(b, a, weighted):
                    residual.append(i)
            elif op in CAT_OPS and len(ps) >= 2:
                if any(through(a, b, weighted) and through(a, b, upsampled) for a in ps for b in ps if a != b):
                    skips.append(i)
            elif op in MATMUL_OPS and any(self.ops[p] == "softmax" for p in ps):
                attention.append(i)
            elif op in ATTENTION_OPS:
                attention.append(i)
        widths = [math.prod(w[1:]) for w in self.widths
                  if w and batch is not None and len(w) >= 2 and w[0] == batch and None not in w]
        reach = self._reach(out, ancestors)
        self.keep.clear()
        return {"ops": n, "overflow": self.overflow, "residual": len(residual), "skip_concat": len(skips),
                "upsample": len(upsampled), "attention": len(attention),
                "min_width": min(widths) if widths else None, "reach": reach}

    def _reach(self, out: Any, ancestors: list[set[int]]) -> list[str]:
        """The keys of the inputs that any tensor of ``out`` was computed from (or is), in input order."""
        found: set[int] = set()
        for _, o in keyed(out, limit=256):
            node = self.node_of.get(id(o))
            if node is not None:
                found |= ancestors[node] | {node}
        return [key for node, key in sorted(self.input_keys.items()) if node in found]


def _flat(obj: Any) -> list:
    out: list = []

    def visit(o: Any, depth: int) -> None:
        if depth > 4:
            return
        if isinstance(o, (tuple, list)):
            for v in o:
                visit(v, depth + 1)
        elif isinstance(o, dict):
            for v in o.values():
                visit(v, depth + 1)
        elif _shape(o) is not None:
            out.append(o)

    visit(obj, 0)
    return out


# ------------------------------------------------------------------------------------------------
# Keras
# ------------------------------------------------------------------------------------------------


def keras_modules(model: Any) -> tuple[list, dict, list, Optional[int]]:
    """``(modules, counts, convs, min_width)`` of a Keras model: its layers, recursively."""
    modules: list = []
    counts: dict[str, int] = {}
    convs: list = []
    widths: list[int] = []
    seen: set[int] = set()

    def walk(layer: Any, path: str) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        name = type(layer).__name__
        counts[name] = counts.get(name, 0) + 1
        if len(modules) < MAX_MODULES:
            modules.append([path or "(model)", name])
        if hasattr(layer, "kernel_size") and hasattr(layer, "strides"):
            convs.append([path, name, list(layer.kernel_size), list(layer.strides), int(getattr(layer, "groups", 1) or 1), 0])
        try:
            shape = _shape(layer.output) if path else None
        except (AttributeError, ValueError, RuntimeError):
            shape = None
        if shape and len(shape) >= 2 and None not in shape[1:]:
            widths.append(math.prod(shape[1:]))
        for child in getattr(layer, "layers", None) or []:
            walk(child, f"{path}.{child.name}" if path else child.name)
        for attr in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, attr, None)
            if inner is not None and not isinstance(inner, (list, tuple)) and hasattr(inner, "name"):
                walk(inner, f"{path}.{inner.name}" if path else inner.name)

    walk(model, "")
    return modules, counts, convs, (min(widths) if widths else None)


def keras_loss(model: Any) -> list[str]:
    loss = getattr(model, "loss", None)
    items = list(loss.values()) if isinstance(loss, dict) else list(loss) if isinstance(loss, (list, tuple)) else [loss]
    names = []
    for item in items:
        if item is None:
            continue
        names.append(item if isinstance(item, str) else getattr(item, "__name__", None) or type(item).__name__)
    return names


def keras_forward(model: Any, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(inputs, training=False)
    if isinstance(inputs, (tuple, list)):
        return model(list(inputs), training=False)
    return model(inputs, training=False)


def keras_policy() -> Optional[str]:
    try:
        import keras

        return str(keras.mixed_precision.global_policy().name)
    except Exception:  # noqa: BLE001 - a fact we could not read is left out
        return None


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def collect(program: Any, framework: str, wants: set[str]) -> dict:
    """Every fact about ``program`` (an imported module that follows the contract)."""
    result: dict[str, Any] = {}
    model = program.build_model()
    batch = program.example_batch()
    inputs, targets = split_batch(batch)
    result["inputs"] = tensors(inputs)
    result["targets"] = tensors(targets)
    if framework == "tensorflow":
        modules, counts, convs, min_width = keras_modules(model)
        result["policy"] = keras_policy()
        result["losses"] = keras_loss(model)
        out = keras_forward(model, inputs)
        result["graph"] = {"min_width": min_width}
        result["classes"] = [c.__name__ for c in type(model).__mro__]
    else:
        modules, counts, convs = torch_modules(model)
        result["losses"] = torch_losses(program, model)
        first = _roots(model)[0][1]
        result["classes"] = [c.__name__ for c in type(first).__mro__]
        out, graph = torch_forward(model, inputs, "graph" in wants)
        if graph is not None:
            result["graph"] = graph
    result["pretrained"] = "PreTrainedModel" in result["classes"]
    result.update(modules=modules, counts=counts, convs=convs, module_count=sum(counts.values()))
    result["outputs"] = tensors(out)
    return result


def main(argv: list[str]) -> int:
    framework = argv[1] if len(argv) > 1 else "torch"
    wants = set(json.loads(argv[2])) if len(argv) > 2 else set()
    try:
        spec = importlib.util.spec_from_file_location("program", "program.py")
        program = importlib.util.module_from_spec(spec)
        sys.modules["program"] = program
        spec.loader.exec_module(program)
        result = collect(program, framework, wants)
    except BaseException as exc:  # noqa: BLE001 - reported as the check's failure
        result = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
        traceback.print_exc()
    print("@@RESULT@@" + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
