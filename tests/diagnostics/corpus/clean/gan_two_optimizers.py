"""A small GAN on a 2-D mixture of Gaussians: two optimizers, detach for the discriminator step."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.set_float32_matmul_precision("high")
autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def real_batch(n: int) -> torch.Tensor:
    centers = torch.tensor([[math.cos(a), math.sin(a)] for a in torch.linspace(0, 2 * math.pi, 9)[:-1].tolist()],
                           device=device)
    picks = torch.randint(len(centers), (n,), device=device)
    return 2 * centers[picks] + 0.05 * torch.randn(n, 2, device=device)


def main() -> None:
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)).to(device)
    disc = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1)).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.999))
    ones = torch.ones(128, 1, device=device)
    zeros = torch.zeros(128, 1, device=device)

    for it in range(40):
        z = torch.randn(128, 8, device=device)
        with torch.autocast(**autocast):
            fake = gen(z)
            d_loss = (F.binary_cross_entropy_with_logits(disc(real_batch(128)), ones)
                      + F.binary_cross_entropy_with_logits(disc(fake.detach()), zeros))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        with torch.autocast(**autocast):
            g_loss = F.binary_cross_entropy_with_logits(disc(fake), ones)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if it % 10 == 9:
            print(f"it {it + 1}: D {d_loss.item():.3f}  G {g_loss.item():.3f}")


if __name__ == "__main__":
    main()
