"""Mixed precision: ``QuantConfig.layer_bits`` from the config to the checkpoint and the ONNX export."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import make_cond_unet, make_unet
from pipeline_folders import ddim_folder
from test_quantize import STEPS, _inputs, _run, quantized_copy

import adpdm
from adpdm.cli.main import main
from adpdm.config import QuantConfig, parse_layer_bits
from adpdm.methods import METHODS
from adpdm.nn import QuantAttnProcessor, SplitActQuantizer
from adpdm.quantize import is_quantized, quant_layers

MIXED = (("mid_block.*", 8, 8), ("conv_out", 6, 16), ("up_blocks.0.attentions.0.to_q", 8, 8))


def _input_bits(layer) -> int:
    q = layer.input_quant
    if q is None:
        return 16
    if isinstance(q, SplitActQuantizer):
        assert q.parts[0].bits == q.parts[1].bits
        return q.parts[0].bits
    return q.bits


def _attention_bits(model) -> dict[str, tuple[int, int] | None]:
    """Attention name -> (Q/K/V bits, softmax bits), None when it runs in full precision."""
    out = {}
    for name, m in model.named_modules():
        if hasattr(m, "set_processor"):
            p = m.processor
            if isinstance(p, QuantAttnProcessor):
                assert p.q_quant.bits == p.k_quant.bits == p.v_quant.bits
                out[name] = (p.q_quant.bits, p.p_quant.bits)
            else:
                out[name] = None
    return out


def test_bits_for_precedence():
    cfg = QuantConfig.preset(
        "w4a8", first_last_bits=6, layer_bits=(("conv_in", 8, 8), ("mid_block.*", 8, 16), ("*attentions*", 6, 6))
    )
    assert cfg.bits_for("conv_in") == (8, 8)  # layer_bits over first_last_bits
    assert cfg.bits_for("conv_out") == (6, 8)  # first_last_bits: activations never below abits
    assert cfg.bits_for("mid_block.attentions.0.to_q") == (8, 16)  # the first match wins
    assert cfg.bits_for("up_blocks.0.attentions.1.to_v") == (6, 6)
    assert cfg.bits_for("down_blocks.0.resnets.0.conv1") == (4, 8)
    assert cfg.bits_for("conv_in.x") == (4, 8)  # fnmatch on the whole name
    # first_last_bits alone, as before layer_bits existed
    assert QuantConfig.preset("w4a16", first_last_bits=8).bits_for("conv_in") == (8, 16)
    assert QuantConfig.preset("w8a8", first_last_bits=4).bits_for("conv_out") == (4, 8)
    assert QuantConfig.preset("w4a8", first_last_bits=6).bits_for("conv_out.x") == (4, 8)
    assert QuantConfig.preset("w6a6").bits_for("conv_in") == (8, 8)  # the field's protocol by default
    assert QuantConfig.preset("w6a6-strict").bits_for("conv_in") == (6, 6)


def test_attention_abits_rule():
    cfg = QuantConfig.preset(
        "w6a6",
        layer_bits=(("down_blocks.1.attentions.0.to_q", 8, 8), ("down_blocks.1.attentions.0.*", 8, 16),
                    ("up_blocks.0.attentions.0", 4, 4), ("mid_block*", 8, 8)),
    )  # fmt: skip
    assert cfg.attention_abits("down_blocks.1.attentions.0") == 16  # N.* selects N; N.to_q alone does not
    assert cfg.attention_abits("up_blocks.0.attentions.0") == 4  # its own name
    assert cfg.attention_abits("up_blocks.0.attentions.1") == 6
    assert cfg.attention_abits("mid_block.attentions.0") == 8
    assert cfg.attention_abits("mid_block.attentions.0.transformer_blocks.0.attn1") == 8
    only_q = QuantConfig.preset("w6a6", layer_bits=(("down_blocks.1.attentions.0.to_q", 8, 8),))
    assert only_q.attention_abits("down_blocks.1.attentions.0") == 6


@pytest.mark.parametrize(
    "value, message",
    [
        ((("a", 9, 8),), "wbits must be an int in"),
        ((("a", 1, 8),), "wbits must be an int in"),
        ((("a", 8, 12),), "abits must be an int in"),
        ((("a", 8.0, 8),), "wbits must be an int in"),
        ((("a", True, 8),), "wbits must be an int in"),
        ((("a", 8),), "must be \\(pattern, wbits, abits\\)"),
        ((("", 8, 8),), "non-empty string"),
        (((3, 8, 8),), "non-empty string"),
        ("a=W8A8", "parse_layer_bits"),
        (("a", 8, 8), "must be \\(pattern, wbits, abits\\)"),
        ((("a", 8, 8), ("a", 6, 6)), "repeats"),
    ],
)
def test_layer_bits_validation(value, message):
    with pytest.raises(ValueError, match=message):
        QuantConfig(layer_bits=value)


def test_parse_layer_bits():
    assert parse_layer_bits(" mid_block.*=W8A8, conv_out=w6a16 ,") == (("mid_block.*", 8, 8), ("conv_out", 6, 16))
    assert parse_layer_bits("") == ()
    for bad in ("mid_block.*", "=W8A8", "a=8", "a=W8", "a=W8A8x"):
        with pytest.raises(ValueError, match="PATTERN=W<bits>A<bits>"):
            parse_layer_bits(bad)
    with pytest.raises(ValueError, match="abits"):
        parse_layer_bits("a=W8A9")


def test_json_round_trip():
    cfg = QuantConfig.preset("w4a8", layer_bits=[["mid_block.*", 8, 8], ("conv_out", 6, 16)])
    assert cfg.layer_bits == (("mid_block.*", 8, 8), ("conv_out", 6, 16))  # lists become tuples
    data = json.loads(cfg.to_json())
    assert data["layer_bits"] == [["mid_block.*", 8, 8], ["conv_out", 6, 16]]
    assert cfg.to_dict()["layer_bits"] == data["layer_bits"]
    back = QuantConfig.from_dict(data)
    assert back == cfg and isinstance(back.layer_bits[0], tuple)
    assert QuantConfig.from_dict({k: v for k, v in data.items() if k != "layer_bits"}).layer_bits == ()


def test_every_method_keeps_layer_bits():
    cfg = QuantConfig.preset("w4a8", num_steps=10, layer_bits=MIXED)
    for spec in METHODS.values():
        assert spec.quant_config(cfg).layer_bits == MIXED, spec.name


def test_quantize_model_gives_matched_layers_their_bits():
    unet = make_unet()
    cfg = QuantConfig.preset("w6a6", num_steps=STEPS, first_last_bits=8, layer_bits=MIXED)
    adpdm.quantize_model(unet, cfg)
    layers = dict(quant_layers(unet))
    assert len(layers) == 51
    for name, layer in layers.items():
        assert (layer.weight_quant.bits, _input_bits(layer)) == cfg.bits_for(name), name
    assert (unet.conv_in.weight_quant.bits, _input_bits(unet.conv_in)) == (8, 8)  # first_last_bits
    assert (unet.conv_out.weight_quant.bits, unet.conv_out.input_quant) == (6, None)  # layer_bits over it
    assert _input_bits(unet.mid_block.resnets[1].conv2) == 8 and unet.mid_block.resnets[1].conv2.weight_quant.bits == 8
    assert _input_bits(unet.up_blocks[1].resnets[0].conv_shortcut) == 6  # split skip input, both parts
    assert _attention_bits(unet) == {
        "down_blocks.1.attentions.0": (6, 8),
        "up_blocks.0.attentions.0": (6, 8),  # only its to_q layer is named
        "up_blocks.0.attentions.1": (6, 8),
        "mid_block.attentions.0": (8, 8),
    }
    assert layers["up_blocks.0.attentions.0.to_q"].weight_quant.bits == 8


def test_layer_bits_quantize_attention_of_an_a16_model():
    unet = make_unet()
    cfg = QuantConfig.preset("w4a16", num_steps=STEPS, layer_bits=(("mid_block.*", 8, 8), ("down_blocks.1.*", 8, 16)))
    adpdm.quantize_model(unet, cfg)
    assert _attention_bits(unet) == {
        "down_blocks.1.attentions.0": None,
        "up_blocks.0.attentions.0": None,
        "up_blocks.0.attentions.1": None,
        "mid_block.attentions.0": (8, 8),
    }
    assert _input_bits(unet.mid_block.attentions[0].to_q) == 8 and _input_bits(unet.conv_in) == 16


def test_condition_unet_attention_patterns():
    unet = make_cond_unet()
    adpdm.quantize_model(
        unet, QuantConfig.preset("w6a6", num_steps=STEPS, layer_bits=(("mid_block.attentions.0.*", 8, 8),))
    )
    bits = _attention_bits(unet)
    assert bits["mid_block.attentions.0.transformer_blocks.0.attn1"] == (8, 8)
    assert bits["mid_block.attentions.0.transformer_blocks.0.attn2"] == (8, 8)
    assert bits["down_blocks.0.attentions.0.transformer_blocks.0.attn1"] == (6, 8)


@pytest.mark.parametrize(
    "overrides",
    [
        {"layer_bits": (("mid_blok.*", 8, 8),)},
        {"layer_bits": (("mid_block.*", 8, 8), ("conv_Out", 8, 8))},
        {"layer_bits": (("conv_out", 8, 8),), "exclude": ("conv_out",)},
        {"layer_bits": (("mid_block.attentions.0", 8, 8),), "quantize_attention": False},
    ],
    ids=["typo", "case", "excluded", "attention-off"],
)
def test_a_pattern_that_matches_nothing_is_an_error(overrides):
    unet = make_unet()
    cfg = QuantConfig.preset("w4a8", num_steps=STEPS, **overrides)
    pattern = cfg.layer_bits[-1][0]
    with pytest.raises(ValueError, match="matches no quantized layer") as err:
        adpdm.quantize_model(unet, cfg)
    names = [n for n, _ in unet.named_modules()]
    listed = str(err.value).split("look like: ")[1].split(". ")[0].split(", ")
    assert repr(pattern) in str(err.value) and listed and set(listed) <= set(names)
    assert not is_quantized(unet) and not list(quant_layers(unet))  # nothing was touched


def test_a_pattern_naming_an_attention_is_used():
    unet = make_unet()
    cfg = QuantConfig.preset("w6a6", num_steps=STEPS, layer_bits=(("mid_block.attentions.0", 8, 8),))
    adpdm.quantize_model(unet, cfg)
    assert _attention_bits(unet)["mid_block.attentions.0"] == (8, 8)
    assert unet.mid_block.attentions[0].to_q.weight_quant.bits == 6


@pytest.mark.parametrize("factory", [make_unet, make_cond_unet], ids=["unet2d", "condition"])
def test_save_load_bit_exact_with_mixed_bits(tmp_path, factory):
    layer_bits = (("mid_block.*", 8, 8), ("conv_out", 6, 16), ("*attentions.0.*", 8, 6))
    model = adpdm.freeze(quantized_copy(factory(), "w4a8", groups=2, first_last_bits=8, layer_bits=layer_bits))
    adpdm.save_quantized(model, tmp_path)
    meta = json.loads((tmp_path / "quant_config.json").read_text())
    assert meta["quant_config"]["layer_bits"] == [list(e) for e in layer_bits]
    bits = {name: (layer.weight_quant.bits, _input_bits(layer)) for name, layer in quant_layers(model)}
    assert {w for w, _ in bits.values()} == {4, 6, 8}
    assert set(meta["packed"]) == {f"{n}.weight_codes" for n, (w, _) in bits.items() if w <= 4}
    loaded = adpdm.load_quantized(tmp_path)
    assert {name: (layer.weight_quant.bits, _input_bits(layer)) for name, layer in quant_layers(loaded)} == bits
    assert _attention_bits(loaded) == _attention_bits(model)
    x, kwargs = _inputs(model)
    for k in range(STEPS):
        assert torch.equal(_run(loaded, k, x, kwargs), _run(model, k, x, kwargs))


# A float sum in another order flips the odd activation code; a flip costs one step, so the
# cosine deficit grows with the step squared: about 4e-4 at A8 on these random tiny UNets
# (as for uniform W8A8), 16 times that at A6 (uniform W6A6 gives 0.993 too).
@pytest.mark.parametrize("preset, min_cos", [("w4a8", 0.999), ("w6a6", 0.99)])
def test_mixed_export_runs_in_onnxruntime_like_torch(tmp_path, preset, min_cos):
    from adpdm.deploy import OnnxDenoiser, export_onnx

    layer_bits = (("conv_in", 8, 8), ("mid_block.*", 8, 8), ("up_blocks.0.attentions.*", 8, 8), ("conv_out", 8, 16))
    model = adpdm.freeze(quantized_copy(make_unet(), preset, groups=2, layer_bits=layer_bits))
    assert {layer.weight_quant.bits for _, layer in quant_layers(model)} == {int(preset[1]), 8}
    result = export_onnx(model, tmp_path)
    assert result.exact_weights == result.layers == 51 and result.groups == 2
    denoiser = OnnxDenoiser(tmp_path)
    x, _ = _inputs(model)
    for k in range(STEPS):
        ref = _run(model, k, x, {})
        with adpdm.step_context(k):
            out = denoiser(x, torch.full((x.shape[0],), 999.0 - 250 * k)).sample
        assert F.cosine_similarity(ref.flatten(), out.flatten(), dim=0) > min_cos, k


def test_cli_layer_bits_reach_the_checkpoint(tmp_path, caplog):
    folder = ddim_folder(tmp_path / "ddim")
    quick = ["--steps", "4", "--num-samples", "2", "--calib-steps", "2", "--iters", "2", "--batch-size", "4"]
    args = ["quantize", "--model", str(folder), "--method", "rtn", "--preset", "w4a8", *quick]
    out = tmp_path / "q"
    assert main([*args, "--layer-bits", "mid_block.*=W8A8,conv_out=W8A16", "--out", str(out)]) == 0
    meta = json.loads((out / "quant_config.json").read_text())
    assert meta["quant_config"]["layer_bits"] == [["mid_block.*", 8, 8], ["conv_out", 8, 16]]
    loaded = adpdm.load_quantized(out)
    assert loaded.mid_block.resnets[0].conv1.weight_quant.bits == 8 and loaded.conv_out.input_quant is None
    assert loaded.conv_in.weight_quant.bits == 8  # the field's protocol: first and last layer at 8 bits
    assert main([*args, "--layer-bits", "mid_blok.*=W8A8", "--out", str(tmp_path / "typo")]) == 2
    assert "'mid_blok.*' matches no quantized layer" in caplog.text
    assert main([*args, "--layer-bits", "mid_block.*=8", "--out", str(tmp_path / "bad")]) == 2
    assert "PATTERN=W<bits>A<bits>" in caplog.text
