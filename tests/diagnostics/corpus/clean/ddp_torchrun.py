"""DDP-ready training: under torchrun it joins the process group and shards the data; alone it trains in one
process. Gradient accumulation skips the all-reduce on non-final micro-batches with no_sync()."""

import contextlib
import os

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

ACCUM = 2


def setup() -> tuple[int, int, torch.device]:
    if "WORLD_SIZE" in os.environ:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        rank, local_rank = dist.get_rank(), int(os.environ["LOCAL_RANK"])
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            return rank, dist.get_world_size(), torch.device("cuda", local_rank)
        return rank, dist.get_world_size(), torch.device("cpu")
    return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")


def main() -> None:
    rank, world, device = setup()
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")
    data = TensorDataset(torch.randn(2048, 64), torch.randint(0, 10, (2048,)))
    sampler = DistributedSampler(data, num_replicas=world, rank=rank) if world > 1 else None
    loader = DataLoader(data, batch_size=32, sampler=sampler, shuffle=sampler is None, num_workers=2,
                        pin_memory=True, persistent_workers=True)

    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 10)).to(device)
    if world > 1:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    for epoch in range(2):
        if sampler is not None:
            sampler.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            last_micro = (i + 1) % ACCUM == 0
            sync = contextlib.nullcontext() if last_micro or world == 1 else model.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    loss = F.cross_entropy(model(x), y) / ACCUM
                loss.backward()
            if last_micro:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if rank == 0 and i % 25 == 0:
                print(f"epoch {epoch} batch {i} loss {loss.item() * ACCUM:.4f}")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
