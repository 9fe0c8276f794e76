"""Precision rules: fp32 training on a GPU (no autocast, no TF32) and the deprecated ``torch.cuda.amp`` spellings.

The two "what precision does this script train in" rules form a ladder, so a script gets one of them at a time:
a step loop with neither autocast nor TF32 matmuls gets DD143 (a one-line fix: allow TF32); once TF32 is decided
(``torch.set_float32_matmul_precision(...)`` or ``torch.backends.cuda.matmul.allow_tf32 = ...``) and there is
still no autocast, DD140 asks for autocast. A script that uses the deepdive engine has both decided by
``dd.setup(precision=...)`` and gets neither.
"""

from __future__ import annotations

import ast
from typing import Iterable, Iterator, Optional

from deepdive.diagnose.rules.base import Context, Finding, Fix, Loop, dotted_name, rule
from deepdive.diagnose.rules.rewrite import after_imports, header_finding, torch_name

_REDUCED_DTYPES = {"bfloat16", "float16", "half"}


def uses_autocast(ctx: Context) -> bool:
    """The file calls an ``autocast`` (torch.autocast, torch.amp/cuda.amp.autocast, the engine's run.autocast), hands
    the precision to Accelerate (``Accelerator(mixed_precision=...)``) or trains in a reduced dtype outright
    (``model.half()``, ``torch.bfloat16``): its matmuls are not all fp32."""
    for call in ctx.calls():
        name = _last_name(call)
        if name == "autocast":
            return True
        # Hugging Face Accelerate decides the precision itself: Accelerator(mixed_precision="bf16")
        if name == "Accelerator" and any(kw.arg == "mixed_precision" for kw in call.keywords):
            return True
    return any(node.attr in _REDUCED_DTYPES for node in ctx.nodes_of(ast.Attribute))


def _last_name(call: ast.Call) -> str:
    """``f`` for ``a.b.f(...)`` and ``f(...)``; '' for other callees (cheap: no dotted name is built)."""
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def decides_tf32(ctx: Context) -> bool:
    """The file chooses the fp32 matmul precision itself: a ``set_float32_matmul_precision(...)`` call or an assignment
    to ``….matmul.allow_tf32`` (either value: a fix inserted after the imports would be overridden anyway)."""
    if any(_last_name(call) == "set_float32_matmul_precision" for call in ctx.calls()):
        return True
    targets = [t for node in ctx.nodes_of(ast.Assign) for t in node.targets]
    targets += [node.target for node in ctx.nodes_of(ast.AnnAssign)]
    return any(dotted_name(target).endswith("matmul.allow_tf32") for target in targets)


def per_step_loops(ctx: Context) -> list[Loop]:
    """The innermost step loops (a step loop holding no other step loop): the per-step loops of the file."""
    loops = ctx.step_loops
    ids = {id(loop) for loop in loops}
    holding = {id(a) for loop in loops for a in ctx.ancestors(loop) if id(a) in ids}
    return sorted((loop for loop in loops if id(loop) not in holding), key=lambda loop: loop.lineno)


def _fp32_step_loops(ctx: Context) -> list[Loop]:
    """The per-step loops of a script that trains in fp32 on its own (no engine, no autocast, no reduced dtype)."""
    loops = per_step_loops(ctx)
    if not loops or ctx.uses_engine or uses_autocast(ctx):
        return []
    return loops


@rule("DD140", "no-amp", "A GPU training loop runs every op in fp32: no autocast", category="forward", fixable=False,
      cuda_only=True)
def no_amp(ctx: Context) -> Iterable[Finding]:
    """A GPU training loop runs every op in fp32: no autocast.

    Why: bf16/fp16 autocast runs matmuls and convolutions on the tensor cores, whose 16-bit peak rate is twice the
    TF32 one on NVIDIA's data-centre GPUs, and halves the memory of the activations it produces. Shown on the step
    loop of a CUDA script that already decided its fp32 matmul precision (TF32) and has no ``autocast`` anywhere (a
    script with neither gets DD143 first).

    Fix: wrap the forward pass and the loss in ``torch.autocast``; bf16 (Ampere or newer) needs no loss scaling:

    ```python
    # before
    out = model(x)
    loss = criterion(out, y)
    # after
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
        loss = criterion(out, y)
    ```
    """
    if not decides_tf32(ctx):
        return
    for loop in _fp32_step_loops(ctx):
        yield header_finding(ctx, "DD140", loop, "fp32 training on a GPU: wrap forward+loss in "
                             "torch.autocast('cuda', dtype=torch.bfloat16) (bf16 on Ampere or newer)")


@rule("DD143", "no-tf32", "A GPU training loop runs fp32 matmuls without TF32", category="forward", fixable=True,
      cuda_only=True)
