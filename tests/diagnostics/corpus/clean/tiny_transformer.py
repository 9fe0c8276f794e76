"""A tiny causal transformer language model on a synthetic token stream; batches sampled on the device."""

import math

import torch
from torch import nn
from torch.nn import functional as F

VOCAB, CONTEXT, WIDTH = 96, 64, 64

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
torch.set_float32_matmul_precision("high")


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.zeros(CONTEXT, WIDTH))
        layer = nn.TransformerEncoderLayer(WIDTH, nhead=4, dim_feedforward=4 * WIDTH, dropout=0.1,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers=2)
        self.norm = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.embed(idx) + self.pos[: idx.size(1)]
        h = self.blocks(h, mask=self.mask[: idx.size(1), : idx.size(1)], is_causal=True)
        return self.lm_head(self.norm(h))


def get_batch(data: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.randint(len(data) - CONTEXT - 1, (batch_size,), device=data.device)
    offsets = torch.arange(CONTEXT, device=data.device)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    return x, y


def main() -> None:
    # a repeating pattern with noise: learnable, and big enough to sample from
    stream = (torch.arange(20_000) * 7 % VOCAB).to(device)
    stream = torch.where(torch.rand(stream.shape, device=device) < 0.05,
                         torch.randint(VOCAB, stream.shape, device=device), stream)
    model = TinyLM().to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    max_steps, warmup = 30, 5

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (max_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optim, lr_at)
    for step in range(max_steps):
        xb, yb = get_batch(stream, 16)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=(device == "cuda")):
            logits = model(xb)
            loss = F.cross_entropy(logits.view(-1, VOCAB), yb.view(-1))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        scheduler.step()
        if step % 10 == 0 or step == max_steps - 1:
            print(f"step {step}: loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
