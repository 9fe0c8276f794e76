"""PowerSGD arithmetic (Vogels et al., 2019): pure functions on one gradient matrix, and its per-parameter state.

:class:`deepdive.engine.compression.GradCompression` issues the collectives; this module holds what
happens between them: ``P = M Q``, the orthonormalisation of the summed ``P``, ``Q = Mᵀ P̂``, the
decompression and the error that error feedback keeps. The functions are exercised directly by the
tests. ``Q`` starts from a seeded random matrix per parameter name, so it is identical on every rank.
"""

from __future__ import annotations

import zlib
from typing import Optional

import torch

__all__ = ["EPS", "PowerSGDState", "initial_q", "matrix_shape", "orthonormalize_", "powersgd_finish", "powersgd_p",
           "powersgd_q"]

EPS = 1e-8
"""Added to every norm, so that tiny or zero columns give small vectors, never NaNs."""
_Q_SEED = 0x5EED


def orthonormalize_(p: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Orthonormalises the columns of ``p`` in place (modified Gram-Schmidt).

    ``eps`` is added to every norm, so tiny or zero columns give small vectors, never NaNs.

    Args:
        p (torch.Tensor): an ``n x r`` float32 matrix.
        eps (float): added to each column norm.

    Returns:
        torch.Tensor: ``p``.
    """
    cols = p.shape[1]
    for i in range(cols):
        col = p[:, i : i + 1]
        col.div_(torch.linalg.vector_norm(col) + eps)
        if i + 1 < cols:
            rest = p[:, i + 1 :]
            rest.sub_(col * (col.t() @ rest))
    return p


def powersgd_p(m: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """First half of a PowerSGD round: ``P = M Q`` (``Q``'s columns normalised first).

    Args:
        m (torch.Tensor): ``n x m`` local gradient plus error.
        q (torch.Tensor): ``m x r``, identical on every rank.

    Returns:
        torch.Tensor: ``P`` (``n x r``), to be summed over ranks.
    """
    qn = q / (torch.linalg.vector_norm(q, dim=0, keepdim=True) + EPS)
    return m @ qn


def powersgd_q(m: torch.Tensor, p_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Second half: orthonormalise the summed ``P`` and project: ``Q_local = Mᵀ P̂``.

    Args:
        m (torch.Tensor): ``n x m`` local gradient plus error.
        p_sum (torch.Tensor): ``P`` summed over ranks.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(P̂, Q_local)``; ``Q_local`` is to be summed over ranks.
    """
    p_hat = orthonormalize_(p_sum.clone())
    return p_hat, m.t() @ p_hat


def powersgd_finish(
    m: torch.Tensor,
    p_hat: torch.Tensor,
    q_local: torch.Tensor,
    q_sum: torch.Tensor,
    world: int = 1,
    out: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decompression and error feedback.

    Args:
        m (torch.Tensor): ``n x m`` local gradient plus error.
        p_hat (torch.Tensor): orthonormalised summed ``P``.
        q_local (torch.Tensor): this rank's ``Mᵀ P̂``.
        q_sum (torch.Tensor): ``Q`` summed over ranks.
        world (int): the number of ranks; the approximation is divided by it.
        out (torch.Tensor | None): ``n x m`` float32 tensor for the approximation; it may be ``m``
            itself (the error is computed first).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(approx, error)``: ``P̂ Q_sumᵀ / world``, the average
        over ranks of the rank-r approximations, and ``M - P̂ Q_localᵀ``, what this rank's
        approximation left out. Summed over steps, the approximations plus the ranks' mean final
        error equal the mean summed gradient exactly.
    """
    error = torch.addmm(m, p_hat, q_local.t(), alpha=-1.0)
    approx = torch.mm(p_hat, q_sum.t(), out=out) if out is not None else p_hat @ q_sum.t()
    return approx.div_(world), error


def initial_q(key: str, m: int, r: int, device: torch.device) -> torch.Tensor:
    """The first ``Q`` (``m x r``) of the parameter named ``key``: seeded by the name, so the same on every rank."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(_Q_SEED ^ zlib.crc32(key.encode()))
    return torch.randn(m, r, generator=gen, dtype=torch.float32).to(device)


def matrix_shape(t: torch.Tensor) -> tuple[int, int]:
    """``(n, m)`` of ``t`` seen as a matrix: its first dimension by the product of the others."""
    n = t.shape[0]
    return n, t.numel() // max(1, n)


class PowerSGDState:
    """A parameter's PowerSGD state: ``q`` (warm-started each step) and ``q0``, restarted from after a zero ``Q``."""

    __slots__ = ("q", "q0")

    def __init__(self, q: torch.Tensor) -> None:
        self.q = q
        self.q0 = q
