"""Loss curve kept as Python floats with float(loss) every step."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def main() -> None:
    ds = TensorDataset(torch.randn(1536, 48), torch.randn(1536, 8))
    dl = DataLoader(ds, batch_size=48, shuffle=True, num_workers=2, pin_memory=True, persistent_workers=True)
    model = nn.Sequential(nn.Linear(48, 96), nn.ReLU(), nn.Linear(96, 8)).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    curve = []
    for xb, yb in dl:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = nn.functional.mse_loss(model(xb), yb)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        curve.append(float(loss))  # planted: DD113
    print(f"{len(curve)} steps, first {curve[0]:.3f}, last {curve[-1]:.3f}")


if __name__ == "__main__":
    main()
