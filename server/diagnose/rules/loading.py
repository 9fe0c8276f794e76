"""Rules about feeding the step: the DataLoader's workers and pinned memory, and the host→device copies of each
batch (DD101–DD104)."""

from __future__ import annotations

import ast
import re
from typing import Iterator, Optional

from deepdive.diagnose.rules.base import Context, Edit, Finding, Fix, keyword, rule
from deepdive.diagnose.rules.rewrite import add_keyword, has_double_star, literal_int
from deepdive.diagnose.rules.values import Values, values_of

_DATALOADERS = {"torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader"}
_TENSOR_DATASET = {"torch.utils.data.TensorDataset", "torch.utils.data.dataset.TensorDataset"}
_FACTORIES = {"zeros", "ones", "tensor", "arange", "randn", "rand", "randint", "full", "empty", "eye", "linspace",
              "logspace", "as_tensor", "randperm"}
_DTYPE_NAME = re.compile(r"(dtype|float|half|bfloat16|double|int(8|16|32|64)?|long|short|bool|uint8|complex\d*)$")
_DEVICE_NAME = re.compile(r"(device|^dev$|^gpu$|rank$)")


def dataloaders(ctx: Context) -> Iterator[ast.Call]:
    """Every ``DataLoader(...)`` call, under whatever name the imports give it."""
    values = values_of(ctx)
    for call in values_of(ctx).calls:
        if values.resolve(call.func) in _DATALOADERS:
            yield call


def _dataset_argument(call: ast.Call) -> Optional[ast.AST]:
    if call.args:
        return call.args[0]
    found = keyword(call, "dataset")
    return found.value if found is not None else None


def _tensor_dataset_calls(ctx: Context, values: Values, dataset: Optional[ast.AST]) -> list[ast.Call]:
    """The ``TensorDataset(...)`` call(s) ``dataset`` is, directly or through a name bound to one (or to a function
    of this file declared to return TensorDatasets); empty when it is anything else."""
    if dataset is None:
        return []
    typed_functions = values.functions_returning("TensorDataset")
    if isinstance(dataset, ast.Call):
        if values.resolve(dataset.func) in _TENSOR_DATASET:
            return [dataset]
        return []
    if isinstance(dataset, ast.Subscript) and isinstance(dataset.value, ast.Call):
        # load_data()[0], with load_data() -> tuple[TensorDataset, TensorDataset]
        return [dataset.value] if values.resolve(dataset.value.func) in typed_functions else []
    if not isinstance(dataset, ast.Name):
        return []
    scope: ast.AST = ctx.enclosing_function(dataset) or ctx.tree
    entries = values.bindings(scope).get(dataset.id, [])
    before = [entry for entry in entries if entry[0] <= dataset.lineno] or entries
    if not before:
        return []
    _, value, how = before[-1]
    if isinstance(value, ast.Call) and how in {"=", "[]"}:
        full = values.resolve(value.func)
        if (full in _TENSOR_DATASET and how == "=") or full in typed_functions:
            return [value]
    return []


def _holds_device_tensors(ctx: Context, calls: list[ast.Call]) -> bool:
    """The TensorDataset's tensors were built on or moved to a device (pinning them would fail)."""
    values = values_of(ctx)
    for call in calls:
        text = ctx.text(call)
        scope: ast.AST = ctx.enclosing_function(call) or ctx.tree
        bindings = values.bindings(scope)
        for argument in call.args:
            if isinstance(argument, ast.Name):
                text += "".join(ctx.text(value) for _, value, how in bindings.get(argument.id, []) if how != "for")
        if re.search(r"device|\.cuda\(|\.to\(", text):
            return True
    return False


@rule("DD101", "dataloader-no-workers", "DataLoader without worker processes in a training script",
      category="data_wait", fixable=True)
