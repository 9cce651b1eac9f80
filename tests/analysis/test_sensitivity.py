"""Sensitivity analysis on tiny UNets made deliberately sensitive in one layer.

The attention's value projection and output projection are rescaled against each other: channel
c of ``to_v`` by ``f`` and column c of ``to_out.0`` by ``1 / f``, which leaves the FP function
unchanged (``softmax(QK^T) V`` is linear in V). With ``f = 1e3`` the input of ``to_out.0`` has an
extreme outlier channel (per-tensor activation quantization loses every other channel); with
``f = 1e-3`` its weight has an outlier column (per-channel weight quantization loses the others).
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_unet
from diffusers import DDPMScheduler

from adpdm.analysis import AnalyzeConfig, ErrorProbe, SensitivityReport, analyze, find_units
from adpdm.analysis.suggest import fp32_weight_bytes, suggest
from adpdm.calib.data import record_trajectories
from adpdm.config import QuantConfig
from adpdm.models.loading import DiffusionModel
from adpdm.quantize import quantize_model
from adpdm.sampling import SamplerConfig

K = 4
LAYER = "down_blocks.1.attentions.0.to_out.0"
CFG = AnalyzeConfig(num_samples=2, steps=K, progress=False)


def tiny_model(factor: float = 1.0) -> DiffusionModel:
    """A tiny UNet whose ``LAYER`` sees an outlier input channel (factor > 1) or weight column (< 1)."""
    torch.manual_seed(0)
    unet = make_unet()
    attn = unet.get_submodule("down_blocks.1.attentions.0")
    with torch.no_grad():
        attn.to_v.weight[3] *= factor
        attn.to_v.bias[3] *= factor
        attn.to_out[0].weight[:, 3] /= factor
        attn.to_out[0].weight *= 4  # a larger share of the output goes through the attention
        attn.to_out[0].bias *= 4
    return DiffusionModel("tiny", unet, dict(DDPMScheduler(num_train_timesteps=1000).config))


def plain(wbits: int, abits: int) -> QuantConfig:
    return QuantConfig(wbits=wbits, abits=abits, num_steps=K, quantize_attention=False)


@pytest.fixture(scope="module")
def weight_report() -> SensitivityReport:
    return analyze(tiny_model(1e-3), plain(6, 8), CFG)


@pytest.fixture(scope="module")
def act_report() -> SensitivityReport:
    return analyze(tiny_model(1e3), plain(8, 6), CFG)


@pytest.mark.parametrize(("fixture", "mode"), [("weight_report", "weight"), ("act_report", "act")])
def test_outlier_layer_is_ranked_first(fixture: str, mode: str, request: pytest.FixtureRequest) -> None:
    ranked = request.getfixturevalue(fixture).ranked(mode)
    assert ranked[0].name == LAYER
    assert ranked[0].score(mode) > 10 * ranked[1].score(mode)


def test_the_outlier_does_not_change_the_fp_model() -> None:
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 900])
    with torch.no_grad():
        ref, out = tiny_model().unet(x, t).sample, tiny_model(1e3).unet(x, t).sample
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_errors_are_per_step_and_non_negative(weight_report: SensitivityReport) -> None:
    r = weight_report
    assert len(r.sensitivity) == K and len(r.timesteps) == K and r.settings["rows"] == 2 * K
    for u in r.layers:
        for errors in (u.weight, u.act):
            if errors is not None:
                assert len(errors.per_step) == K and min(errors.per_step) >= 0 and errors.score >= 0
    assert min(r.all_layers.per_step) > 0
    b2 = [b * b for b in r.sensitivity]
    expected = sum(w * e for w, e in zip(b2, r.all_layers.per_step, strict=True)) / sum(b2)
    assert r.all_layers.score == pytest.approx(expected)
    names = [u.name for u in r.layers]  # execution order: the middle block runs before the up blocks
    assert names[0] == "time_embedding.linear_1"
    assert names.index("mid_block.resnets.0.conv1") < names.index("up_blocks.0.resnets.0.conv1")


def test_nothing_quantized_gives_exactly_zero() -> None:
    model = tiny_model()
    sampler = SamplerConfig(num_steps=K, seed=1)
    qunet = quantize_model(model.unet, QuantConfig.preset("w4a8", num_steps=K))  # state FP
    calib = record_trajectories(qunet, model.scheduler_config, 2, sampler, progress=False)
    probe = ErrorProbe(qunet, calib, 1.0, torch.ones(K), batch_size=3, device=torch.device("cpu"))
    assert probe.errors([]).per_step == [0.0] * K


def test_16_bit_activations_have_no_activation_rows() -> None:
    report = analyze(tiny_model(), QuantConfig.preset("w4a16", num_steps=K), CFG)
    assert report.layers and all(u.act is None and u.abits is None for u in report.layers)
    assert all(u.kind != "attention" for u in report.layers) and report.ranges == []
    assert all(u.weight is not None for u in report.layers)


def test_attention_blocks_are_units_of_their_own() -> None:
    units = find_units(quantize_model(make_unet(), QuantConfig.preset("w8a8", num_steps=K)))
    attention = [u for u in units if u.kind == "attention"]
    assert [u.name for u in attention] == ["down_blocks.1.attentions.0", "up_blocks.0.attentions.0",
                                           "up_blocks.0.attentions.1", "mid_block.attentions.0"]  # fmt: skip
    assert all(len(u.act) == 4 and not u.weight for u in attention)


def test_ranges_match_the_recorded_inputs(act_report: SensitivityReport) -> None:
    """conv_in's input is the sampler state x_k itself: its range per step is the recorded one."""
    model = tiny_model(1e3)
    calib = record_trajectories(model.unet, model.scheduler_config, 2, SamplerConfig(num_steps=K, seed=1),
                                progress=False)  # fmt: skip
    r = next(r for r in act_report.ranges if r.name == "conv_in.input_quant")
    for k in range(K):
        x = calib.x[calib.step == k]
        assert r.min[k] == pytest.approx(float(x.min()), abs=1e-4)
        assert r.max[k] == pytest.approx(float(x.max()), abs=1e-4)
        assert r.min[k] <= r.low[k] < r.high[k] <= r.max[k]
    widths = [h - lo for lo, h in zip(r.low, r.high, strict=True)]
    assert r.variation == pytest.approx(max(widths) / min(widths))


