"""validate() runs under no_grad but never calls model.eval(): dropout stays on and BatchNorm keeps updating its
running statistics from validation batches."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(256, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader) -> float:  # planted: DD131
    correct = 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        correct += (model(images).argmax(1) == labels).sum()
    return (correct / len(loader.dataset)).item()


def main() -> None:
    x = torch.randn(4096, 64)
    y = x[:, :10].argmax(1)
    train_loader = DataLoader(TensorDataset(x[:1024], y[:1024]), batch_size=64, shuffle=True, num_workers=2,
                              pin_memory=True, persistent_workers=True)
    val_loader = DataLoader(TensorDataset(x[1024:], y[1024:]), batch_size=256, num_workers=2, pin_memory=True,
                            persistent_workers=True)
    model = Classifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(2):
        model.train()
        for images, labels in train_loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: val accuracy {validate(model, val_loader):.3f}")


if __name__ == "__main__":
    main()
