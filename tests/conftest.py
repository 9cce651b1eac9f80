"""Shared fixtures: seeded RNGs, offline hub, tiny diffusers UNets."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # tiny models: thread start-up costs more than it saves, and CI has 2 cores
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def make_unet(
    attention: bool = True, num_class_embeds: int | None = None, channels: tuple[int, int] = (16, 32)
) -> UNet2DModel:
    """A tiny UNet2DModel (16x16, one input channel)."""
    down = ("DownBlock2D", "AttnDownBlock2D") if attention else ("DownBlock2D", "DownBlock2D")
    up = ("AttnUpBlock2D", "UpBlock2D") if attention else ("UpBlock2D", "UpBlock2D")
    return UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=channels,
        down_block_types=down, up_block_types=up, layers_per_block=1, norm_num_groups=8,
        num_class_embeds=num_class_embeds,
    ).eval()  # fmt: skip


def make_cond_unet() -> UNet2DConditionModel:
    """A tiny text-conditioned UNet2DConditionModel with cross-attention."""
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=8, layers_per_block=1, norm_num_groups=8,
    ).eval()  # fmt: skip


@pytest.fixture
def tiny_unet() -> UNet2DModel:
    return make_unet()


def assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Dtype-aware closeness with a helpful message."""
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
