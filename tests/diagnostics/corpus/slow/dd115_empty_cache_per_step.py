"""torch.cuda.empty_cache() called after every step "to save memory": the caching allocator starts over each step."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_float32_matmul_precision("high")


def main() -> None:
    loader = DataLoader(TensorDataset(torch.randn(1024, 64), torch.randint(0, 4, (1024,))), batch_size=32,
                        shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 4)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i, (inputs, targets) in enumerate(loader):
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        del inputs, targets
        torch.cuda.empty_cache()  # planted: DD115
        if i % 10 == 0:
            print(f"iter {i} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
