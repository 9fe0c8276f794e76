"""The classic train_one_epoch / evaluate split with a best-checkpoint kept in memory and early stopping."""

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, random_split, TensorDataset

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def build_dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(42)
    features = torch.randn(3000, 20, generator=g)
    labels = (features[:, 0] * features[:, 1] > 0).long()
    return TensorDataset(features, labels)


def train_one_epoch(model, loader, optimizer, criterion, log_every: int = 25) -> None:
    model.train()
    for it, (inputs, labels) in enumerate(loader):
        inputs = inputs.to(DEVICE, non_blocking=True)
        labels = labels.to(DEVICE, non_blocking=True)
        with torch.autocast(device_type=DEVICE, dtype=torch.bfloat16, enabled=DEVICE == "cuda"):
            outputs = model(inputs)
            loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if it % log_every == 0:
            print(f"  it {it:3d} loss {loss.item():.4f}")


def evaluate(model, loader, criterion) -> tuple[float, float]:
    model.eval()
    loss_sum = torch.zeros((), device=DEVICE)
    correct = torch.zeros((), device=DEVICE)
    with torch.no_grad():
        for inputs, labels in loader:
            inputs = inputs.to(DEVICE, non_blocking=True)
            labels = labels.to(DEVICE, non_blocking=True)
            outputs = model(inputs)
            loss_sum += criterion(outputs, labels) * len(labels)
            correct += (outputs.argmax(1) == labels).sum()
    n = len(loader.dataset)
    return loss_sum.item() / n, correct.item() / n


def main() -> None:
    torch.set_float32_matmul_precision("high")
    train_set, val_set = random_split(build_dataset(), [2500, 500], generator=torch.Generator().manual_seed(0))
    loader_kwargs = dict(num_workers=2, pin_memory=True, persistent_workers=True)
    train_loader = DataLoader(train_set, batch_size=100, shuffle=True, **loader_kwargs)
    val_loader = DataLoader(val_set, batch_size=250, **loader_kwargs)

    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 2)).to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    criterion = nn.CrossEntropyLoss()
    best_acc, best_state, patience = 0.0, None, 2
    for epoch in range(3):
        train_one_epoch(model, train_loader, optimizer, criterion)
        val_loss, val_acc = evaluate(model, val_loader, criterion)
        print(f"epoch {epoch}: val loss {val_loss:.4f} acc {val_acc:.3f}")
        if val_acc > best_acc:
            best_acc, best_state, patience = val_acc, copy.deepcopy(model.state_dict()), 2
        else:
            patience -= 1
            if patience == 0:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    print(f"best val accuracy {best_acc:.3f}")


if __name__ == "__main__":
    main()
