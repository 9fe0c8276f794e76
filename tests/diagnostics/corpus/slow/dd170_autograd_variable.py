"""Old tutorial code: inputs wrapped in torch.autograd.Variable (a no-op since PyTorch 0.4)."""

import torch
import torch.nn as nn
from torch.autograd import Variable

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def main() -> None:
    torch.manual_seed(0)
    x_train = torch.randn(1000, 10, device=device)
    y_train = x_train @ torch.randn(10, 1, device=device) + 0.5
    model = nn.Linear(10, 1).to(device)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in range(30):
        idx = torch.randint(0, 1000, (100,), device=device)
        inputs = Variable(x_train[idx])  # planted: DD170
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = criterion(model(inputs), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (epoch + 1) % 10 == 0:
            print(f"Epoch [{epoch + 1}/30], Loss: {loss.item():.4f}")


if __name__ == "__main__":
    main()
