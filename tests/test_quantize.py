import pytest
import torch
import torch.nn.functional as F
from conftest import make_cond_unet, make_unet
from diffusers.models.attention_processor import Attention
from torch import nn

import adpdm
from adpdm.nn import QuantAttnProcessor, SplitActQuantizer
from adpdm.quantize import act_quantizers, quant_layers

STEPS = 4


def _inputs(unet, batch=4):
    cfg = unet.config
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    kwargs = {}
    if getattr(cfg, "cross_attention_dim", None):
        kwargs["encoder_hidden_states"] = torch.randn(batch, 5, cfg.cross_attention_dim)
    if getattr(cfg, "num_class_embeds", None):
        kwargs["class_labels"] = torch.arange(batch) % cfg.num_class_embeds
    return x, kwargs


def _run(unet, k, x, kwargs):
    with torch.no_grad(), adpdm.step_context(k):
        return unet(x, 999 - 250 * k, **kwargs).sample


def quantized_copy(unet, preset="w8a8", groups=2, **overrides):
    model = type(unet).from_config(unet.config).eval()
    model.load_state_dict(unet.state_dict())
    cfg = adpdm.QuantConfig.preset(preset, groups=groups, num_steps=STEPS, **overrides)
    adpdm.quantize_model(model, cfg)
    x, kwargs = _inputs(unet, batch=8)
    with adpdm.calibrate(model):
        for k in range(STEPS):
            _run(model, k, x, kwargs)
    return model


def _cosine(a, b):
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


@pytest.mark.parametrize(
    "factory",
    [make_unet, lambda: make_unet(attention=False), lambda: make_unet(num_class_embeds=11), make_cond_unet],
    ids=["attn", "no-attn", "class-embed", "condition"],
)
def test_w8a8_close_and_w4a8_further(factory):
    unet = factory()
    x, kwargs = _inputs(unet, batch=8)
    fp = [_run(unet, k, x, kwargs) for k in range(STEPS)]
    w8 = quantized_copy(unet, "w8a8")
    w4 = quantized_copy(unet, "w4a8")
    assert adpdm.get_state(w8) == adpdm.QuantState.CALIBRATED
    cos8 = [_cosine(_run(w8, k, x, kwargs), fp[k]) for k in range(STEPS)]
    cos4 = [_cosine(_run(w4, k, x, kwargs), fp[k]) for k in range(STEPS)]
    assert min(cos8) > 0.99
    assert sum(cos4) < sum(cos8)


