"""The four-Linear attention most PyTorch checkpoints use, computing Keras's MultiHeadAttention.

``mha-explain map --to linear`` prints this class in its script, and
``map --check`` runs it: the same text.
"""

from __future__ import annotations

import math

import torch


class KerasLayoutAttention(torch.nn.Module):
    """Separate q, k, v and output projections with (out, in) weights; Keras's call order and mask."""

    def __init__(
        self,
        query_features: int,
        key_features: int,
        value_features: int,
        output_features: int,
        *,
        num_heads: int,
        key_dim: int,
        value_dim: int,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim
        self.q_proj = torch.nn.Linear(query_features, num_heads * key_dim, bias=bias)
        self.k_proj = torch.nn.Linear(key_features, num_heads * key_dim, bias=bias)
        self.v_proj = torch.nn.Linear(value_features, num_heads * value_dim, bias=bias)
        self.o_proj = torch.nn.Linear(num_heads * value_dim, output_features, bias=bias)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        key: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,  # Keras's: (batch, T, S), True attends
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The output and the scores per head, (batch, heads, T, S)."""
        key = value if key is None else key
        batch, length, source, heads = query.shape[0], query.shape[1], key.shape[1], self.num_heads
        q = self.q_proj(query).view(batch, length, heads, self.key_dim).transpose(1, 2)
        k = self.k_proj(key).view(batch, source, heads, self.key_dim).transpose(1, 2)
        v = self.v_proj(value).view(batch, source, heads, self.value_dim).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.key_dim)
        if attention_mask is not None:
            scores = scores.masked_fill(~attention_mask[:, None], float("-inf"))
        weights = scores.softmax(dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(batch, length, heads * self.value_dim)
        return self.o_proj(attended), weights
