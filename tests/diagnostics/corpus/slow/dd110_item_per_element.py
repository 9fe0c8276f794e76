"""Training accuracy counted element by element: one .item() (host sync) per sample, every step."""

import torch
from torch import nn
import torch.nn.functional as F

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def main() -> None:
    torch.manual_seed(0)
    X = torch.randn(4096, 24, device=device)
    Y = (X[:, 0] - X[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(24, 64), nn.ReLU(), nn.Linear(64, 2)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = 256
    for step in range(32):
        idx = torch.randint(len(X), (batch,), device=device)
        xb, yb = X[idx], Y[idx]
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        correct = 0
        for pred, label in zip(logits.argmax(1), yb):
            correct += pred.item() == label.item()  # planted: DD110
        if step % 8 == 0:
            print(f"step {step}: train accuracy {correct / batch:.3f}")


if __name__ == "__main__":
    main()
