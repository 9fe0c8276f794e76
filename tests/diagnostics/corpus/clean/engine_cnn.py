"""A conv net on the deepdive engine, with a held-out accuracy after training; the engine picks the precision."""

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from deepdive import engine

torch.backends.cudnn.benchmark = True


class SmallConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


@torch.inference_mode()
def test_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, run) -> float:
    model.eval()
    with run.autocast():
        preds = model(images.to(run.device, memory_format=torch.channels_last)).argmax(1)
    return (preds == labels.to(run.device)).float().mean().item()


def main() -> None:
    run = engine.setup(seed=1)
    images = torch.randn(1200, 1, 12, 12)
    labels = (images.mean(dim=(1, 2, 3)) > 0).long() + 2 * (images[:, 0, :6].mean(dim=(1, 2)) > 0).long()
    train = TensorDataset(images[:1000], labels[:1000])
    loader = DataLoader(train, batch_size=50, shuffle=True, num_workers=2, persistent_workers=True)
    model = SmallConv().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model, optimizer, loader = run.prepare(model, optimizer, loader)
    for x, y in run.batches(loader, epochs=2):
        with run.autocast():
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        run.backward(loss)
        run.step(optimizer)
        run.log(loss=loss)
    accuracy = test_accuracy(model, images[1000:], labels[1000:], run)
    run.finish()
    if run.is_main:
        print(f"test accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
