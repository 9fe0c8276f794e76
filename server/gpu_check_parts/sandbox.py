"""The ``codegen_gpu`` part: the sandbox shows the GPU only when allowed, and a generated program verifies."""

from __future__ import annotations

import json
from typing import Any, Optional

from deepdive.gpu_check_parts.context import Context


CODEGEN_PROMPT = "a small CNN classifier for 32x32 RGB images, 10 classes, in PyTorch"

_PROBE = """import json, torch
device = "cuda" if torch.cuda.is_available() else "cpu"
x = torch.ones(256, 256, device=device)
print(json.dumps({"cuda": torch.cuda.is_available(), "device": torch.cuda.get_device_name(0) if device == "cuda"
                  else "cpu", "sum": float((x @ x).sum())}))
"""


def _probe(allow_gpu: bool, template: Optional[str]) -> dict[str, Any]:
    from deepdive.codegen.sandbox import run_sandboxed

    res = run_sandboxed(["probe.py"], files={"probe.py": _PROBE}, timeout_s=120, memory_mb=None, allow_gpu=allow_gpu,
                        template=template)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    seen = json.loads(lines[-1]) if res.returncode == 0 and lines else None
    return {"returncode": res.returncode, "seen": seen, "isolation": res.isolation, "start": res.start,
            "stderr_tail": res.stderr.strip().splitlines()[-3:] if seen is None else []}


def codegen_gpu(ctx: Context) -> dict[str, Any]:
    """The sandbox shows the GPU only when allowed (cold and warm-template starts); a builtin program verifies."""
    from deepdive.codegen.pipeline import GenerateParams, generate

    probes = {"allowed_cold": _probe(True, None), "allowed_warm": _probe(True, "torch")}
    if ctx.cuda:  # without a GPU there is nothing to hide
        probes["hidden_cold"] = _probe(False, None)
    detail: dict[str, Any] = {"probes": probes}
    for name, probe in detail["probes"].items():
        seen = probe["seen"]
        ctx.expect(seen is not None, f"the {name} probe failed (exit {probe['returncode']})", **detail)
        wanted = ctx.cuda and name.startswith("allowed")
        ctx.expect(seen["cuda"] == wanted, f"the {name} probe {'saw' if seen['cuda'] else 'did not see'} CUDA",
                   **detail)
        ctx.expect(seen["sum"] == 256.0**3, f"the {name} probe computed {seen['sum']}", **detail)
    result = generate(GenerateParams(prompt=CODEGEN_PROMPT, backend="builtin", allow_gpu=True))
    detail["generate"] = {"verified": result.verified, "message": result.message, "seconds": result.seconds,
                          "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail[:240]} for c in result.checks]}
    ctx.expect(result.verified, f"the builtin program with the GPU allowed did not verify: {result.message}",
               **detail)
    return detail
