"""Plain fp32 GPU training: no autocast and the default ("highest") fp32 matmul precision, so no TF32 either."""

import torch
from torch import nn, optim

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        self.out = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def main() -> None:
    torch.manual_seed(0)
    X = torch.randn(4096, 32, device=device)
    Y = X.sin().sum(1, keepdim=True)
    model = Regressor().to(device)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    for it in range(40):  # planted: DD143
        idx = torch.randint(len(X), (128,), device=device)
        loss = nn.functional.mse_loss(model(X[idx]), Y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % 10 == 0:
            print(f"it {it} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