def test_every_conv_and_linear_wrapped_unless_excluded():
    unet = make_unet()
    names = {n for n, m in unet.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    adpdm.quantize_model(unet, adpdm.QuantConfig(num_steps=STEPS, exclude=("conv_out", "*.to_k")))
    wrapped = {n for n, _ in quant_layers(unet)}
    excluded = {n for n in names if n == "conv_out" or n.endswith(".to_k")}
    assert excluded and wrapped == names - excluded
    assert type(unet.conv_out) is nn.Conv2d
    assert "time_embedding.linear_1" in wrapped  # the time embedding is quantized too


def test_attention_and_skip_split_quantizers_installed():
    unet = make_unet()
    adpdm.quantize_model(unet, adpdm.QuantConfig(num_steps=STEPS))
    processors = [m.processor for m in unet.modules() if isinstance(m, Attention)]
    assert processors and all(isinstance(p, QuantAttnProcessor) for p in processors)
    splits = {n: m.input_quant for n, m in quant_layers(unet) if isinstance(m.input_quant, SplitActQuantizer)}
    # every up-path resnet with a 1x1 shortcut consumes cat([hidden, skip])
    assert set(splits) == {
        n for n, _ in unet.named_modules() if n.startswith("up_blocks") and n.endswith("conv_shortcut")
    }
    for name, q in splits.items():
        assert 0 < q.split < unet.get_submodule(name).in_channels


def test_fp_state_is_exact_and_quantizers_share_one_partition():
    unet = make_unet()
    x, kwargs = _inputs(unet)
    ref = _run(unet, 0, x, kwargs)
    adpdm.quantize_model(unet, adpdm.QuantConfig(num_steps=STEPS, groups=2))
    assert adpdm.get_state(unet) == adpdm.QuantState.FP
    torch.testing.assert_close(_run(unet, 0, x, kwargs), ref, rtol=1e-4, atol=1e-5)
    parts = {id(q.partition) for _, q in act_quantizers(unet)}
    assert parts == {id(unet.adpdm_partition)}
    assert sum(1 for k in unet.state_dict() if k.endswith("partition.alpha")) == 1


def test_per_layer_partition_option():
    unet = make_unet()
    adpdm.quantize_model(unet, adpdm.QuantConfig(num_steps=STEPS, groups=2, partition="per_layer"))
    quantizers = list(act_quantizers(unet))
    assert len({id(q.partition) for _, q in quantizers}) == len(quantizers)


def test_groups_need_step_context():
    model = quantized_copy(make_unet(), groups=2)
    x, _ = _inputs(model)
    with pytest.raises(RuntimeError, match="step_context"), torch.no_grad():
        model(x, 10)


def test_lifecycle_errors_and_calibrate_restores_state_on_error():
    unet = make_unet()
    with pytest.raises(ValueError, match="not quantized"):
        adpdm.freeze(unet)
    adpdm.quantize_model(unet, adpdm.QuantConfig(num_steps=STEPS))
    with pytest.raises(ValueError, match="calibrate"):
        adpdm.freeze(unet)
    with pytest.raises(ValueError, match="already quantized"):
        adpdm.quantize_model(unet, adpdm.QuantConfig(num_steps=STEPS))
    x, kwargs = _inputs(unet)
    with pytest.raises(KeyError), adpdm.calibrate(unet):
        _run(unet, 0, x, kwargs)
        raise KeyError("interrupted")
    assert adpdm.get_state(unet) == adpdm.QuantState.FP
    assert not any(q.stats.observed for _, q in act_quantizers(unet))


def test_freeze_keeps_outputs_and_stores_integers():
    model = quantized_copy(make_unet(), "w4a8-strict")  # every layer 4-bit
    x, kwargs = _inputs(model)
    before = [_run(model, k, x, kwargs) for k in range(STEPS)]
    adpdm.freeze(model)
    assert adpdm.get_state(model) == adpdm.QuantState.FROZEN
    for k in range(STEPS):
        torch.testing.assert_close(_run(model, k, x, kwargs), before[k])
    for _, layer in quant_layers(model):
        assert layer.weight_codes.dtype == torch.uint8 and int(layer.weight_codes.max()) <= 15
        assert "weight" not in dict(layer.named_parameters())
    with pytest.raises(ValueError, match="frozen"):
        adpdm.calibrate(model).__enter__()


def test_quantization_disabled_gives_fp_outputs():
    unet = make_unet()
    x, kwargs = _inputs(unet)
    ref = _run(unet, 1, x, kwargs)
    model = quantized_copy(unet, "w4a8")
    with adpdm.quantization_disabled(model):
        torch.testing.assert_close(_run(model, 1, x, kwargs), ref, rtol=1e-4, atol=1e-5)
    assert adpdm.get_state(model) == adpdm.QuantState.CALIBRATED


def test_first_last_bits():
    unet = make_unet()
    adpdm.quantize_model(unet, adpdm.QuantConfig.preset("w4a8", num_steps=STEPS, first_last_bits=8))
    assert unet.conv_in.weight_quant.bits == 8 and unet.conv_out.weight_quant.bits == 8
    assert unet.down_blocks[0].resnets[0].conv1.weight_quant.bits == 4


def test_unsupported_model_is_rejected():
    with pytest.raises(TypeError, match="unsupported"):
        adpdm.quantize_model(nn.Sequential(nn.Linear(2, 2)), adpdm.QuantConfig())
