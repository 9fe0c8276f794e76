"""Per-step timing with torch.cuda.synchronize() on every step: the CPU waits for the GPU to drain each time.

corpus: needs-cuda (torch.cuda.synchronize() raises on a machine without CUDA)
"""

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

device = "cuda"
torch.set_float32_matmul_precision("high")


def main() -> None:
    data = TensorDataset(torch.randn(2048, 256), torch.randint(0, 10, (2048,)))
    loader = DataLoader(data, batch_size=64, shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 10)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step_times = []
    for step, (x, y) in enumerate(loader):
        start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()  # planted: DD114
        step_times.append(time.perf_counter() - start)
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.3f} {1e3 * step_times[-1]:.2f} ms/step")


if __name__ == "__main__":
    main()
