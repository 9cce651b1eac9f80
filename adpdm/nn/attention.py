"""A diffusers attention processor that quantizes the attention matmul inputs.

Installed with diffusers' own extension point (``Attention.set_processor``). The projections
``to_q / to_k / to_v / to_out`` are already quantized layers; this processor adds quantizers
on their outputs Q, K, V (the inputs of the two matmuls) and on the softmax output P, so that
the attention itself can run on integers:

    S = Q K^T * scale (+ mask),  P = softmax(S),  O = P V
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .act_quant import ActQuantizer


class QuantAttnProcessor(nn.Module):
    """Attention with quantized Q, K, V and softmax output; an ``nn.Module`` so its state is saved."""

    def __init__(self, q_quant: ActQuantizer, k_quant: ActQuantizer, v_quant: ActQuantizer, p_quant: ActQuantizer):
        super().__init__()
        self.q_quant, self.k_quant, self.v_quant, self.p_quant = q_quant, k_quant, v_quant, p_quant

    # diffusers reads the processor's ``__call__`` signature to route keyword arguments.
    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    def forward(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        # 1. image-like input (B, C, H, W) -> tokens (B, HW, C)
        image_shape = hidden_states.shape if hidden_states.ndim == 4 else None
        if image_shape is not None:
            b, c, h, w = image_shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, _, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], batch)
            attention_mask = attention_mask.view(batch, -1, *attention_mask.shape[-2:])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if encoder_hidden_states is None:
            context = hidden_states
        elif attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)

        # 2. projections, split into heads: (B, heads, tokens, head_dim)
        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        query, key, value = (
            t.view(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (query, key, value)
        )
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)

        # 3. quantized matmuls: S = Q K^T * scale, P = softmax(S), O = P V
        query, key, value = self.q_quant(query), self.k_quant(key), self.v_quant(value)
        scores = torch.matmul(query, key.transpose(-1, -2)) * attn.scale  # (B, heads, Nq, Nk)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
        out = torch.matmul(self.p_quant(probs), value)  # (B, heads, Nq, head_dim)
        hidden_states = out.transpose(1, 2).reshape(batch, -1, heads * out.shape[-1])

        # 4. output projection, back to the input layout, residual
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if image_shape is not None:
            hidden_states = hidden_states.transpose(-1, -2).reshape(image_shape)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor
