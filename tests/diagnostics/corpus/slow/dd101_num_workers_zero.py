"""Token windows cut and masked per item (a masked-LM style collate) with num_workers=0."""

import torch
from torch import nn
from torch.utils import data

VOCAB = 256
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class MaskedWindows(data.Dataset):
    def __init__(self, stream: torch.Tensor, window: int = 64) -> None:
        self.stream, self.window = stream, window

    def __len__(self) -> int:
        return (len(self.stream) - self.window) // 8

    def __getitem__(self, i: int):
        tokens = self.stream[i * 8:i * 8 + self.window].clone()
        target = tokens.clone()
        probs = torch.rand(self.window)
        tokens[probs < 0.15] = 0
        for shift in range(1, 9):  # n-gram hashing features, built per item
            tokens = tokens ^ (torch.roll(target, shift) * (shift * 31) % VOCAB)
        return tokens % VOCAB, target


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 64)
        self.mix = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, VOCAB))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mix(self.embed(tokens))


def main() -> None:
    stream = torch.randint(1, VOCAB, (8 * 400 + 64,))
    loader = data.DataLoader(MaskedWindows(stream), batch_size=16, shuffle=True, num_workers=0, pin_memory=True)  # planted: DD101
    model = Tagger().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    torch.set_float32_matmul_precision("high")
    for i, (tokens, target) in enumerate(loader):
        tokens = tokens.to(device, non_blocking=True)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = criterion(model(tokens).flatten(0, 1), target.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i % 10 == 0:
            print(f"batch {i}: loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
