"""The deepdive engine's loop: setup, prepare, batches, autocast, backward, step, log."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepdive.engine as dd


def build_model(hidden: int = 128) -> nn.Module:
    return nn.Sequential(nn.Linear(64, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, 10))


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, run: "dd.Run") -> float:
    model.eval()
    x, y = (t.to(run.device) for t in data.tensors)
    with run.autocast():
        correct = (model(x).argmax(1) == y).sum().item()
    model.train()
    return correct / len(y)


def main() -> None:
    run = dd.setup(precision="auto", seed=0)
    x = torch.randn(1024, 64)
    y = (x[:, :10].argmax(1) + x[:, 10:20].argmax(1)) % 10
    train, test = TensorDataset(x[:896], y[:896]), TensorDataset(x[896:], y[896:])
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=2, persistent_workers=True)
    model, optimizer, loader = run.prepare(model, optimizer, loader)
    for xb, yb in run.batches(loader, epochs=2):
        with run.autocast():
            loss = F.cross_entropy(model(xb), yb)
        run.backward(loss)
        run.step(optimizer)
        run.log(loss=loss)
    accuracy = evaluate(model, test, run)
    run.log(accuracy=accuracy)
    summary = run.finish()
    if run.is_main:
        print(f"accuracy {accuracy:.3f} after {summary['steps']} steps")


if __name__ == "__main__":
    main()
