import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from conftest import make_unet
from deploy_helpers import SCHEDULER, STEPS, frozen_embedded, frozen_unet

import adpdm
from adpdm.cli.main import main
from adpdm.deploy import CalibrationSpec, OnnxDenoiser, RuntimeOptions, export_onnx
from adpdm.deploy.profile import op_profile
from adpdm.eval.metrics import psnr
from adpdm.sampling import SamplerConfig, sample


@pytest.fixture(scope="module")
def w8_groups() -> torch.nn.Module:
    return frozen_unet("w8a8", groups=2)


@pytest.fixture(scope="module")
def w8_export(w8_groups, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("w8_onnx")
    export_onnx(w8_groups, out, CalibrationSpec(SCHEDULER, num_samples=4))
    return out


def _external_locations(path):
    model = onnx.load(str(path), load_external_data=False)
    return {
        t.name: {e.key: e.value for e in t.external_data}
        for t in model.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    }, model


def _weight_codes(model):
    """Names of the integer weight tensors: first inputs of a DequantizeLinear, of 2 or more dims."""
    inits = {t.name: t for t in model.graph.initializer}
    return [
        n.input[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(inits[n.input[0]].dims) >= 2
    ]


def _q_scales(model):
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant"}
    values = []
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            t = inits.get(node.input[1]) or consts.get(node.input[1])
            values.append(float(onnx.numpy_helper.to_array(t)))
    return values


def test_one_graph_for_every_group_with_its_values_beside_it(w8_groups, w8_export):
    meta = json.loads((w8_export / "deploy.json").read_text())
    assert (meta["graphs"], meta["groups"], meta["group_values"]) == (["graph.onnx"], 2, "groups.safetensors")
    assert meta["step_to_graph"] == w8_groups.adpdm_partition.table.tolist()
    cfg = adpdm.quantize.get_config(w8_groups)  # the layer protocol travels with the export
    assert (meta["protocol"], meta["first_last_bits"], meta["layer_bits"]) == (cfg.protocol, cfg.first_last_bits, [])
    assert sorted(p.name for p in w8_export.iterdir()) == ["deploy.json", "graph.onnx", "groups.safetensors",
                                                           "weights.bin"]  # fmt: skip
    ext, model = _external_locations(w8_export / "graph.onnx")
    assert {e["location"] for e in ext.values()} == {"weights.bin"}
    weights = _weight_codes(model)
    # the codes of 1 kB or more are in the weight file, smaller ones inline (a reference costs more)
    assert len(weights) > 10 and len(set(weights) & set(ext)) > len(weights) / 2
    # each distinct payload is in the file once
    chunks = {(int(e["offset"]), int(e["length"])) for e in ext.values()}
    payload = sum(length for _, length in chunks)
    size = (w8_export / "weights.bin").stat().st_size
    assert payload <= size < payload + 64 * len(chunks)
    # per group: the values of the graph's initializers that differ between groups (activation scales and
    # zero points, int32 biases), and the graph holds group 0's
    from safetensors.numpy import load_file

    values = load_file(str(w8_export / "groups.safetensors"))
    inits = {t.name: t for t in model.graph.initializer}
    assert values and all(v.shape[0] == 2 and name in inits for name, v in values.items())
    assert all(np.array_equal(v[0], onnx.numpy_helper.to_array(inits[name])) for name, v in values.items())
    assert any(not np.array_equal(v[0], v[1]) for v in values.values())
    model = onnx.load(str(w8_export / "graph.onnx"))
    inits = {t.name: t for t in model.graph.initializer}
    codes = [onnx.numpy_helper.to_array(inits[name]) for name in _weight_codes(model)]
    assert codes and all(c.dtype in (np.uint8, np.int8) for c in codes)
    # nodes, values and initializers carry short names, not module paths (most of a graph's bytes)
    names = [n.name for n in model.graph.node] + [x for n in model.graph.node for x in n.output] + list(inits)
    assert all(len(x) <= 8 for x in names if x != "eps")
    # constants are initializers; the only shape read at run time is the batch size of the input
    assert not any(n.op_type == "Constant" for n in model.graph.node)
    assert [n.input[0] for n in model.graph.node if n.op_type == "Shape"] == ["sample"]


def test_the_shared_graph_computes_what_a_graph_per_group_does(w8_groups, w8_export, tmp_path, monkeypatch):
    """Graphs that differ in more than constants' values stay one per group (and older exports, format
    version 1, are always so); the shared graph's sessions give exactly their outputs, group by group."""
    import adpdm.deploy.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "share_graphs", lambda models: None)
    export_onnx(w8_groups, tmp_path, CalibrationSpec(SCHEDULER, num_samples=4))  # as w8_export
    meta = json.loads((tmp_path / "deploy.json").read_text())
    assert (meta["graphs"], meta["group_values"]) == (["graph_0.onnx", "graph_1.onnx"], None)
    for key in ("groups", "group_values"):
        del meta[key]
    (tmp_path / "deploy.json").write_text(json.dumps({**meta, "format_version": 1}))
    shared, separate = OnnxDenoiser(w8_export), OnnxDenoiser(tmp_path)
    x = torch.randn(2, w8_groups.config.in_channels, w8_groups.config.sample_size, w8_groups.config.sample_size)
    for k in range(STEPS):
        with adpdm.step_context(k):
            assert torch.equal(
                shared(x, torch.tensor(900 - 150 * k)).sample, separate(x, torch.tensor(900 - 150 * k)).sample
            )


def _cosines(unet, denoiser, steps=STEPS, scheduler=SCHEDULER, **labels):
    cos, graphs = [], []

    def compare(k, t, inp):
        with torch.no_grad():
            ref = unet(inp.sample, inp.timestep, class_labels=inp.class_labels).sample
        out = denoiser(inp.sample, inp.timestep, class_labels=inp.class_labels).sample
        cos.append(F.cosine_similarity(ref.flatten(), out.flatten(), dim=0).item())
        graphs.append(denoiser.graph_for(k))

    sample(unet, scheduler, 4, SamplerConfig(num_steps=steps, batch_size=4, seed=7), progress=False,
           callback=compare, **labels)  # fmt: skip
    return cos, graphs


def test_denoiser_picks_the_group_graph_at_every_step(w8_groups, w8_export):
    cos, graphs = _cosines(w8_groups, OnnxDenoiser(w8_export))
    assert graphs == w8_groups.adpdm_partition.table.tolist()
    # random-weight tiny UNets amplify the odd rounding flip (float sums in another order), hence 0.99
    assert min(cos) > 0.99, cos


@pytest.fixture(scope="module")
def embedded_w8():
    return frozen_embedded("w8a8", groups=2, steps=10)


def test_exact_export_matches_torch_on_the_embedded_model(embedded_w8, tmp_path):
    unet, scheduler = embedded_w8
    export_onnx(unet, tmp_path)
    cos, graphs = _cosines(unet, OnnxDenoiser(tmp_path), steps=10, scheduler=scheduler)
    assert min(cos) > 0.999, cos
    assert set(graphs) == {0, 1}
    cfg = SamplerConfig(num_steps=10, batch_size=4, seed=5)
    ref = sample(unet, scheduler, 4, cfg, progress=False)
    out = sample(OnnxDenoiser(tmp_path), scheduler, 4, cfg, progress=False)
    assert psnr(out.images, ref.images).min() > 30.0


@pytest.mark.parametrize("preset, smoothing", [("w4g64a8", False), ("w6a6", True)], ids=["grouped-uint4", "smoothed"])
def test_new_levers_export_above_30_db_on_the_embedded_model(tmp_path, preset, smoothing):
    """Grouped 4-bit weights (blocked uint4 DequantizeLinear) and smoothed inputs (a Mul before each
    smoothed layer's input quantizer): samples from the same noise above 30 dB PSNR against PyTorch on
    average. At 6-bit activations a float sum in another order flips the odd code, and 10 steps amplify
    it: single samples of the unsmoothed W6A6 model fall to 25 dB as well."""
    unet, scheduler = frozen_embedded(preset, groups=2, steps=10, smoothing=smoothing)
    export_onnx(unet, tmp_path)
    cfg = SamplerConfig(num_steps=10, batch_size=4, seed=5)
    ref = sample(unet, scheduler, 4, cfg, progress=False)
    out = sample(OnnxDenoiser(tmp_path), scheduler, 4, cfg, progress=False)
    assert psnr(out.images, ref.images).mean() > 30.0


def test_int8_conv_export_on_the_embedded_model(embedded_w8, tmp_path):
    """Output re-quantization costs accuracy at the last, most sensitive step (see the README)."""
    unet, scheduler = embedded_w8
    export_onnx(unet, tmp_path, CalibrationSpec(scheduler))
    cos, _ = _cosines(unet, OnnxDenoiser(tmp_path), steps=10, scheduler=scheduler)
    assert min(cos[:-1]) > 0.999 and cos[-1] > 0.9, cos
    cfg = SamplerConfig(num_steps=10, batch_size=4, seed=5)
    ref = sample(unet, scheduler, 4, cfg, progress=False)
    out = sample(OnnxDenoiser(tmp_path), scheduler, 4, cfg, progress=False)
    assert psnr(out.images, ref.images).mean() > 25.0


@pytest.mark.parametrize(("preset", "weight_format"), [("w8a8", "uint8"), ("w4a8", "uint8"), ("w4a8-strict", "int8r")])
def test_tiny_models_export_and_sample(tmp_path, preset, weight_format):
    """Every weight exact; signed reduced-range codes only when every layer is 4-bit (the 8-bit first and
    last layer of the field's protocol do not fit them, so the default W4A8 exports uint8 codes)."""
    unet = frozen_unet(preset, groups=2)
    result = export_onnx(unet, tmp_path, CalibrationSpec(SCHEDULER))
    assert result.groups == 2 and result.exact_weights == result.layers
    assert json.loads((tmp_path / "deploy.json").read_text())["weight_format"] == weight_format
    cos, _ = _cosines(unet, OnnxDenoiser(tmp_path))
    assert min(cos) > 0.99, cos


def test_class_conditional_export(tmp_path):
    unet = frozen_unet("w8a8", groups=1, num_class_embeds=3)
    export_onnx(unet, tmp_path, CalibrationSpec(SCHEDULER, num_classes=3))
    denoiser = OnnxDenoiser(tmp_path)
    assert "class_labels" in denoiser.inputs
    cos, _ = _cosines(unet, denoiser, num_classes=3)
    assert min(cos) > 0.99, cos


def test_convolutions_run_as_qlinearconv(w8_export, tmp_path):
    denoiser = OnnxDenoiser(w8_export, RuntimeOptions(profile_prefix=str(tmp_path / "prof")))
    with adpdm.step_context(0):
        denoiser(torch.randn(2, 1, 16, 16), torch.tensor(999))
    ops = {row.op: row.calls for row in op_profile(denoiser.end_profiling()[0])}
    requantized = json.loads((w8_export / "deploy.json").read_text())["requantized_outputs"]
    # most re-quantized convolutions fuse (a few next to Resize / Concat stay float: see the README)
    assert ops.get("QLinearConv", 0) >= 0.8 * len(requantized) > 0, ops


def test_denoiser_needs_the_step_with_several_graphs(w8_export):
    with pytest.raises(RuntimeError, match="step_context"):
        OnnxDenoiser(w8_export)(torch.randn(1, 1, 16, 16), torch.tensor(999))


def test_clear_errors(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    assert main(["export", "--quantized", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "quant_config.json" in caplog.text or "not" in caplog.text
    assert main(["export", "--quantized", str(tmp_path), "--format", "tflite", "--out", str(tmp_path / "o")]) == 2
    assert "unknown export format 'tflite'" in caplog.text
    with pytest.raises(FileNotFoundError, match="adpdm export"):
        OnnxDenoiser(tmp_path / "empty")
    assert main(["sample", "--backend", "onnxruntime", "--out", str(tmp_path / "g.png")]) == 2
    assert "--onnx DIR" in caplog.text


def test_unquantized_model_is_refused(tmp_path):
    with pytest.raises(ValueError):
        export_onnx(make_unet(), tmp_path)


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
    reason="onnxruntime has no CUDA provider here",
)
def test_cuda_provider_runs_the_export(w8_groups, w8_export):
    denoiser = OnnxDenoiser(w8_export, RuntimeOptions(providers=("CUDAExecutionProvider", "CPUExecutionProvider")))
    assert denoiser.sessions[0].get_providers()[0] == "CUDAExecutionProvider"
    cos, _ = _cosines(w8_groups, denoiser)
    assert min(cos) > 0.99, cos


def test_slim_keeps_the_function_and_the_dynamic_batch(w8_groups):
    import onnxruntime as ort

    from adpdm.deploy.export_mode import export_mode, int8_weight
    from adpdm.deploy.graph import slim, store_int8_weights
    from adpdm.deploy.onnx_export import PREFIX, export_graph
    from adpdm.quantize import act_quantizers, quant_layers

    weights = {name: int8_weight(layer) for name, layer in quant_layers(w8_groups)}
    with export_mode(w8_groups, [0] * len(list(act_quantizers(w8_groups))), weights):
        model = export_graph(w8_groups.cpu().eval())
    store_int8_weights(model, weights, PREFIX)
    small = slim(onnx.ModelProto.FromString(model.SerializeToString()))
    assert len(small.SerializeToString()) < 0.7 * len(model.SerializeToString())
    assert len(small.graph.node) < 0.8 * len(model.graph.node)
    rng = np.random.default_rng(0)
    for batch in (1, 3):  # the graphs were traced at batch 2
        feed = {"sample": rng.standard_normal((batch, 1, 16, 16)).astype(np.float32),
                "timestep": np.full((batch,), 420.0, np.float32)}  # fmt: skip
        a, b = (
            ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
            for m in (model, small)
        )
        assert a.shape == (batch, 1, 16, 16)
        np.testing.assert_array_equal(a, b)


def _squeeze_if_graph() -> onnx.ModelProto:
    """``y = squeeze(relu(x), 1)`` for x of (batch, 4, 6) as the exporter writes a squeeze of a dimension it
    cannot size: an ``If`` on that dimension being 1, whose then-branch squeezes."""
    from onnx import TensorProto, helper, numpy_helper

    out = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, None)  # noqa: E731
    then = helper.make_graph([helper.make_node("Squeeze", ["h", "axes"], ["t"])], "then", [], [out("t")])
    other = helper.make_graph([helper.make_node("Identity", ["h"], ["e"])], "else", [], [out("e")])
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Shape", ["h"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["d"], axis=0), helper.make_node("Equal", ["d", "one"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]  # fmt: skip
    consts = [numpy_helper.from_array(np.array(1, np.int64), "one"), numpy_helper.from_array(np.array([1]), "axes")]
    graph = helper.make_graph(nodes, "squeeze", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4, 6])],
                              [out("y")], initializer=consts)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_slim_inlines_an_if_on_a_static_dimension():
    """ONNX Runtime refuses the exported graph (a Squeeze of a dimension it knows is 4, in the branch that
    never runs); after slim the If is gone and the graph computes relu(x)."""
    import onnxruntime as ort

    from adpdm.deploy.graph import slim

    model = _squeeze_if_graph()
    with pytest.raises(Exception, match="Squeeze"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    small = slim(model)
    assert "If" not in {n.op_type for n in small.graph.node}
    x = np.random.default_rng(0).standard_normal((3, 4, 6)).astype(np.float32)
    session = ort.InferenceSession(small.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(x, 0))


def test_denoisers_the_export_does_not_cover_are_refused_by_name():
    from deploy_helpers import make_pixart
    from diffusers import UNet1DModel

    from adpdm.deploy.onnx_export import check_exportable

    with pytest.raises(ValueError, match="PixArtTransformer2DModel; this model's is UNet1DModel"):
        check_exportable(UNet1DModel(block_out_channels=(8, 8, 8), norm_num_groups=8))
    check_exportable(make_pixart())  # 256 and 512 pixels: no micro-conditions
    with pytest.raises(ValueError, match="use_additional_conditions"):
        check_exportable(make_pixart(use_additional_conditions=True))  # PixArt-alpha at 1024: resolution, aspect


def _weight_nodes(model):
    inits = {t.name: t for t in model.graph.initializer}
    return [(n, inits[n.input[0]]) for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
            and len(inits[n.input[0]].dims) >= 2]  # fmt: skip


@pytest.mark.parametrize("preset", ["w4a8", "w4g32a8"])
def test_four_bit_weights_are_stored_as_four_bits(tmp_path, preset):
    """``uint4``: the 4-bit layers' codes and zero points as ONNX uint4 (the 8-bit first and last layer
    stay uint8), opset 21; grouped scales (auto -> uint4) as blocked DequantizeLinear; same function."""
    unet = frozen_unet(preset, groups=2)
    grouped = preset != "w4a8"
    export_onnx(unet, tmp_path / "u8", weight_format="uint8")
    export_onnx(unet, tmp_path / "u4", weight_format="auto" if grouped else "uint4")
    meta = json.loads((tmp_path / "u4" / "deploy.json").read_text())
    assert (meta["weight_format"], meta["opset"], meta["weight_group_size"]) == ("uint4", 21, 32 if grouped else None)
    nodes = _weight_nodes(onnx.load(str(tmp_path / "u4" / meta["graphs"][0])))
    four = [n for n, t in nodes if t.data_type == onnx.TensorProto.UINT4]
    assert len(four) == len(nodes) - 2  # conv_in and conv_out keep 8 bits
    blocks = {a.i for n, _ in nodes for a in n.attribute if a.name == "block_size"}
    assert blocks == ({32} if grouped else set())
    size = lambda d: (d / "weights.bin").stat().st_size  # noqa: E731
    assert size(tmp_path / "u4") < 0.7 * size(tmp_path / "u8")
    for folder in ("u8", "u4"):
        cos, _ = _cosines(unet, OnnxDenoiser(tmp_path / folder))
        assert min(cos) > 0.99, (folder, cos)


def test_grouped_weights_refuse_signed_formats(tmp_path):
    with pytest.raises(ValueError, match="grouped weight scales export as uint8 or uint4"):
        export_onnx(frozen_unet("w4g32a8", groups=1), tmp_path, weight_format="int8r")


def test_smoothed_model_exports_with_its_input_scaling(tmp_path):
    """Smoothing adds one Mul per smoothed layer before its input quantizer; the graph matches PyTorch."""
    from adpdm.calib.smooth import smooth_layers

    torch.manual_seed(0)
    unet = make_unet()
    recorded = []
    sample(unet, SCHEDULER, 4, SamplerConfig(num_steps=STEPS, batch_size=4), progress=False,
           callback=lambda k, t, inp: recorded.append((k, inp)))  # fmt: skip
    adpdm.quantize_model(unet, adpdm.QuantConfig.preset("w6a6", groups=2, num_steps=STEPS, smoothing=True))

    def run():
        with torch.no_grad():
            for k, inp in recorded:
                with adpdm.step_context(k):
                    unet(inp.sample, inp.timestep)

    chosen = smooth_layers(unet, run)
    with adpdm.calibrate(unet):
        run()
    adpdm.freeze(unet)
    export_onnx(unet, tmp_path)
    cos, _ = _cosines(unet, OnnxDenoiser(tmp_path))
    assert min(cos) > 0.99, cos
    assert sum(a is not None for a in chosen.values()) > 0
