"""What several parts share: device synchronisation and timing, the installed version of a package,
and the small transformer and regression data the AMP and FSDP2 parts train.
"""

from __future__ import annotations

import math
import statistics
from importlib import metadata
from typing import Any, Optional


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3 if seconds else float("nan")


def peak_mib(device: str) -> Optional[float]:
    if device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def installed_version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def transformer(d_in: int, d_model: int, layers: int, heads: int) -> Any:
    """A pre-norm transformer whose blocks sit in an ``nn.ModuleList`` (the layout of most real models)."""
    from torch import nn

    class Transformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(d_in, d_model)
            self.layers = nn.ModuleList([
                nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True) for _ in range(layers)])
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, 1)

        def forward(self, x: Any) -> Any:
            h = self.embed(x)
            for layer in self.layers:
                h = layer(h)
            return self.head(self.norm(h)).squeeze(-1)

    return Transformer()


def regression_data(n: int, seq: int, d_in: int, seed: int = 0) -> tuple[Any, Any]:
    """Inputs and a learnable per-token target (a fixed squashed projection of each token)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, seq, d_in, generator=gen)
    w = torch.randn(d_in, generator=torch.Generator().manual_seed(1234)) / math.sqrt(d_in)
    return x, torch.tanh(x @ w)
