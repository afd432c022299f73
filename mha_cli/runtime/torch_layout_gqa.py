"""The four-Linear grouped-query attention of Llama-style PyTorch code, computing Keras's GroupQueryAttention.

``mha-explain map --layer gqa`` prints this class in its script, and
``map --check`` runs it: the same text. With ``fused`` (``--to torch``) the
attention is ``torch.nn.functional.scaled_dot_product_attention(...,
enable_gqa=True)`` (torch >= 2.5), which repeats the key/value heads inside the
kernel; without it (``--to linear``) the repeat is spelled out, as torch before
2.5 needs. Either way the per-head weights are computed beside it, for
comparing with Keras's ``return_attention_scores=True``.
"""

from __future__ import annotations

import math

import torch


class KerasLayoutGQA(torch.nn.Module):
    """q, k, v and output projections with (out, in) weights; Keras's call order, mask and head grouping."""

    def __init__(
        self,
        query_features: int,
        key_features: int,
        value_features: int,
        *,
        num_query_heads: int,
        num_key_value_heads: int,
        head_dim: int,
        bias: bool = True,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.num_query_heads, self.num_key_value_heads = num_query_heads, num_key_value_heads
        self.head_dim, self.fused = head_dim, fused
        self.q_proj = torch.nn.Linear(query_features, num_query_heads * head_dim, bias=bias)
        self.k_proj = torch.nn.Linear(key_features, num_key_value_heads * head_dim, bias=bias)
        self.v_proj = torch.nn.Linear(value_features, num_key_value_heads * head_dim, bias=bias)
        # GroupQueryAttention's output keeps the query's width.
        self.o_proj = torch.nn.Linear(num_query_heads * head_dim, query_features, bias=bias)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        key: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,  # Keras's: (batch, T, S), True attends
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and the scores per query head, (batch, num_query_heads, T, S)."""
        key = value if key is None else key
        batch, length, source = query.shape[0], query.shape[1], key.shape[1]
        heads, groups, size = self.num_query_heads, self.num_key_value_heads, self.head_dim
        q = self.q_proj(query).view(batch, length, heads, size).transpose(1, 2)
        k = self.k_proj(key).view(batch, source, groups, size).transpose(1, 2)
        v = self.v_proj(value).view(batch, source, groups, size).transpose(1, 2)
        # SDPA's boolean mask means what Keras's does (True: attend), broadcast over the heads.
        mask = None if attention_mask is None else attention_mask[:, None]
        # Keras's ops.repeat(x, repeats, axis=2): query head i reads key/value head i // repeats.
        repeats = heads // groups
        k_all, v_all = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)
        scores = q @ k_all.transpose(-2, -1) / math.sqrt(size)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        if self.fused:
            attended = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, enable_gqa=True
            )
        else:
            attended = weights @ v_all
        attended = attended.transpose(1, 2).reshape(batch, length, heads * size)
        return self.o_proj(attended), weights
