"""The ``bench_amp`` part: ``bench/bench_amp.py`` on a transformer block, its lines taken as this part's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from deepdive.gpu_check_parts.context import Context, Skip


def bench_amp(ctx: Context) -> dict[str, Any]:
    """``bench/bench_amp.py`` on a transformer block; its lines become this part's figures."""
    script = Path(__file__).resolve().parents[2] / "bench" / "bench_amp.py"
    if not script.exists():
        raise Skip(f"{script} is not here: run make gpu-check in a checkout of the repository")
    args = ["--device", ctx.device, "--models", "transformer"]
    if not ctx.cuda:
        args += ["--sizes", "spec", "--warmup", "0", "--steps", "1", "--dtypes", "bf16"]  # a rehearsal: it runs
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False)
    found = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for line in found:
        ctx.lines.append({**line, "check": ctx.part})
    wanted = {("bf16", s) for s in ("spec", "large")} | {("fp16", s) for s in ("spec", "large")} if ctx.cuda \
        else {("bf16", "spec")}
    got = {(line["metric"].split("_step_")[1].split("_")[0], line["sizes"]) for line in found}
    detail = {"returncode": proc.returncode, "ratios": {f"{line['metric']}@{line['sizes']}": line["ratio"]
                                                        for line in found},
              "stderr_tail": proc.stderr.strip().splitlines()[-3:]}
    ctx.expect(proc.returncode == 0, f"bench_amp.py exited with status {proc.returncode}", **detail)
    ctx.expect(wanted <= got, f"bench_amp.py measured {sorted(got)}, not {sorted(wanted)}", **detail)
    return detail
