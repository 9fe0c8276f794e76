"""Augmented image patches decoded in __getitem__, loaded on the training process (no DataLoader workers)."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_float32_matmul_precision("high")


class NoisyPatches(Dataset):
    """Each item is built on access: a random patch, a blur by FFT, jitter and normalisation (real per-item work)."""

    def __init__(self, n: int = 512, size: int = 48) -> None:
        self.n, self.size = n, size
        freqs = torch.fft.fftfreq(size)
        self.blur = torch.exp(-(freqs[:, None] ** 2 + freqs[None, :] ** 2) * 40)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        g = torch.Generator().manual_seed(index)
        image = torch.rand(3, self.size, self.size, generator=g)
        image = torch.fft.ifft2(torch.fft.fft2(image) * self.blur).real
        for _ in range(4):
            image = image + 0.01 * torch.randn(image.shape, generator=g)
            image = (image - image.mean()) / (image.std() + 1e-6)
        label = int(image[0].mean() > image[1].mean())
        return image.flatten(), label


def main() -> None:
    loader = DataLoader(NoisyPatches(), batch_size=16, shuffle=True, pin_memory=True)  # planted: DD101
    model = nn.Sequential(nn.Linear(3 * 48 * 48, 64), nn.ReLU(), nn.Linear(64, 2)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 8 == 0:
            print(f"step {step} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
