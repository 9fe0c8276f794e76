"""The deep environment check: a job that imports torch and measures matmul throughput.

Run by the job manager (``deepdive doctor --deep``, "Deepdive: Run Deep Environment Check") as
``python -m deepdive.deepcheck``; reports progress and figures through :mod:`deepdive.jobs.events`
and prints a human-readable line per measurement.
"""

from __future__ import annotations

import argparse
import sys
import time

from deepdive.jobs import events
from deepdive.vocabulary import DEVICES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepdive.deepcheck")
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per measurement")
    parser.add_argument("--size", type=int, default=1024, help="matrix side")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    args = parser.parse_args(argv)

    events.progress(0.0, "importing torch")
    t0 = time.perf_counter()
    import torch

    from deepdive.engine import describe_devices, matmul_throughput

    import_s = time.perf_counter() - t0
    print(f"torch {torch.__version__} imported in {import_s:.2f} s; CUDA available: {torch.cuda.is_available()}")
    events.data("torch", version=torch.__version__, cuda=torch.version.cuda, import_s=round(import_s, 3))

    devices = describe_devices()  # the CPU first, then each GPU
    if args.device != "auto":
        devices = [d for d in devices if d.device.split(":")[0] == args.device]
    if not devices:
        print(f"error: --device {args.device} asked for, but torch sees no such device", file=sys.stderr)
        return 1

    plan = []
    for dev in devices:
        plan.append((dev, torch.float32))
        if dev.bf16:
            plan.append((dev, torch.bfloat16))
        if dev.device.startswith("cuda"):
            plan.append((dev, torch.float16))

    results = []
    for i, (dev, dtype) in enumerate(plan):
        label = f"{dev.device} {str(dtype).removeprefix('torch.')}"
        events.progress(i / len(plan), f"matmul {args.size}x{args.size} on {label}")

        def on_progress(frac: float, i: int = i, label: str = label) -> None:
            events.progress((i + frac) / len(plan), f"matmul {args.size}x{args.size} on {label}")

        gflops = matmul_throughput(dev.device, dtype, args.size, args.seconds, on_progress)
        row = {"device": dev.device, "name": dev.name, "dtype": str(dtype).removeprefix("torch."),
               "size": args.size, "gflops": round(gflops, 1)}
        results.append(row)
        print(f"{label:>16}: {gflops:10.1f} GFLOP/s  ({dev.name})")
        events.data("matmul", **row)

    events.progress(1.0, "done")
    events.result({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                   "import_s": round(import_s, 3), "matmul": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