def test_suggest_picks_the_top_layer_first_within_the_budget(weight_report: SensitivityReport) -> None:
    top = weight_report.ranked("weight")[0]
    cost = top.params * (8 - 6) // 8
    s = suggest(weight_report, f"{cost + 40}B")
    assert s.patterns[0] == LAYER == top.name and s.extra_bytes <= s.budget_bytes == cost + 40
    assert suggest(weight_report, f"{cost - 1}B").patterns[:1] != [LAYER]
    for budget in (0.0, 0.01, 0.05, 1.0):
        s = suggest(weight_report, budget)
        assert s.extra_bytes <= s.budget_bytes == int(budget * fp32_weight_bytes(weight_report))


def test_report_json_round_trip(weight_report: SensitivityReport, tmp_path) -> None:
    path = weight_report.save(tmp_path / "a.json")
    assert json.loads(path.read_text())["_type"] == "adpdm.SensitivityReport"
    assert SensitivityReport.load(path) == weight_report


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        AnalyzeConfig(num_samples=0)
    with pytest.raises(ValueError, match="percentile"):
        AnalyzeConfig(percentile=10)
    with pytest.raises(ValueError, match="num_steps=100"):
        analyze(tiny_model(), QuantConfig(), CFG)
    with pytest.raises(ValueError, match="no quantized layer matches"):
        analyze(tiny_model(), "w8a8", AnalyzeConfig(steps=K, layers=("nothing*",), progress=False))
