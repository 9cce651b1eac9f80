import json

import pytest
import torch
from conftest import make_cond_unet, make_unet
from safetensors.torch import save_file
from test_quantize import STEPS, _inputs, _run, quantized_copy

import adpdm
from adpdm.checkpoint import CheckpointError


def _frozen(unet, preset, **kw):
    return adpdm.freeze(quantized_copy(unet, preset, **kw))


@pytest.mark.parametrize("preset", ["w4a8", "w8a8", "w6a6", "w4g32a8"])
@pytest.mark.parametrize("factory", [make_unet, make_cond_unet], ids=["unet2d", "condition"])
def test_save_load_bit_exact(tmp_path, preset, factory):
    kw = {"weight_group_size": 8} if "g" in preset else {}  # tiny UNets: 16-32 channels
    model = _frozen(factory(), preset, groups=2, **kw)
    adpdm.save_quantized(model, tmp_path)
    loaded = adpdm.load_quantized(tmp_path)
    assert adpdm.get_state(loaded) == adpdm.QuantState.FROZEN
    x, kwargs = _inputs(model)
    for k in range(STEPS):
        assert torch.equal(_run(loaded, k, x, kwargs), _run(model, k, x, kwargs))
    assert torch.equal(loaded.adpdm_partition.table, model.adpdm_partition.table)


def test_per_layer_partition_round_trip(tmp_path):
    model = _frozen(make_unet(), "w8a8", groups=2, partition="per_layer")
    adpdm.save_quantized(model, tmp_path)
    loaded = adpdm.load_quantized(tmp_path)
    x, kwargs = _inputs(model)
    assert torch.equal(_run(loaded, 3, x, kwargs), _run(model, 3, x, kwargs))


@pytest.mark.parametrize("preset, bound", [("w4a8", 1 / 6), ("w8a8", 1 / 3.5)])
def test_checkpoint_size_bounds(tmp_path, preset, bound):
    unet = make_unet(channels=(32, 64))
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, tmp_path / "fp32.safetensors")
    fp_bytes = (tmp_path / "fp32.safetensors").stat().st_size
    adpdm.save_quantized(_frozen(unet, preset, groups=4), tmp_path / "q")
    q_bytes = (tmp_path / "q" / "model.safetensors").stat().st_size
    assert q_bytes <= bound * fp_bytes, (q_bytes, fp_bytes)


def test_only_frozen_models_are_saved(tmp_path):
    with pytest.raises(ValueError, match="freeze"):
        adpdm.save_quantized(quantized_copy(make_unet()), tmp_path)


@pytest.fixture
def saved(tmp_path):
    adpdm.save_quantized(_frozen(make_unet(), "w4a8"), tmp_path)
    return tmp_path


def test_truncated_tensors(saved):
    path = saved / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        adpdm.load_quantized(saved)


def test_corrupted_byte(saved):
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        adpdm.load_quantized(saved)


def test_missing_files_and_bad_json(saved, tmp_path_factory):
    with pytest.raises(CheckpointError, match="not a folder"):
        adpdm.load_quantized(saved / "nope")
    (saved / "quant_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        adpdm.load_quantized(saved)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(CheckpointError, match="missing"):
        adpdm.load_quantized(empty)


def test_mismatched_config(saved):
    meta = json.loads((saved / "quant_config.json").read_text())
    meta["quant_config"]["groups"] = 3  # tensors were saved with 1 group
    (saved / "quant_config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        adpdm.load_quantized(saved)


def test_mismatched_architecture(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["block_out_channels"] = [32, 32]
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        adpdm.load_quantized(saved)


def test_unknown_model_class(saved):
    meta = json.loads((saved / "quant_config.json").read_text())
    meta["model_class"] = "os.system"
    (saved / "quant_config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unsupported model class"):
        adpdm.load_quantized(saved)
