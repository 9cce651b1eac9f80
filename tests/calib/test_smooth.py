import torch
from conftest import make_cond_unet, make_unet
from test_quantize import STEPS, _inputs, _run

import adpdm
from adpdm.calib.smooth import smooth_layers, smoothable
from adpdm.quantize import quant_layers


def _smoothed(unet, preset="w6a6"):
    model = type(unet).from_config(unet.config).eval()
    model.load_state_dict(unet.state_dict())
    adpdm.quantize_model(model, adpdm.QuantConfig.preset(preset, groups=2, num_steps=STEPS, smoothing=True))
    x, kwargs = _inputs(unet, batch=8)
    # wide input channels, as the real models have: scale some channels of the first layer's output
    with torch.no_grad():
        model.conv_in.weight[:2] *= 20

    def run():
        for k in range(STEPS):
            _run(model, k, x, kwargs)

    chosen = smooth_layers(model, run)
    return model, chosen, run


def test_smoothing_keeps_the_float_function_and_is_chosen_per_layer():
    unet = make_unet()
    model, chosen, _ = _smoothed(unet)
    layers = dict(quant_layers(model))
    assert set(chosen) == {n for n, layer in layers.items() if smoothable(layer)}
    assert any(a is not None for a in chosen.values())
    assert all(layers[n].smoothed == (a is not None) for n, a in chosen.items())
    # the same float network without smoothing (the quantizers are still off: state FP)
    assert adpdm.get_state(model) == adpdm.QuantState.FP
    reference = type(unet).from_config(unet.config).eval()
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if k in unet.state_dict()})
    x, kwargs = _inputs(unet)
    torch.testing.assert_close(_run(model, 1, x, kwargs), _run(reference, 1, x, kwargs), rtol=1e-4, atol=1e-4)


def test_smoothed_models_save_and_reload_bit_exact(tmp_path):
    for factory in (make_unet, make_cond_unet):
        model, _, run = _smoothed(factory())
        with adpdm.calibrate(model):
            run()
        adpdm.freeze(model)
        adpdm.save_quantized(model, tmp_path / factory.__name__)
        loaded = adpdm.load_quantized(tmp_path / factory.__name__)
        x, kwargs = _inputs(model)
        for k in range(STEPS):
            assert torch.equal(_run(loaded, k, x, kwargs), _run(model, k, x, kwargs))