def dataloader_no_workers(ctx: Context) -> Iterator[Finding]:
    """A ``DataLoader`` with ``num_workers`` missing or 0, in a file that trains.

    Why: with no workers, the training process itself reads, decodes and collates every batch between two
    steps, and the accelerator waits for it (the measured diagnosis shows it as *data wait*). Worker
    processes prepare the next batches while the current step runs. A ``TensorDataset`` is left alone: its
    batches are slices of tensors already in memory, and workers would only add inter-process copies.

    Fix: pass ``num_workers`` (4 is a sound start; up to the CPU cores you can spare) and
    ``persistent_workers=True`` so the workers survive from one epoch to the next. On macOS and Windows, worker
    processes re-import the script: keep the training code under ``if __name__ == "__main__":``.

    ```python
    # before
    loader = DataLoader(dataset, batch_size=64, shuffle=True)
    # after
    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4, persistent_workers=True)
    ```
    """
    if not ctx.step_loops:
        return
    values = values_of(ctx)
    for call in dataloaders(ctx):
        if has_double_star(call):
            continue
        if _tensor_dataset_calls(ctx, values, _dataset_argument(call)):
            continue
        workers = keyword(call, "num_workers")
        value = workers.value if workers is not None else (call.args[5] if len(call.args) > 5 else None)
        if value is not None and literal_int(value) != 0:
            continue
        persistent = keyword(call, "persistent_workers")
        extra = ", persistent_workers=True" if persistent is None else ""
        if value is None:
            edits = (add_keyword(ctx, call, "num_workers=4" + extra),)
            what = "without num_workers"
        else:
            edits = (ctx.replace(value, "4"),) + ((add_keyword(ctx, call, extra[2:]),) if extra else ())
            what = "with num_workers=0"
        yield ctx.finding(
            "DD101", call,
            f"DataLoader {what} loads every batch in the training process: pass num_workers=4"
            + (" (and persistent_workers=True)" if extra else ""),
            fix=Fix(title="Load batches in 4 worker processes (num_workers=4"
                    + (", persistent_workers=True)" if extra else ")"), edits=edits))


def _moves_batches(ctx: Context, values: Values) -> bool:
    """Some step loop copies something that is not the model to a device, or iterates ``run.batches(...)``."""
    for loop in ctx.step_loops:
        if isinstance(loop, (ast.For, ast.AsyncFor)) and isinstance(loop.iter, ast.Call) \
                and isinstance(loop.iter.func, ast.Attribute) and loop.iter.func.attr == "batches":
            return True
        for call in ctx.calls(loop):
            if device_move(values, call) is not None and isinstance(call.func, ast.Attribute) \
                    and not values.is_module(call.func.value):
                return True
    return False


@rule("DD102", "dataloader-no-pin", "DataLoader feeding a GPU without pinned memory", category="copies",
      fixable=True, cuda_only=True)
def dataloader_no_pin(ctx: Context) -> Iterator[Finding]:
    """A ``DataLoader`` whose batches are copied to the GPU, without ``pin_memory=True``.

    Why: a copy from ordinary (pageable) host memory is staged through a pinned buffer by the driver and
    blocks the host; from pinned memory the copy is one DMA transfer that can overlap the running step
    (with ``non_blocking=True``, DD103). The measured diagnosis counts the copies under *copies*.

    Fix: ask the loader to pin its batches.

    ```python
    # before
    loader = DataLoader(dataset, batch_size=64, num_workers=4)
    # after
    loader = DataLoader(dataset, batch_size=64, num_workers=4, pin_memory=True)
    ```
    """
    values = values_of(ctx)
    if not ctx.step_loops or not _moves_batches(ctx, values):
        return
    for call in dataloaders(ctx):
        if has_double_star(call):
            continue
        pin = keyword(call, "pin_memory")
        if pin is not None and not (isinstance(pin.value, ast.Constant) and pin.value.value is False):
            continue
        tensors = _tensor_dataset_calls(ctx, values, _dataset_argument(call))
        if tensors and _holds_device_tensors(ctx, tensors):
            continue
        edit = add_keyword(ctx, call, "pin_memory=True") if pin is None else ctx.replace(pin.value, "True")
        yield ctx.finding("DD102", call, "DataLoader batches go to the GPU from pageable memory: pass pin_memory=True",
                          fix=Fix(title="Pin the loader's batches (pin_memory=True)", edits=(edit,)))


