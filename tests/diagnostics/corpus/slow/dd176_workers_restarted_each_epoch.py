"""A loader with workers but no persistent_workers, iterated once per (short) epoch: the workers are started
again at every epoch."""

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


class Windows(Dataset):
    def __init__(self, series: torch.Tensor, width: int = 32) -> None:
        self.series, self.width = series, width

    def __len__(self) -> int:
        return len(self.series) - self.width - 1

    def __getitem__(self, i: int):
        window = self.series[i:i + self.width]
        return (window - window.mean()) / (window.std() + 1e-6), self.series[i + self.width:i + self.width + 1]


def main() -> None:
    series = torch.sin(torch.arange(320) * 0.1) + 0.05 * torch.randn(320)
    loader = DataLoader(Windows(series), batch_size=64, shuffle=True, num_workers=2, pin_memory=True)  # planted: DD176
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(6):
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch} done")


if __name__ == "__main__":
    main()
