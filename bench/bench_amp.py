"""Mixed-precision speed-up: training step time fp32 / bf16 (and fp16 on CUDA) for two models.

A step is forward + backward + AdamW step, under ``torch.autocast(device_type, dtype)`` for the
low-precision runs (fp32 master weights, as the engine does); fp16 uses ``torch.amp.GradScaler``.
Each measurement runs warm-up steps, then times steps one by one (synchronising CUDA) and takes
the median. One JSON line per low-precision measurement: ``value`` is its median step time (ms),
``baseline`` the fp32 median step time (ms) of the same model, ``ratio`` = fp32 / low precision;
``min_ms``, ``baseline_min_ms`` and ``ratio_min`` give the same for the fastest steps.

Models and sizes (``--sizes``; ``auto`` is ``spec`` on the CPU, ``spec`` then ``large`` on CUDA):

* ``transformer``: one ``nn.TransformerEncoderLayer`` (pre-norm, GELU, no dropout) and an MSE loss.
  ``spec``: d_model 512, 8 heads, feed-forward 2048, seq 128, batch 16. ``large``: d_model 1024,
  16 heads, feed-forward 4096, seq 512, batch 32.
* ``cnn``: a small ResNet (stem, three stages of two basic blocks, 32/64/128 channels, BatchNorm)
  on 3x64x64 images, 10 classes, cross-entropy. ``spec``: batch 32. ``large``: batch 256.
  ``cnn_cl``: the same in ``channels_last`` memory format, the layout that oneDNN and cuDNN prefer
  for low-precision convolutions.

The whole CPU run (spec sizes, 3 warm-up and 5 timed steps, six configurations) takes about 20 s
on 2 idle cores; other load on the machine stretches it and scatters the figures (``min_ms``).

On CUDA the fp32 baseline runs with torch's defaults: matmuls in full fp32 (TF32 off), cuDNN
convolutions allowed TF32; each line states both (``tf32_matmul``, ``tf32_cudnn``).

Usage: python bench/bench_amp.py [--device auto|cpu|cuda] [--sizes auto|spec|large]
[--models transformer,cnn,cnn_cl] [--warmup 3] [--steps 5] [--dtypes bf16,fp16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn

from deepdive.cpuinfo import cpu_has_native_bf16

SIZES = {
    "transformer": {
        "spec": dict(d_model=512, heads=8, ff=2048, seq=128, batch=16),
        "large": dict(d_model=1024, heads=16, ff=4096, seq=512, batch=32),
    },
    "cnn": {
        "spec": dict(batch=32, image=64),
        "large": dict(batch=256, image=64),
    },
}
SIZES["cnn_cl"] = SIZES["cnn"]  # the same CNN, weights and images in channels_last memory format
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


def small_resnet(classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
    cin = 32
    for cout, stride in ((32, 1), (64, 2), (128, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def build(model: str, size: dict, device: torch.device):
    """The model, its inputs, targets and loss function, on ``device``."""
    gen = torch.Generator().manual_seed(0)
    if model == "transformer":
        net = nn.TransformerEncoderLayer(size["d_model"], size["heads"], size["ff"], dropout=0.0,
                                         activation="gelu", batch_first=True, norm_first=True)
        x = torch.randn(size["batch"], size["seq"], size["d_model"], generator=gen)
        y = torch.randn(size["batch"], size["seq"], size["d_model"], generator=gen)
        loss_fn = nn.functional.mse_loss
    else:
        net = small_resnet()
        x = torch.randn(size["batch"], 3, size["image"], size["image"], generator=gen)
        y = torch.randint(0, 10, (size["batch"],), generator=gen)
        loss_fn = nn.functional.cross_entropy
        if model == "cnn_cl":
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
    return net.to(device), x.to(device), y.to(device), loss_fn


def step_times(model: str, size: dict, device: torch.device, dtype: str | None, warmup: int, steps: int) -> list[float]:
    """Seconds per training step, ``steps`` of them after ``warmup``; ``dtype`` None is plain fp32."""
    torch.manual_seed(0)
    net, x, y, loss_fn = build(model, size, device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type) if dtype == "fp16" else None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def one_step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=DTYPES.get(dtype, torch.bfloat16), enabled=dtype is not None):
            loss = loss_fn(net(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    for _ in range(warmup):
        one_step()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        one_step()
        sync()
        times.append(time.perf_counter() - start)
    del net, opt, x, y
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return times


def device_facts(device: torch.device) -> dict:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"device": props.name, "capability": f"{props.major}.{props.minor}",
                "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}
    return {"device": "cpu", "threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto: the CPU, then CUDA when torch sees a GPU")
    parser.add_argument("--sizes", default="auto", choices=["auto", "spec", "large"])
    parser.add_argument("--models", default="transformer,cnn,cnn_cl")
    parser.add_argument("--dtypes", default=None,
                        help="low precisions to compare with fp32 (default: bf16 on the CPU, bf16,fp16 on CUDA)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps first (oneDNN and cuDNN pick and cache kernels in the first ones)")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_amp: --device cuda, but torch sees no CUDA GPU (torch.cuda.is_available() is False): "
              "install a CUDA build of torch or use --device cpu", file=sys.stderr)
        return 2
    devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
               "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in SIZES]
    if unknown:
        print(f"bench_amp: unknown model {unknown[0]!r}: choose from {', '.join(SIZES)}", file=sys.stderr)
        return 2

    for kind in devices:
        device = torch.device(kind)
        dtypes = (args.dtypes.split(",") if args.dtypes else (["bf16"] if kind == "cpu" else ["bf16", "fp16"]))
        bad = [d for d in dtypes if d not in DTYPES]
        if bad:
            print(f"bench_amp: unknown dtype {bad[0]!r}: choose from {', '.join(DTYPES)}", file=sys.stderr)
            return 2
        size_names = ([args.sizes] if args.sizes != "auto" else (["spec"] if kind == "cpu" else ["spec", "large"]))
        for size_name in size_names:
            for model in models:
                size = SIZES[model][size_name]
                fp32_times = step_times(model, size, device, None, args.warmup, args.steps)
                fp32 = statistics.median(fp32_times) * 1e3
                for dtype in dtypes:
                    low_times = step_times(model, size, device, dtype, args.warmup, args.steps)
                    low = statistics.median(low_times) * 1e3
                    print(json.dumps({
                        "bench": "amp", "metric": f"{model}_step_{dtype}_{kind}", "value": round(low, 3), "unit": "ms",
                        "baseline": round(fp32, 3), "ratio": round(fp32 / low, 3),
                        # The fastest steps too: on a machine shared with other work they are the
                        # least disturbed.
                        "min_ms": round(min(low_times) * 1e3, 3), "baseline_min_ms": round(min(fp32_times) * 1e3, 3),
                        "ratio_min": round(min(fp32_times) / min(low_times), 3), "sizes": size_name, **size,
                        "memory_format": "channels_last" if model == "cnn_cl" else "contiguous",
                        "steps": args.steps, "warmup": args.warmup, **device_facts(device),
                    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
