"""model.to(device) inside the step loop ("to be safe"): a walk over every parameter on each step."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def main() -> None:
    loader = DataLoader(TensorDataset(torch.randn(1024, 16), torch.randint(0, 2, (1024,))), batch_size=32,
                        shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step, (features, target) in enumerate(loader):
        model.to(device)  # planted: DD180
        features = features.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = nn.functional.cross_entropy(model(features), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
