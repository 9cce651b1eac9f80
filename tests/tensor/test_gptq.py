"""GPTQ on small layers: the identity Hessian is round to nearest, correlated inputs lower the output error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adpdm.tensor.fake_quant import minmax_range, qparams_from_range, qrange, quantize
from adpdm.tensor.gptq import add_to_hessian, gptq_codes, layer_inputs


def _qparams(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    lo, hi = minmax_range(w, channel_axis=0)
    scale, zero = qparams_from_range(lo, hi, bits, False)
    return (scale, zero, *qrange(bits, False))


def _correlated_inputs(rows: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(rows, 2, generator=g)
    return base @ torch.randn(2, n, generator=g) + 0.05 * torch.randn(rows, n, generator=g)  # (rows, n)


def test_identity_hessian_gives_round_to_nearest() -> None:
    w = nn.Linear(8, 6).weight.detach()
    scale, zero, qmin, qmax = _qparams(w, 4)
    codes = gptq_codes(w, torch.eye(8), scale, zero, qmin, qmax, damp=0.0)
    assert torch.equal(codes, quantize(w, scale, zero, qmin, qmax))


@pytest.mark.parametrize("bits", [3, 4])
def test_correlated_inputs_lower_the_output_error_below_nearest(bits: int) -> None:
    torch.manual_seed(0)
    w = nn.Linear(16, 12).weight.detach()
    x = _correlated_inputs(256, 16)
    hessian, count = add_to_hessian(None, x[:100], 0)
    hessian, count = add_to_hessian(hessian, x[100:], count)
    assert count == 256 and torch.allclose(hessian, 2 * x.double().T @ x.double() / 256)
    scale, zero, qmin, qmax = _qparams(w, bits)

    def output_error(codes: torch.Tensor) -> float:
        return float(((w - (codes - zero) * scale) @ x.T).pow(2).sum())

    nearest = quantize(w, scale, zero, qmin, qmax)
    codes = gptq_codes(w, hessian, scale, zero, qmin, qmax)
    assert ((codes >= qmin) & (codes <= qmax) & (codes == codes.round())).all()
    assert output_error(codes) < 0.7 * output_error(nearest)
    assert torch.equal(codes, gptq_codes(w, hessian, scale, zero, qmin, qmax, block=3))  # lazy blocks: same codes


def test_conv_inputs_are_the_im2col_rows_the_weight_multiplies() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=2)
    x = torch.randn(2, 3, 7, 7)
    rows = layer_inputs(conv, x)  # (2 * 4 * 4, 27)
    out = rows @ conv.weight.detach().reshape(4, -1).T + conv.bias.detach()
    expected = conv(x).detach().permute(0, 2, 3, 1).reshape(-1, 4)
    assert rows.shape == (32, 27) and torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="ungrouped"):
        layer_inputs(nn.Conv2d(4, 4, 3, groups=2), torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="hessian must be"):
        gptq_codes(conv.weight, torch.eye(5), *_qparams(conv.weight.detach(), 4))
