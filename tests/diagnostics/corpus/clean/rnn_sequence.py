"""An LSTM classifier of synthetic sequences, fp16 autocast with torch.amp.GradScaler where there is a GPU."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
AMP = DEVICE.type == "cuda"


class SeqClassifier(nn.Module):
    def __init__(self, n_features: int = 8, hidden: int = 64, n_classes: int = 3) -> None:
        super().__init__()
        self.rnn = nn.LSTM(n_features, hidden, num_layers=2, batch_first=True, dropout=0.1)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.rnn(seq)
        return self.out(h[-1])


def synthetic(n: int = 1024, length: int = 24) -> TensorDataset:
    x = torch.randn(n, length, 8)
    trend = x[:, :, 0].cumsum(1)[:, -1]
    y = torch.bucketize(trend, torch.tensor([-2.0, 2.0]))
    return TensorDataset(x, y)


def run_epoch(model, loader, criterion, optimizer, scaler) -> torch.Tensor:
    running = torch.zeros((), device=DEVICE)
    for seq, target in loader:
        seq, target = seq.to(DEVICE, non_blocking=True), target.to(DEVICE, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=DEVICE.type, dtype=torch.float16, enabled=AMP):
            loss = criterion(model(seq), target)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)
        scaler.update()
        running += loss.detach()
    return running / len(loader)


def main() -> None:
    torch.set_float32_matmul_precision("high")
    loader = DataLoader(synthetic(), batch_size=64, shuffle=True, num_workers=2, pin_memory=True,
                        persistent_workers=True)
    model = SeqClassifier().to(DEVICE)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=AMP)
    for epoch in range(2):
        mean_loss = run_epoch(model, loader, criterion, optimizer, scaler)
        print(f"epoch {epoch}: mean loss {mean_loss.item():.4f}")


if __name__ == "__main__":
    main()
