import torch
from conftest import make_cond_unet, make_unet
from diffusers import DDPMScheduler

import adpdm
from adpdm.calib.data import record_trajectories
from adpdm.models.units import find_units
from adpdm.nn.layers import QuantLayer
from adpdm.quantize import quant_layers
from adpdm.recon.capture import capture_inputs, capture_outputs, execution_order, unit_forward
from adpdm.sampling import SamplerConfig


def _quantized(unet):
    adpdm.quantize_model(unet, adpdm.QuantConfig(num_steps=3))
    return unet


def test_units_cover_every_quantized_layer_once():
    for unet in (_quantized(make_unet()), _quantized(make_cond_unet())):
        units = find_units(unet)
        owners = {}
        for name, _ in quant_layers(unet):
            owners[name] = [u.name for u in units if name == u.name or name.startswith(u.name + ".")]
        assert all(len(v) == 1 for v in owners.values()), owners
        kinds = {u.kind for u in units}
        assert {"resnet", "layer"} <= kinds and kinds & {"attention", "transformer"}
        assert all(isinstance(u.module, QuantLayer) for u in units if u.kind == "layer")


def test_execution_order_and_capture_reproduce_the_unit():
    unet = _quantized(make_unet())
    calib = record_trajectories(unet, dict(DDPMScheduler().config), 2, SamplerConfig(num_steps=3), progress=False)
    units = execution_order(unet, find_units(unet), calib, torch.device("cpu"))
    names = [u.name for u in units]
    # attention runs after the resnet it follows, the mid block before the up path
    assert names.index("down_blocks.1.resnets.0") < names.index("down_blocks.1.attentions.0")
    assert names.index("mid_block.resnets.1") < names.index("up_blocks.0.resnets.0")
    assert names[-1] == "conv_out"
    unit = next(u for u in units if u.name == "up_blocks.0.resnets.0")
    inputs = capture_inputs(unet, unit.module, calib, 4, torch.device("cpu"))
    outputs = capture_outputs(unet, unit.module, calib, 4, torch.device("cpu"))
    rows = torch.arange(len(calib))
    with torch.no_grad():
        torch.testing.assert_close(unit_forward(unit.module, inputs, rows), outputs)
