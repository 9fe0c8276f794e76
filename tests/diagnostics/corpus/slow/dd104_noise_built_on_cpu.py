"""Input noise for a denoising objective built on the CPU and copied to the device every step."""

import torch
import torch.nn as nn

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


def main() -> None:
    torch.manual_seed(0)
    signals = torch.sin(torch.linspace(0, 50, 256, device=device) * torch.rand(1024, 1, device=device) * 3)
    model = nn.Sequential(nn.Linear(256, 128), nn.GELU(), nn.Linear(128, 256)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(40):
        idx = torch.randint(len(signals), (64,), device=device)
        clean = signals[idx]
        noise = torch.randn(64, 256).to(device)  # planted: DD104
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = nn.functional.mse_loss(model(clean + 0.3 * noise), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(step, f"{loss.item():.4f}")


if __name__ == "__main__":
    main()
