"""Batches moved to the GPU with blocking copies although the loader pins memory."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_float32_matmul_precision("high")


def main() -> None:
    features, targets = torch.randn(1600, 40), torch.randn(1600, 1)
    loader = DataLoader(TensorDataset(features, targets), batch_size=50, shuffle=True, num_workers=2,
                        pin_memory=True, persistent_workers=True)
    net = nn.Sequential(nn.Linear(40, 64), nn.Tanh(), nn.Linear(64, 1)).to(device)
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-3)
    loss_fn = nn.SmoothL1Loss()
    for batch, (inputs, labels) in enumerate(loader):
        inputs, labels = inputs.to(device), labels.to(device)  # planted: DD103
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_fn(net(inputs), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if batch % 10 == 0:
            print(f"batch {batch} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
