"""A hand-written block whose self.conv keeps its bias before self.bn (applied as bn(conv(x)))."""

import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=5, padding=2)  # planted: DD152
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class AudioNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block(1, 16)
        self.pool = nn.AdaptiveMaxPool1d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.block(wave)).squeeze(-1))


def main() -> None:
    torch.manual_seed(0)
    t = torch.linspace(0, 1, 400)
    freqs = torch.randint(0, 3, (600,))
    waves = torch.sin(2 * torch.pi * (5 + 10 * freqs[:, None]) * t) + 0.3 * torch.randn(600, 400)
    model = AudioNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(30):
        idx = torch.randint(0, 600, (32,))
        loss = F.cross_entropy(model(waves[idx, None]), freqs[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
