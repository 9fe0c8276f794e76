"""A denoising autoencoder; the whole (small) data set lives on the device and batches are index slices."""

import torch
import torch.nn as nn

dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


class AutoEncoder(nn.Module):
    def __init__(self, dim: int = 64, code: int = 16) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim, 128), nn.SiLU(), nn.Linear(128, code))
        self.decoder = nn.Sequential(nn.Linear(code, 128), nn.SiLU(), nn.Linear(128, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def main() -> None:
    torch.manual_seed(1)
    basis = torch.randn(16, 64, device=dev)
    data = torch.randn(4096, 16, device=dev) @ basis
    model = AutoEncoder().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.MSELoss()
    batch_size = 256
    for epoch in range(3):
        perm = torch.randperm(len(data), device=dev)
        epoch_loss = torch.zeros((), device=dev)
        for start in range(0, len(data), batch_size):
            clean = data[perm[start:start + batch_size]]
            noisy = clean + 0.1 * torch.randn_like(clean)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
                recon = model(noisy)
                loss = loss_fn(recon, clean)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss += loss.detach()
        print(f"epoch {epoch}: reconstruction loss {(epoch_loss / (len(data) // batch_size)).item():.4f}")


if __name__ == "__main__":
    main()
