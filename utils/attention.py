"""Attention as the slides write it, as PyTorch computes it, and the masks it needs."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dot_attention(s: torch.Tensor, h: torch.Tensor, mask: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Luong-style dot attention of decoder states over encoder states, batched.

    s (B, TD, F) decoder states (queries), h (B, TE, F) encoder states (keys and values),
    mask (B, TE) True where h is real (False = padding) -> context a (B, TD, F) and
    weights alpha (B, TD, TE):  e = s h^T,  alpha = softmax(e) over TE,  a = alpha h.
    """
    e = s @ h.transpose(1, 2)  # (B, TD, F) @ (B, F, TE) -> (B, TD, TE)
    if mask is not None:
        e = e.masked_fill(~mask[:, None, :], float("-inf"))
    alpha = torch.softmax(e, dim=-1)
    return alpha @ h, alpha  # (B, TD, TE) @ (B, TE, F) -> (B, TD, F)


def causal_mask(T: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) boolean, True where query t may look at key u (u <= t)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(D) + mask) v (Vaswani et al., 2017), written out.

    q (..., TQ, D), k (..., TK, D), v (..., TK, Dv), mask broadcastable to (..., TQ, TK),
    True = may attend -> output (..., TQ, Dv), weights (..., TQ, TK).
    Same result as torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).
    """
    e = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        e = e.masked_fill(~mask, float("-inf"))
    alpha = torch.softmax(e, dim=-1)
    return alpha @ v, alpha


def soft_lookup(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                temperature: float = 1.0) -> torch.Tensor:
    """A differentiable dictionary: sum_i softmax_i(k_i . q / temperature) v_i.

    query (D,), keys (N, D), values (N, Dv) -> (Dv,). As temperature -> 0 it becomes the hard
    lookup of the value whose key best matches the query.
    """
    return F.softmax(keys @ query / temperature, dim=0) @ values