def no_tf32(ctx: Context) -> Iterable[Finding]:
    """A GPU training loop runs fp32 matmuls without TF32.

    Why: without autocast every matmul is fp32, and by default PyTorch runs fp32 matmuls at full fp32 precision,
    leaving the TF32 tensor cores (Ampere and newer; an A100's datasheet gives 156 TFLOPS TF32 against 19.5 TFLOPS
    fp32) unused. Shown on the step loop of a CUDA script with no autocast that never sets the fp32 matmul precision.

    Fix: allow TF32 once, after the imports (then consider autocast, DD140):

    ```python
    # before
    import torch
    # after
    import torch
    torch.set_float32_matmul_precision("high")
    ```
    """
    if decides_tf32(ctx):
        return
    loops = _fp32_step_loops(ctx)
    if not loops:
        return
    fix = Fix('insert torch.set_float32_matmul_precision("high") after the imports',
              tuple(after_imports(ctx, 'torch.set_float32_matmul_precision("high")')))
    for loop in loops:
        yield header_finding(ctx, "DD143", loop, "fp32 matmuls without TF32 on a GPU: call "
                             "torch.set_float32_matmul_precision(\"high\") after the imports", fix=fix)


def _calls_to(ctx: Context, *dotted: str) -> Iterator[ast.Call]:
    names: set[str] = set()
    for name in dotted:
        names |= ctx.imported_as(name)
    yield from ctx.calls_named(names)


def _rebuilt_call(ctx: Context, call: ast.Call, func: str, first: str, positional_names: Optional[tuple[str, ...]]
                  ) -> Optional[str]:
    """``func(first, <the call's arguments>)``; with ``positional_names`` the positional arguments become keywords of
    those names (the new function orders them differently). None when an argument cannot be carried over."""
    parts = [first]
    for index, arg in enumerate(call.args):
        if isinstance(arg, ast.Starred):
            return None
        if positional_names is None:
            parts.append(ctx.text(arg))
        elif index < len(positional_names):
            parts.append(f"{positional_names[index]}={ctx.text(arg)}")
        else:
            return None
    for kw in call.keywords:
        parts.append(f"**{ctx.text(kw.value)}" if kw.arg is None else f"{kw.arg}={ctx.text(kw.value)}")
    return f"{func}({', '.join(parts)})"


def _deprecated_amp_fix(ctx: Context, call: ast.Call, new: str, positional_names: Optional[tuple[str, ...]],
                        title: str) -> Optional[Fix]:
    name, imports = torch_name(ctx)
    text = _rebuilt_call(ctx, call, f"{name}.{new}", '"cuda"', positional_names)
    if text is None:
        return None
    return Fix(title, (*imports, ctx.replace(call, text)))


@rule("DD141", "cuda-amp-autocast-deprecated", "torch.cuda.amp.autocast(...) is deprecated", category="precision",
      fixable=True)
def cuda_amp_autocast(ctx: Context) -> Iterable[Finding]:
    """``torch.cuda.amp.autocast(...)`` is deprecated.

    Why: PyTorch marks it deprecated (a ``FutureWarning``) and will remove it; the device-generic
    ``torch.amp.autocast`` does the same thing. Its positional arguments differ (the device comes first), so the fix
    passes the old ones by name.

    Fix:

    ```python
    # before
    with torch.cuda.amp.autocast(dtype=torch.bfloat16):
    # after
    with torch.amp.autocast("cuda", dtype=torch.bfloat16):
    ```
    """
    for call in _calls_to(ctx, "torch.cuda.amp.autocast", "torch.cuda.amp.autocast_mode.autocast"):
        fix = _deprecated_amp_fix(ctx, call, "amp.autocast", ("enabled", "dtype", "cache_enabled"),
                                  'use torch.amp.autocast("cuda", ...)')
        yield ctx.finding("DD141", call, 'torch.cuda.amp.autocast(...) is deprecated: use '
                          'torch.amp.autocast("cuda", ...)', fix=fix)


@rule("DD142", "cuda-amp-gradscaler-deprecated", "torch.cuda.amp.GradScaler(...) is deprecated",
      category="precision", fixable=True)
def cuda_amp_gradscaler(ctx: Context) -> Iterable[Finding]:
    """``torch.cuda.amp.GradScaler(...)`` is deprecated.

    Why: PyTorch marks it deprecated (a ``FutureWarning``) and will remove it; ``torch.amp.GradScaler`` takes the
    device as its first argument and is otherwise the same.

    Fix:

    ```python
    # before
    scaler = torch.cuda.amp.GradScaler(init_scale=2.0**14)
    # after
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**14)
    ```
    """
    for call in _calls_to(ctx, "torch.cuda.amp.GradScaler", "torch.cuda.amp.grad_scaler.GradScaler"):
        fix = _deprecated_amp_fix(ctx, call, "amp.GradScaler", None, 'use torch.amp.GradScaler("cuda", ...)')
        yield ctx.finding("DD142", call, 'torch.cuda.amp.GradScaler(...) is deprecated: use '
                          'torch.amp.GradScaler("cuda", ...)', fix=fix)

