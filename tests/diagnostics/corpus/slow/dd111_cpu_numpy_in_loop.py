"""Predictions gathered for a training F1 score with .cpu().numpy() on every step."""

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def f1(preds: np.ndarray, labels: np.ndarray) -> float:
    tp = np.sum((preds == 1) & (labels == 1))
    fp = np.sum((preds == 1) & (labels == 0))
    fn = np.sum((preds == 0) & (labels == 1))
    return 2 * tp / max(2 * tp + fp + fn, 1)


def main() -> None:
    x = torch.randn(2048, 64)
    y = (x.pow(2).sum(1) > 64).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, num_workers=2, pin_memory=True,
                        persistent_workers=True)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 2)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    all_preds, all_labels = [], []
    for x_batch, y_batch in loader:
        x_batch = x_batch.to(device, non_blocking=True)
        y_batch = y_batch.to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(x_batch)
            loss = nn.functional.cross_entropy(logits, y_batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        all_preds.append(logits.argmax(dim=1).cpu().numpy())  # planted: DD111
        all_labels.append(y_batch)
    labels = torch.cat(all_labels).cpu().numpy()
    print(f"train F1 {f1(np.concatenate(all_preds), labels):.3f}")


if __name__ == "__main__":
    main()
