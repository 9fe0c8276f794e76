"""Attention with separate projections, so that whole heads can be removed.

:class:`HeadAttention` computes what ``nn.MultiheadAttention`` computes, with separate
``q_proj``/``k_proj``/``v_proj``/``out_proj`` Linears and a head count that Torch-Pruning can lower
(see "Attention" in :mod:`deepdive.engine.compress.prune`); :func:`_split_attention` swaps it in for
the ``nn.MultiheadAttention`` modules of a model.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class HeadAttention(nn.Module):
    """``nn.MultiheadAttention`` with separate q/k/v/out projections and a prunable head count.

    It takes the same arguments and returns ``(output, weights)`` like ``nn.MultiheadAttention``,
    so it can stand in for it (``TransformerEncoderLayer`` calls ``self_attn(x, x, x, ...)``). The
    number of heads is ``q_proj.out_features // head_dim``, so it follows the pruning of q/k/v.
    ``head_ids`` are the indices of the remaining heads among the original ones; a per-head
    ``attn_mask`` of shape ``(batch * heads, L, S)`` is indexed with them.

    ``in_proj_weight``/``in_proj_bias`` are ``None`` and ``_qkv_same_embed_dim`` is False: the
    fused fast paths of ``nn.TransformerEncoderLayer`` check these and take the plain path.
    """

    in_proj_weight = None
    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(self, embed_dim: int, num_heads: int, *, dropout: float = 0.0, bias: bool = True,
                 kdim: Optional[int] = None, vdim: Optional[int] = None, batch_first: bool = False) -> None:
        super().__init__()
        if embed_dim % num_heads:
            from deepdive.engine.compress.prune import PruneError  # the error prune() raises (it imports this module)

            raise PruneError(f"embed_dim {embed_dim} is not a multiple of num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_ids = list(range(num_heads))
        self.original_num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kdim or embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(vdim or embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @property
    def num_heads(self) -> int:
        return self.q_proj.out_features // self.head_dim

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> "HeadAttention":
        """The same attention as ``mha``, weights copied (``add_bias_kv``/``add_zero_attn`` unsupported)."""
        if mha.bias_k is not None or mha.add_zero_attn:
            from deepdive.engine.compress.prune import PruneError

            raise PruneError("attention with add_bias_kv or add_zero_attn cannot be split into heads; pass heads=False")
        e = mha.embed_dim
        bias = mha.in_proj_bias is not None
        new = cls(e, mha.num_heads, dropout=mha.dropout, bias=bias, kdim=mha.kdim, vdim=mha.vdim,
                  batch_first=mha.batch_first)
        new = new.to(device=mha.out_proj.weight.device, dtype=mha.out_proj.weight.dtype)
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                wq, wk, wv = mha.in_proj_weight.chunk(3, dim=0)
            else:
                wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
            for proj, w in ((new.q_proj, wq), (new.k_proj, wk), (new.v_proj, wv)):
                proj.weight.copy_(w)
            if bias:
                for proj, b in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_bias.chunk(3, dim=0)):
                    proj.bias.copy_(b)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None and new.out_proj.bias is not None:
                new.out_proj.bias.copy_(mha.out_proj.bias)
        new.train(mha.training)
        return new

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[torch.Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        # (L, B, E) from here on, as in F.multi_head_attention_forward.
        tgt_len, bsz, _ = query.shape
        src_len = key.shape[0]
        h, d = self.num_heads, self.head_dim
        q = self.q_proj(query).view(tgt_len, bsz, h, d).permute(1, 2, 0, 3)
        k = self.k_proj(key).view(src_len, bsz, h, d).permute(1, 2, 0, 3)
        v = self.v_proj(value).view(src_len, bsz, h, d).permute(1, 2, 0, 3)
        mask = self._merged_mask(attn_mask, key_padding_mask, bsz, tgt_len, src_len, q.dtype)
        causal = is_causal and mask is None
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(d)
            if causal:
                scores = scores.masked_fill(
                    torch.ones(tgt_len, src_len, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
            if mask is not None:
                scores = scores + mask
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, p=p) @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        out = self.out_proj(out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, h * d))
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if unbatched:
                weights = weights.squeeze(0)
        return out, weights

    def _merged_mask(self, attn_mask: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor],
                     bsz: int, tgt_len: int, src_len: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
        """One additive float mask of shape broadcastable to (B, heads, L, S), or None."""
        merged = None
        if attn_mask is not None:
            mask = _additive(attn_mask, dtype)
            if mask.dim() == 3:  # (B * original heads, L, S): keep the rows of the remaining heads
                mask = mask.view(bsz, self.original_num_heads, tgt_len, src_len)[:, self.head_ids]
            merged = mask
        if key_padding_mask is not None:
            pad = _additive(key_padding_mask, dtype).view(bsz, 1, 1, src_len)
            merged = pad if merged is None else merged + pad
        return merged


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def _split_attention(model: nn.Module, keep: set[str]) -> dict[str, HeadAttention]:
    """Replace every ``nn.MultiheadAttention`` of ``model`` (but those named in ``keep``) in place."""
    converted: dict[str, HeadAttention] = {}
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.MultiheadAttention) or name in keep:
            continue
        if module.bias_k is not None or module.add_zero_attn:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = HeadAttention.from_mha(module)
        setattr(parent, attr, new)
        converted[name] = new
    if converted:
        for module in model.modules():
            if isinstance(module, nn.TransformerEncoder):
                # Its nested-tensor fast path reads self_attn.in_proj_weight; the plain path is exact.
                module.use_nested_tensor = False
    return converted
