"""Cost counting: multiply-accumulates by hand, effective bits, bit-operations of a mixed model."""

from __future__ import annotations

import pytest
import torch
from pipeline_folders import tiny_unet
from torch import nn

from adpdm import QuantConfig, quantize_model
from adpdm.analysis.cost import LayerCost, count_macs, layer_costs, model_cost


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)  # 8x8 output
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)  # 4x4 output
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.down(self.conv(x)).mean((2, 3)))


def test_macs_by_hand_per_sample() -> None:
    net = _Net()
    macs = count_macs(net, lambda: net(torch.randn(3, 3, 8, 8)))
    assert macs == {"conv": 4 * 8 * 8 * 3 * 9, "down": 8 * 4 * 4 * 2 * 9, "fc": 5 * 8}


def test_effective_bits_are_mac_weighted_means() -> None:
    layers = [LayerCost("big", 900, 10, 6, 6), LayerCost("small", 100, 10, 6, 8)]
    cost = model_cost(layers)
    assert cost.wbits == 6 and cost.abits == pytest.approx(6.2)
    assert cost.bops == 900 * 36 + 100 * 48 and cost.weight_bytes == 20 * 6 / 8
    assert cost.label() == "W6A6.2"
    assert model_cost([LayerCost("a", 10, 1, 8, 8)]).label() == "W8A8"
    # grouped weight scales: an fp32 scale and a 4-bit zero point per group of 64 weights
    assert model_cost([LayerCost("g", 10, 128, 4, 8, qparams=2)]).weight_bytes == (128 * 4 + 2 * 36) / 8
    with pytest.raises(ValueError, match="no multiply-accumulates"):
        model_cost([])


def test_a_layer_pattern_raises_the_effective_bits_by_its_share_of_the_macs() -> None:
    x, t = torch.randn(1, 1, 16, 16), torch.tensor([10])
    fp = tiny_unet()
    macs = count_macs(fp, lambda: fp(x, t))
    plain = quantize_model(tiny_unet(), QuantConfig.preset("w6a6", num_steps=4))
    mixed = quantize_model(tiny_unet(), QuantConfig.preset("w6a6", num_steps=4, layer_bits=(("up_blocks.1.*", 6, 8),)))
    base, more = model_cost(layer_costs(plain, macs)), model_cost(layer_costs(mixed, macs))
    share = sum(m for n, m in macs.items() if n.startswith("up_blocks.1.")) / sum(macs.values())
    first_last = sum(m for n, m in macs.items() if n in ("conv_in", "conv_out")) / sum(macs.values())
    # the protocol's 8-bit first and last layers already lift the plain model above W6A6
    assert base.abits == pytest.approx(6 + 2 * first_last) and base.wbits == pytest.approx(6 + 2 * first_last)
    assert more.abits == pytest.approx(base.abits + 2 * share) and more.wbits == base.wbits
    assert more.bops > base.bops and more.label() != "W6A6"


def test_grouped_weight_scales_cost_bytes_not_bits() -> None:
    x, t = torch.randn(1, 1, 16, 16), torch.tensor([10])
    fp = tiny_unet()
    macs = count_macs(fp, lambda: fp(x, t))
    costs = {p: model_cost(layer_costs(quantize_model(tiny_unet(), QuantConfig.preset(p, num_steps=4)), macs))
             for p in ("w4a8", "w4g32a8")}  # fmt: skip
    assert costs["w4g32a8"].label() == costs["w4a8"].label() and costs["w4g32a8"].bops == costs["w4a8"].bops
    assert costs["w4a8"].weight_bytes < costs["w4g32a8"].weight_bytes < 2 * costs["w4a8"].weight_bytes
