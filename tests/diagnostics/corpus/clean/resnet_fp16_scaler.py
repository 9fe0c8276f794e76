"""A small residual CNN trained with fp16 autocast and torch.amp.GradScaler, channels_last and cudnn autotuning,
validated every epoch under inference_mode."""

import torch
from torch import nn, optim
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
amp_enabled = device.type == "cuda"
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class ResNetTiny(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(Block(16), Block(16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@torch.inference_mode()
def validate(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for images, targets in loader:
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp_enabled):
            correct += (model(images).argmax(dim=1) == targets).sum()
    return correct.item() / len(loader.dataset)


def main() -> None:
    images, labels = torch.randn(768, 3, 16, 16), torch.randint(0, 10, (768,))
    train_set, val_set = TensorDataset(images[:640], labels[:640]), TensorDataset(images[640:], labels[640:])
    train_loader = DataLoader(train_set, batch_size=32, shuffle=True, num_workers=2, pin_memory=True,
                              persistent_workers=True)
    val_loader = DataLoader(val_set, batch_size=64, num_workers=1, pin_memory=True, persistent_workers=True)

    model = ResNetTiny().to(device, memory_format=torch.channels_last)
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_enabled)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)

    for epoch in range(2):
        model.train()
        for batch_idx, (images, targets) in enumerate(train_loader):
            images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp_enabled):
                loss = criterion(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if batch_idx % 10 == 0:
                print(f"epoch {epoch} [{batch_idx}/{len(train_loader)}] loss {loss.item():.3f}")
        accuracy = validate(model, val_loader)
        print(f"epoch {epoch} val accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
