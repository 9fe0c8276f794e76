"""A CPU-only script (no GPU anywhere) whose aliased DataLoader parses text-like records in __getitem__ on the
training process."""

import torch
from torch import nn
from torch.utils.data import DataLoader as DL
from torch.utils.data import Dataset


class Records(Dataset):
    """Comma-separated records parsed on access (what a CSV-backed dataset does)."""

    def __init__(self, n: int = 640) -> None:
        g = torch.Generator().manual_seed(0)
        values = torch.randn(n, 48, generator=g)
        self.lines = [",".join(f"{v:.5f}" for v in row.tolist()) for row in values]
        self.labels = (values[:, :4].sum(1) > 0).long()

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int):
        features = torch.tensor([float(field) for field in self.lines[i].split(",")])
        features = (features - features.mean()) / (features.std() + 1e-6)
        return features, self.labels[i]


def main() -> None:
    torch.manual_seed(0)
    train_dl = DL(Records(), batch_size=20, shuffle=True)  # planted: DD101
    model = nn.Sequential(nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step, (features, labels) in enumerate(train_dl):
        loss = nn.functional.cross_entropy(model(features), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 8 == 0:
            print(f"step {step} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
