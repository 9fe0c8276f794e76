"""Training accuracy counted with int() of a tensor sum on every step."""

import torch
import torch.nn as nn
import torch.nn.functional as F

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_float32_matmul_precision("high")


def main() -> None:
    torch.manual_seed(0)
    images = torch.randn(2000, 1, 8, 8, device=DEVICE)
    labels = (images.flatten(1)[:, :32].mean(1) > 0).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)).to(DEVICE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    n_correct = n_seen = 0
    for step in range(40):
        idx = torch.randint(0, len(images), (50,), device=DEVICE)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=DEVICE.type == "cuda"):
            logits = model(images[idx])
            loss = F.cross_entropy(logits, labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n_correct += int((logits.argmax(1) == labels[idx]).sum())  # planted: DD113
        n_seen += len(idx)
    print(f"running train accuracy {n_correct / n_seen:.3f}")


if __name__ == "__main__":
    main()