def _is_device(values: Values, node: ast.AST) -> bool:
    """``node`` names an accelerator device (``"cuda"``, ``device``, ``x.device``, ``torch.device(...)``), not the
    CPU and not a dtype."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.split(":")[0] in {"cuda", "mps", "xpu"} or (
            isinstance(node.value, int) and not isinstance(node.value, bool))
    if isinstance(node, ast.JoinedStr):
        first = node.values[0] if node.values else None
        return isinstance(first, ast.Constant) and str(first.value).startswith("cuda")
    if isinstance(node, ast.Call):
        return values.resolve(node.func) == "torch.device" and not (
            node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "cpu")
    if isinstance(node, (ast.Name, ast.Attribute)):
        last = node.id if isinstance(node, ast.Name) else node.attr
        full = values.resolve(node)
        if full.startswith("torch.") or _DTYPE_NAME.search(last.lower()):
            return False
        return bool(_DEVICE_NAME.search(last.lower()))
    return False


def device_move(values: Values, call: ast.Call) -> Optional[ast.AST]:
    """For ``x.cuda(...)`` or ``x.to(<device>, ...)``: the device expression (the call itself for ``.cuda()``);
    None for any other call, and for ``.to`` calls that change the dtype or the memory format only."""
    func = call.func
    if not isinstance(func, ast.Attribute):
        return None
    if func.attr == "cuda":
        return call
    if func.attr != "to":
        return None
    target = keyword(call, "device")
    candidate = target.value if target is not None else (call.args[0] if call.args else None)
    if candidate is not None and _is_device(values, candidate):
        return candidate
    return None


@rule("DD103", "to-device-blocking", "Batch copied to the GPU without non_blocking=True in the step loop",
      category="copies", fixable=True, cuda_only=True)
def to_device_blocking(ctx: Context) -> Iterator[Finding]:
    """A batch moved with ``x.to(device)`` or ``x.cuda()`` on every step, without ``non_blocking=True``.

    Why: a blocking host→device copy makes the Python thread wait until the copy is done, so the host cannot
    queue the forward pass meanwhile. From pinned memory (``pin_memory=True``, DD102) a non-blocking copy
    runs asynchronously and overlaps with the work already queued; the kernels that read the batch run after
    it on the same stream, so the result is the same.

    Fix: pass ``non_blocking=True`` (and pin the loader's memory).

    ```python
    # before
    x, y = x.to(device), y.to(device)
    # after
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    ```
    """
    values = values_of(ctx)
    for call in values_of(ctx).calls:
        func = call.func
        if not isinstance(func, ast.Attribute) or device_move(values, call) is None:
            continue
        receiver = func.value
        if values.is_module(receiver) or values.is_tensor(receiver) or _factory(values, receiver) is not None:
            continue
        flag = keyword(call, "non_blocking")
        if flag is not None and not (isinstance(flag.value, ast.Constant) and flag.value.value is False):
            continue
        if has_double_star(call) or not values_of(ctx).per_step(call):
            continue
        edit = add_keyword(ctx, call, "non_blocking=True") if flag is None else ctx.replace(flag.value, "True")
        yield ctx.finding("DD103", call, f"`{ctx.text(call)}` blocks the host on every step: pass non_blocking=True "
                          "(with pin_memory=True on the loader)",
                          fix=Fix(title="Copy asynchronously (non_blocking=True)", edits=(edit,)))


def _factory(values: Values, node: ast.AST) -> Optional[str]:
    """The factory's name when ``node`` is ``torch.zeros(...)``-like, else None."""
    if isinstance(node, ast.Call):
        full = values.resolve(node.func)
        if full.startswith("torch.") and full.count(".") == 1 and full[6:] in _FACTORIES:
            return full[6:]
    return None


@rule("DD104", "cpu-tensor-moved", "Tensor built on the CPU and moved to the device on every step",
      category="copies", fixable=True)
def cpu_tensor_moved(ctx: Context) -> Iterator[Finding]:
    """``torch.zeros(...).to(device)`` (or another factory, or ``.cuda()``) inside the step loop.

    Why: the tensor is filled on the CPU, then copied to the device, every step: a host allocation, a fill and
    a host→device transfer (that blocks the host) for something the device can create in place.

    Fix: create it on the device with the factory's ``device=`` argument.

    ```python
    # before
    mask = torch.ones(batch, seq).to(device)
    # after
    mask = torch.ones(batch, seq, device=device)
    ```
    """
    values = values_of(ctx)
    for call in values_of(ctx).calls:
        func = call.func
        if not isinstance(func, ast.Attribute):
            continue
        device = device_move(values, call)
        factory = _factory(values, func.value)
        if device is None or factory is None:
            continue
        built = func.value
        assert isinstance(built, ast.Call)
        if keyword(built, "device") is not None or has_double_star(built) or has_double_star(call):
            continue
        extra = [kw for kw in call.keywords if kw.arg not in {"device", "non_blocking", "copy"}]
        if extra or len(call.args) > 1 or (call.args and keyword(call, "device") is not None):
            continue
        if not values_of(ctx).per_step(call):
            continue
        if device is call:  # .cuda() / .cuda(i)
            device_text = ctx.text(call.args[0]) if call.args else '"cuda"'
        else:
            device_text = ctx.text(device)
        _, _, built_end_line, built_end_col = ctx.span(built)
        _, _, end_line, end_col = ctx.span(call)
        edits = (add_keyword(ctx, built, f"device={device_text}"),
                 Edit(built_end_line, built_end_col, end_line, end_col, ""))
        yield ctx.finding("DD104", call,
                          f"torch.{factory}(...) is built on the CPU and copied to the device every step: "
                          f"pass device={device_text} to torch.{factory}",
                          fix=Fix(title=f"Create it on the device (torch.{factory}(..., device={device_text}))",
                                  edits=edits))
