"""Diffusion transformers through every command: a class-conditional DiT (a latent DiTPipeline of tiny
random parts) and a text-conditioned PixArt (a PixArtAlphaPipeline); units, protocol and refusals."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from pipeline_folders import dit_folder, fake_inception, pixart_folder, tiny_dit, write_images

import adpdm
from adpdm.cli.main import main
from adpdm.models.unet import unet_of
from adpdm.models.units import find_units
from adpdm.quantize import quant_layers

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

K = 4
QUICK = ["--steps", str(K), "--num-samples", "2", "--calib-steps", "2", "--iters", "2", "--batch-size", "4",
         "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    """A DiTPipeline folder and its adpdm W4A8 checkpoint (2 timestep groups), made once for the module."""
    root = tmp_path_factory.mktemp("dit")
    folder = dit_folder(root / "dit")
    q = root / "q"
    assert main(["quantize", "--model", str(folder), "--method", "adpdm", "--groups", "2", "--preset", "w4a8",
                 "--out", str(q), *QUICK]) == 0  # fmt: skip
    return SimpleNamespace(root=root, folder=folder, q=q)


def test_a_dit_quantizes_by_transformer_blocks_under_the_field_protocol(dit):
    unet = adpdm.load_quantized(dit.q)
    units = [u for u in find_units(unet) if u.kind == "transformer"]
    assert [u.name for u in units] == ["transformer_blocks.0", "transformer_blocks.1"]
    layers = dict(quant_layers(unet))
    # patch embedding and final projection at 8 bits; every other Linear (attention, MLP, adaLN, timestep) at W4
    assert layers["pos_embed.proj"].weight_quant.bits == layers["proj_out_2"].weight_quant.bits == 8
    for name in ("attn1.to_q", "ff.net.2", "norm1.linear", "norm1.emb.timestep_embedder.linear_1"):
        assert layers[f"transformer_blocks.0.{name}"].weight_quant.bits == 4
    report = json.loads((dit.q / "report.json").read_text())
    assert {u["name"] for u in report["unit_losses"]} >= {"transformer_blocks.0", "transformer_blocks.1"}


def test_dit_checkpoint_reloads_bit_exact(dit):
    a, b = adpdm.load_quantized(dit.q), adpdm.load_quantized(dit.q)
    x, t, y = torch.randn(2, 4, 16, 16), torch.full((2,), 700), torch.tensor([3, 10])
    with adpdm.step_context(1), torch.no_grad():
        assert torch.equal(a(x, t, class_labels=y).sample, b(x, t, class_labels=y).sample)


def test_sample_and_evaluate_decode_the_latents(dit, tmp_path):
    from adpdm.models.loading import load_model

    model = load_model(str(dit.folder))
    assert model.kind == "class" and model.latent and (model.num_classes, model.null_class) == (10, 10)
    assert main(["sample", "--quantized", str(dit.q), "--num", "2", "--labels", "1,2", "--compare",
                 "--out", str(tmp_path / "g.png")]) == 0  # fmt: skip
    inception = fake_inception(tmp_path / "inception.pt")
    write_images(tmp_path / "ref", 4)
    js = tmp_path / "eval.json"
    assert main(["evaluate", "--quantized", str(dit.q), "--num-samples", "4", "--inception", str(inception),
                 "--ref", str(tmp_path / "ref"), "--json", str(js)]) == 0  # fmt: skip
    result = json.loads(js.read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["quantized"]["psnr"] > 15 and rows["quantized"]["fid_fp"] >= 0
    assert result["sampler"]["guidance_scale"] == 2.0  # the DiT's own null label allows guidance


def test_analyze_a_dit(dit, tmp_path):
    assert main(["analyze", "--model", str(dit.folder), "--steps", str(K), "--num-samples", "2", "--top", "3",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    names = {r["name"] for r in json.loads((tmp_path / "analysis.json").read_text())["layers"]}
    assert "transformer_blocks.1.ff.net.2" in names and "transformer_blocks.0.norm1.linear" in names


def test_dit_exports_and_onnxruntime_samples_match_pytorch(dit, tmp_path):
    pytest.importorskip("onnxruntime")
    from adpdm.deploy import OnnxDenoiser
    from adpdm.eval.metrics import psnr
    from adpdm.generate import Conditioning, generate
    from adpdm.models.loading import load_model
    from adpdm.sampling import SamplerConfig

    assert main(["export", "--quantized", str(dit.q), "--out", str(tmp_path / "onnx"), "--exact"]) == 0
    model, unet = load_model(str(dit.folder)), adpdm.load_quantized(dit.q)
    cfg, cond = SamplerConfig(num_steps=K, guidance_scale=2.0), Conditioning(labels=[1, 5, 9])
    ref = generate(model, unet, 3, cfg, cond, progress=False).images
    out = generate(model, OnnxDenoiser(tmp_path / "onnx"), 3, cfg, cond, progress=False).images
    assert out.shape == (3, 3, 32, 32) and float(psnr(out, ref).mean()) > 30
    assert main(["bench-deploy", "--quantized", str(dit.q), "--quick", "--name", "dit", "--out-dir",
                 str(tmp_path)]) == 0  # fmt: skip
    result = json.loads((tmp_path / "deploy_dit.json").read_text())
    assert result["quantized_runner"] == "int8"
    # decoded images of ONNX Runtime against PyTorch on the same noise, both exports
    assert all(v["int8_exact"] > 30 and v["int8"] > 30 for v in result["psnr_vs_torch"].values())


def test_bench_compares_methods_on_a_dit(dit, tmp_path):
    assert main(["bench", "--models", str(dit.folder), "--methods", "rtn,adpdm", "--presets", "w8a8", "--draws", "1",
                 "--num-samples", "4", "--steps", "8", "--iters", "2", "--eval", '{"inception": false}',
                 "--out", str(tmp_path), "--name", "dit"]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "results/dit.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"fp32", "rtn", "adpdm"}
    assert all(r["psnr"] > 15 for r in rows if r["method"] != "fp32")


def test_unsupported_denoisers_are_refused_naming_their_class(tmp_path, caplog):
    from diffusers import DanceDiffusionPipeline, DDIMScheduler, PixArtTransformer2DModel, UNet1DModel

    pixart = PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                      num_layers=1, sample_size=8, patch_size=2, cross_attention_dim=16,
                                      caption_channels=16, norm_num_groups=1)  # fmt: skip
    assert unet_of(SimpleNamespace(transformer=pixart)) is pixart  # supported, as a text-conditioned transformer
    unet = UNet1DModel(sample_size=64, in_channels=2, out_channels=2, block_out_channels=(8, 16, 16),
                       down_block_types=("DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"),
                       up_block_types=("AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"),
                       mid_block_type="UNetMidBlock1D", extra_in_channels=16, time_embedding_type="fourier",
                       use_timestep_embedding=False,
                       flip_sin_to_cos=True, act_fn=None, norm_num_groups=8)  # fmt: skip
    DanceDiffusionPipeline(unet=unet, scheduler=DDIMScheduler()).save_pretrained(tmp_path / "audio")
    assert main(["quantize", "--model", str(tmp_path / "audio"), "--out", str(tmp_path / "q"), *QUICK]) == 2
    assert "its denoiser is UNet1DModel" in caplog.text and "DiTTransformer2DModel" in caplog.text
    assert not (tmp_path / "q").exists()


def test_a_dit_without_learned_variance_samples_too():
    from adpdm.sampling import SamplerConfig, sample

    out = sample(tiny_dit(learn_sigma=False), {"num_train_timesteps": 1000}, 2, SamplerConfig(num_steps=2),
                 num_classes=10, progress=False, clamp=False)  # fmt: skip
    assert out.images.shape == (2, 4, 16, 16)


@pytest.fixture(scope="module")
def pixart(tmp_path_factory):
    """A PixArtAlphaPipeline folder, prompts and its adpdm W8A8 checkpoint (2 timestep groups)."""
    root = tmp_path_factory.mktemp("pixart")
    folder = pixart_folder(root / "pixart")
    (root / "prompts.txt").write_text("a red cat\na blue dog\n")
    prompts = ["--prompts", str(root / "prompts.txt"), "--guidance", "3"]
    q = root / "q"
    assert main(["quantize", "--model", str(folder), "--method", "adpdm", "--groups", "2", "--preset", "w8a8",
                 "--out", str(q), *QUICK, *prompts]) == 0  # fmt: skip
    return SimpleNamespace(root=root, folder=folder, q=q, prompts=prompts)


def test_pixart_quantizes_samples_and_evaluates_through_its_pipeline(pixart, tmp_path):
    unet = adpdm.load_quantized(pixart.q)
    assert [u.name for u in find_units(unet) if u.kind == "transformer"] == [
        "transformer_blocks.0", "transformer_blocks.1"]  # fmt: skip
    layers = dict(quant_layers(unet))
    assert "transformer_blocks.0.attn2.to_k" in layers and "caption_projection.linear_1" in layers
    assert layers["pos_embed.proj"].weight_quant.bits == layers["proj_out"].weight_quant.bits == 8
    assert main(["sample", "--quantized", str(pixart.q), "--num", "2", "--compare", "--out", str(tmp_path / "g.png"),
                 *pixart.prompts]) == 0  # fmt: skip
    js = tmp_path / "eval.json"
    assert main(["evaluate", "--quantized", str(pixart.q), "--num-samples", "2", "--no-inception", "--json", str(js),
                 *pixart.prompts]) == 0  # fmt: skip
    rows = {r["model"]: r for r in json.loads(js.read_text())["rows"]}
    assert rows["quantized"]["psnr"] > 15
    assert main(["analyze", "--model", str(pixart.folder), "--steps", str(K), "--num-samples", "2", "--top", "3",
                 "--out", str(tmp_path / "an"), *pixart.prompts[:2]]) == 0  # fmt: skip


def test_pixart_exports_and_samples_in_its_pipeline_with_onnxruntime(pixart, tmp_path):
    pytest.importorskip("onnxruntime")
    from adpdm.deploy import OnnxDenoiser
    from adpdm.eval.metrics import psnr
    from adpdm.generate import Conditioning, generate
    from adpdm.models.source import resolve_model
    from adpdm.sampling import SamplerConfig

    onnx = tmp_path / "onnx"
    assert main(["export", "--quantized", str(pixart.q), "--out", str(onnx)]) == 0
    denoiser = OnnxDenoiser(onnx)
    assert denoiser.inputs == ["sample", "timestep", "encoder_hidden_states", "encoder_attention_mask"]
    assert main(["sample", "--quantized", str(pixart.q), "--backend", "onnxruntime", "--onnx", str(onnx), "--num",
                 "2", "--compare", "--out", str(tmp_path / "g.png"), *pixart.prompts]) == 0  # fmt: skip
    resolved = resolve_model(None, pixart.q)
    cfg = SamplerConfig(num_steps=resolved.steps, guidance_scale=3.0)
    cond = Conditioning(prompts=["a red cat", "a blue dog"])
    ref = generate(resolved.model, adpdm.load_quantized(pixart.q), 2, cfg, cond, progress=False).images
    out = generate(resolved.model, denoiser, 2, cfg, cond, progress=False).images
    assert out.shape == (2, 3, 16, 16) and float(psnr(out, ref).min()) > 30  # the pipeline's images, ORT vs PyTorch


def test_bench_deploy_of_pixart_times_its_exact_graphs_on_a_prompt_and_its_mask(pixart, tmp_path):
    pytest.importorskip("onnxruntime")
    assert main(["bench-deploy", "--quantized", str(pixart.q), "--quick", "--name", "pixart",
                 "--out-dir", str(tmp_path)]) == 0  # fmt: skip
    result = json.loads((tmp_path / "deploy_pixart.json").read_text())
    assert result["quantized_runner"] == "int8_exact" and result["text_prompt"]
    assert set(result["forward_ms"]["batch_16"]) == {"int8_exact", "fp32", "torch_fp32"}
    assert all(v["int8_exact"] > 30 for v in result["psnr_vs_torch"].values())  # decoded images, same noise
    assert "text-conditioned: the exact export" in (tmp_path / "deploy_pixart.md").read_text()


def test_bench_compares_methods_on_a_pixart_with_prompts(pixart, tmp_path):
    assert main(["bench", "--models", str(pixart.folder), "--prompts", pixart.prompts[1], "--methods", "rtn,adpdm",
                 "--presets", "w8a8", "--draws", "1", "--num-samples", "2", "--steps", str(K), "--iters", "2",
                 "--calib", '{"num_samples": 2, "calib_steps": 2}', "--eval", '{"inception": false}',
                 "--out", str(tmp_path), "--name", "pixart"]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "results/pixart.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"fp32", "rtn", "adpdm"}
    assert all(r["psnr"] > 15 for r in rows if r["method"] != "fp32")


def test_a_pixart_with_micro_conditions_is_refused_before_any_work(pixart, tmp_path, monkeypatch, caplog):
    """PixArt-alpha at 1024 pixels conditions on resolution and aspect ratio, which the graph does not take."""
    from adpdm.cli import bench_deploy, export

    def with_micro_conditions(*args, **kwargs):
        resolved = resolve_model(*args, **kwargs)
        resolved.model.unet.use_additional_conditions = True
        return resolved

    from adpdm.models.source import resolve_model

    for module in (export, bench_deploy):
        monkeypatch.setattr(module, "resolve_model", with_micro_conditions)
    assert main(["export", "--quantized", str(pixart.q), "--out", str(tmp_path / "onnx")]) == 2
    assert "use_additional_conditions" in caplog.text and not (tmp_path / "onnx").exists()
    assert main(["bench-deploy", "--quantized", str(pixart.q), "--out-dir", str(tmp_path / "bench")]) == 2
    assert not (tmp_path / "bench").exists()
