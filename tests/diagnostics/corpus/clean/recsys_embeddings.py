"""Matrix factorisation with embedding tables on synthetic ratings; per-epoch RMSE from an inference_mode pass."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

N_USERS, N_ITEMS, DIM = 500, 300, 32
device = "cuda" if torch.cuda.is_available() else "cpu"


class MF(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.users = nn.Embedding(N_USERS, DIM)
        self.items = nn.Embedding(N_ITEMS, DIM)
        self.user_bias = nn.Embedding(N_USERS, 1)
        self.item_bias = nn.Embedding(N_ITEMS, 1)
        for table in (self.users, self.items):
            nn.init.normal_(table.weight, std=0.05)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        dot = (self.users(u) * self.items(i)).sum(-1)
        return dot + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1)


def ratings(n: int = 20_000) -> TensorDataset:
    g = torch.Generator().manual_seed(3)
    true_u, true_i = torch.randn(N_USERS, 4, generator=g), torch.randn(N_ITEMS, 4, generator=g)
    u, i = torch.randint(N_USERS, (n,), generator=g), torch.randint(N_ITEMS, (n,), generator=g)
    r = (true_u[u] * true_i[i]).sum(1) + 0.1 * torch.randn(n, generator=g)
    return TensorDataset(u, i, r)


@torch.inference_mode()
def rmse(model: MF, data: TensorDataset) -> float:
    model.eval()
    u, i, r = (t.to(device) for t in data.tensors)
    err = torch.sqrt(torch.mean((model(u, i) - r) ** 2))
    model.train()
    return err.item()


def main() -> None:
    torch.set_float32_matmul_precision("high")
    data = ratings()
    loader = DataLoader(data, batch_size=1024, shuffle=True, drop_last=True, num_workers=2, pin_memory=True,
                        persistent_workers=True)
    model = MF().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(2):
        for step, (u, i, r) in enumerate(loader):
            u, i, r = (t.to(device, non_blocking=True) for t in (u, i, r))
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = nn.functional.mse_loss(model(u, i), r)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: train rmse {rmse(model, data):.3f}")


if __name__ == "__main__":
    main()
