"""Debug printing left in the loop: the loss tensor printed every step (a sync plus tensor formatting)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_float32_matmul_precision("high")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 64)
        self.fc2 = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


def main() -> None:
    torch.manual_seed(0)
    x_all = torch.randn(1000, 20, device=device)
    y_all = torch.randint(0, 3, (1000,), device=device)
    net = Net().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    for epoch in range(30):
        perm = torch.randperm(1000, device=device)[:100]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(x_all[perm])
            loss = F.cross_entropy(out, y_all[perm])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print("epoch", epoch, "loss", loss)  # planted: DD112


if __name__ == "__main__":
    main()
