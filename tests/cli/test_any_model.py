"""Every command on a user's own diffusers pipeline folders: unconditional, class-conditional and
text-conditioned; the checkpoint's record of its model; refusals before any work."""

from __future__ import annotations

import json

import pytest
import torch
from pipeline_folders import ddim_folder, fake_inception, sd_folder, write_images

import adpdm
from adpdm.checkpoint import read_checkpoint_info
from adpdm.cli.main import main
from adpdm.models.source import unet_fingerprint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

K = 4
QUICK = ["--steps", str(K), "--num-samples", "2", "--calib-steps", "2", "--iters", "2", "--batch-size", "4",
         "--preset", "w8a8", "--device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three pipeline folders and a quantized checkpoint of each (made once for the module)."""
    root = tmp_path_factory.mktemp("models")
    paths = {"uncond": ddim_folder(root / "uncond"), "cond": ddim_folder(root / "cond", num_class_embeds=11),
             "text": sd_folder(root / "sd")}  # fmt: skip
    (root / "prompts.txt").write_text("a red cat\n\na blue dog\n")
    extra = {"uncond": [], "cond": ["--null-class", "10", "--guidance", "2"],
             "text": ["--prompts", str(root / "prompts.txt"), "--guidance", "3"]}  # fmt: skip
    for name, path in list(paths.items()):
        q = root / f"q_{name}"
        assert main(["quantize", "--model", str(path), "--method", "adpdm", "--groups", "2", "--out", str(q),
                     *QUICK, *extra[name]]) == 0  # fmt: skip
        paths[f"q_{name}"] = q
    paths["prompts"] = root / "prompts.txt"
    paths["inception"] = fake_inception(root / "inception.pt")
    return paths


@pytest.mark.parametrize("name,kind", [("uncond", "unconditional"), ("cond", "class"), ("text", "text")])
def test_checkpoint_records_its_model(folders, name, kind):
    source, k = read_checkpoint_info(folders[f"q_{name}"])
    assert k == K and source.num_steps == K and source.kind == kind
    assert source.spec == str(folders[name].resolve())
    model = adpdm.models.loading.load_model(str(folders[name]), source.null_class)
    assert source.fingerprint == unet_fingerprint(model.unet)
    assert source.scheduler_config["_class_name"] == "DDIMScheduler"
    assert (source.num_classes, source.null_class) == ((10, 10) if name == "cond" else (None, None))


def test_sample_needs_nothing_but_the_checkpoint(folders, tmp_path):
    for name, extra in (("uncond", []), ("cond", ["--labels", "1,2", "--guidance", "2"]),
                        ("text", ["--prompts", str(folders["prompts"]), "--guidance", "3"])):  # fmt: skip
        out = tmp_path / f"{name}.png"
        assert main(["sample", "--quantized", str(folders[f"q_{name}"]), "--num", "2", "--compare", "--out", str(out),
                     *extra]) == 0  # fmt: skip
        assert out.is_file()


def test_quantized_text_pipeline_is_close_to_fp_and_keyed_by_sample(folders):
    from adpdm.generate import Conditioning, generate
    from adpdm.models.source import resolve_model
    from adpdm.sampling import SamplerConfig

    resolved = resolve_model(None, folders["q_text"])
    model, cfg = resolved.model, SamplerConfig(num_steps=resolved.steps, guidance_scale=3.0, batch_size=2)
    cond = Conditioning(prompts=["a red cat", "a blue dog"])
    fp = generate(model, model.unet, 3, cfg, cond, progress=False).images
    assert fp.shape == (3, 3, 32, 32) and fp.min() >= -1 and fp.max() <= 1
    one = generate(model, model.unet, 1, cfg, cond, progress=False).images  # sample 0 alone: same noise
    torch.testing.assert_close(one[0], fp[0], atol=1e-5, rtol=0)
    q = generate(model, adpdm.load_quantized(folders["q_text"]), 3, cfg, cond, progress=False).images
    assert 0 < (q - fp).abs().mean() < 0.1  # W8A8 on the same latents


def test_refusals_come_before_any_work(folders, tmp_path, monkeypatch, caplog):
    calls = []
    monkeypatch.setattr("adpdm.cli.sample.generate", lambda *a, **k: calls.append(a))
    base = ["sample", "--num", "2", "--out", str(tmp_path / "x.png")]
    assert main([*base, "--quantized", str(folders["q_uncond"]), "--steps", str(2 * K)]) == 2
    assert f"calibrated for K = {K} sampling steps; pass --steps {K}" in caplog.text
    assert main([*base, "--quantized", str(folders["q_uncond"]), "--model", str(folders["cond"])]) == 2
    assert "is not the model" in caplog.text and f"pass --model {folders['uncond'].resolve()}" in caplog.text
    assert main([*base, "--quantized", str(folders["q_cond"]), "--labels", "10"]) == 2
    assert "labels [10] are outside the classes" in caplog.text
    assert main([*base, "--quantized", str(folders["q_text"])]) == 2
    assert "pass --prompts FILE" in caplog.text
    (tmp_path / "empty.txt").write_text("\n \n")
    assert main([*base, "--quantized", str(folders["q_text"]), "--prompts", str(tmp_path / "empty.txt")]) == 2
    assert "holds no prompt" in caplog.text
    assert main([*base, "--quantized", str(folders["q_uncond"]), "--labels", "1"]) == 2
    assert "--labels is for class-conditional models" in caplog.text
    assert main([*base, "--model", str(folders["cond"]), "--guidance", "2"]) == 2
    assert "pass --null-class N" in caplog.text
    assert calls == []
    assert not (tmp_path / "x.png").exists()


def test_a_changed_source_model_is_refused(folders, tmp_path, caplog):
    import shutil

    from diffusers import UNet2DModel

    moved = tmp_path / "copy"
    shutil.copytree(folders["uncond"], moved)
    unet = UNet2DModel.from_pretrained(moved / "unet")
    with torch.no_grad():
        unet.conv_out.bias.add_(0.01)
    unet.save_pretrained(moved / "unet")
    args = ["sample", "--quantized", str(folders["q_uncond"]), "--model", str(moved), "--out", str(tmp_path / "x.png")]
    assert main(args) == 2 and "is not the model" in caplog.text


def test_quantize_refuses_an_output_folder_of_another_run(folders, caplog):
    assert main(["quantize", "--model", str(folders["uncond"]), "--out", str(folders["q_cond"]), *QUICK]) == 2
    assert "already holds files" in caplog.text
    assert read_checkpoint_info(folders["q_cond"])[0].kind == "class"  # untouched


def test_evaluate_with_a_reference_folder_and_its_npz(folders, tmp_path):
    images = tmp_path / "ref"
    write_images(images, 6)
    npz = tmp_path / "ref.npz"
    inception = ["--inception", str(folders["inception"])]
    assert main(["fid-stats", str(images), "--out", str(npz), *inception]) == 0
    fids = []
    for ref in (images, npz):
        js = tmp_path / f"{ref.name}.json"
        assert main(["evaluate", "--quantized", str(folders["q_uncond"]), "--num-samples", "4", "--ref", str(ref),
                     "--json", str(js), *inception]) == 0  # fmt: skip
        rows = {r["model"]: r for r in json.loads(js.read_text())["rows"]}
        assert rows["quantized"]["psnr"] > 0 and rows["quantized"]["fid_fp"] >= 0
        assert rows["fp32"]["accuracy"] is None and rows["fp32"]["clf_fid_data"] is None  # no MNIST metrics
        fids.append([rows[m]["fid_data"] for m in ("fp32", "quantized")])
    assert fids[0][0] > 0
    for a, b in zip(*fids, strict=True):
        assert abs(a - b) <= 1e-6 * abs(a)


def test_evaluate_class_model_with_a_torchscript_classifier(folders, tmp_path, capsys):
    class ConstantClassifier(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # always class 3
            return torch.nn.functional.one_hot(torch.full((x.shape[0],), 3), 10).float()

    clf = tmp_path / "clf.pt"
    torch.jit.save(torch.jit.script(ConstantClassifier()), str(clf))
    js = tmp_path / "eval.json"
    assert main(["evaluate", "--quantized", str(folders["q_cond"]), "--num-samples", "4", "--labels", "3,3,3,5",
                 "--classifier", str(clf), "--no-inception", "--json", str(js)]) == 0  # fmt: skip
    rows = {r["model"]: r for r in json.loads(js.read_text())["rows"]}
    assert rows["fp32"]["accuracy"] == rows["quantized"]["accuracy"] == 0.75
    assert rows["quantized"]["extra"]["class_accuracy"] == {"3": 1.0, "5": 0.0}
    assert json.loads(js.read_text())["sampler"]["guidance_scale"] == 2.0  # with the checkpoint's null class
    assert rows["quantized"]["extra"]["confusions"] == [[5, 3, 1]]
    out = capsys.readouterr().out
    assert "quantized: lowest accuracy by class: 5 0.000, 3 1.000" in out
    assert "quantized: most frequent confusions (intended->read): 5->3 1" in out


def test_evaluate_text_model(folders, tmp_path):
    js = tmp_path / "eval.json"
    assert main(["evaluate", "--quantized", str(folders["q_text"]), "--prompts", str(folders["prompts"]),
                 "--num-samples", "2", "--inception", str(folders["inception"]), "--json", str(js)]) == 0  # fmt: skip
    rows = {r["model"]: r for r in json.loads(js.read_text())["rows"]}
    assert rows["quantized"]["psnr"] > 10 and rows["quantized"]["fid_fp"] >= 0 and rows["fp32"]["fid_data"] is None


def test_export_and_onnxruntime_sampling_of_a_class_model(folders, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "onnx"
    assert main(["export", "--quantized", str(folders["q_cond"]), "--out", str(onnx)]) == 0
    assert main(["sample", "--quantized", str(folders["q_cond"]), "--backend", "onnxruntime", "--onnx", str(onnx),
                 "--num", "2", "--compare", "--out", str(tmp_path / "ort.png")]) == 0  # fmt: skip
    assert main(["export", "--quantized", str(folders["q_cond"]), "--out", str(onnx)]) == 2  # not over a run
    # the export alone knows its K (2 timestep groups: a step -> graph table of K entries)
    alone = ["sample", "--model", str(folders["cond"]), "--null-class", "10", "--backend", "onnxruntime", "--onnx",
             str(onnx), "--num", "2", "--out", str(tmp_path / "alone.png")]  # fmt: skip
    assert main(alone) == 0
    assert main([*alone, "--steps", str(2 * K)]) == 2


def test_text_unet_exports_with_the_embeddings_as_an_input(folders, tmp_path):
    pytest.importorskip("onnxruntime")
    import torch.nn.functional as F

    from adpdm.deploy import OnnxDenoiser

    assert main(["export", "--quantized", str(folders["q_text"]), "--out", str(tmp_path / "onnx")]) == 0
    denoiser, unet = OnnxDenoiser(tmp_path / "onnx"), adpdm.load_quantized(folders["q_text"])
    assert denoiser.inputs == ["sample", "timestep", "encoder_hidden_states"]
    c, size, dim = unet.config.in_channels, unet.config.sample_size, unet.config.cross_attention_dim
    x, emb = torch.randn(2, c, size, size), torch.randn(2, 9, dim)  # any token count
    for k in range(K):
        with adpdm.step_context(k), torch.no_grad():
            ref = unet(x, torch.tensor(900 - 200 * k), encoder_hidden_states=emb).sample
            out = denoiser(x, torch.tensor(900 - 200 * k), encoder_hidden_states=emb).sample
        assert F.cosine_similarity(ref.flatten(), out.flatten(), dim=0) > 0.99
    with pytest.raises(ValueError, match="encoder_hidden_states"), adpdm.step_context(0):
        denoiser(x, torch.tensor(900))


def test_bench_deploy_on_a_pipeline_folder(folders, tmp_path):
    pytest.importorskip("onnxruntime")
    assert main(["bench-deploy", "--quantized", str(folders["q_uncond"]), "--quick", "--name", "mine",
                 "--out-dir", str(tmp_path), "--weight-format", "uint4"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "deploy_mine.json").read_text())
    assert result["model"] == str(folders["uncond"].resolve()) and result["config"]["steps"] == K
    sizes = result["sizes"]
    assert result["weight_format"] == "uint4" and sizes["fp32_over_int8"] == sizes["fp32"] / sizes["int8"] > 1


def test_bench_deploy_of_a_text_unet_times_its_exact_graphs_on_a_prompt(folders, tmp_path):
    pytest.importorskip("onnxruntime")
    assert main(["bench-deploy", "--quantized", str(folders["q_text"]), "--quick", "--name", "sd",
                 "--out-dir", str(tmp_path)]) == 0  # fmt: skip
    result = json.loads((tmp_path / "deploy_sd.json").read_text())
    assert result["quantized_runner"] == "int8_exact" and result["text_prompt"]
    assert set(result["forward_ms"]["batch_1"]) == {"int8_exact", "fp32", "torch_fp32"}
    assert result["sizes"]["fp32_over_int8"] == result["sizes"]["fp32"] / result["sizes"]["int8_exact"] > 1
    assert all(v["int8_exact"] > 30 for v in result["psnr_vs_torch"].values())  # ORT against PyTorch, same noise
    assert result["speedup"]["forward"]["batch_1"] > 0
    assert "text-conditioned: the exact export" in (tmp_path / "deploy_sd.md").read_text()


def test_text_unet_export_samples_through_its_pipeline_in_onnxruntime(folders, tmp_path):
    pytest.importorskip("onnxruntime")
    from adpdm.deploy import OnnxDenoiser
    from adpdm.eval.metrics import psnr
    from adpdm.generate import Conditioning, generate
    from adpdm.models.source import resolve_model
    from adpdm.sampling import SamplerConfig

    onnx = tmp_path / "onnx"
    assert main(["export", "--quantized", str(folders["q_text"]), "--out", str(onnx)]) == 0
    assert main(["sample", "--quantized", str(folders["q_text"]), "--backend", "onnxruntime", "--onnx", str(onnx),
                 "--prompts", str(folders["prompts"]), "--num", "2", "--compare",
                 "--out", str(tmp_path / "g.png")]) == 0  # fmt: skip
    resolved = resolve_model(None, folders["q_text"])
    cfg = SamplerConfig(num_steps=resolved.steps, guidance_scale=3.0)
    cond = Conditioning(prompts=["a red cat", "a blue dog"])
    ref = generate(resolved.model, adpdm.load_quantized(folders["q_text"]), 2, cfg, cond, progress=False).images
    out = generate(resolved.model, OnnxDenoiser(onnx), 2, cfg, cond, progress=False).images
    assert float(psnr(out, ref).min()) > 30  # the pipeline's images, ONNX Runtime against PyTorch


def test_bench_on_a_text_unet_needs_prompts_and_then_compares_methods(folders, tmp_path, caplog):
    assert main(["bench", "--quick", "--models", str(folders["text"]), "--out", str(tmp_path)]) == 2
    assert "pass --prompts FILE" in caplog.text and not (tmp_path / "results").exists()  # before any work
    assert main(["bench", "--quick", "--models", str(folders["cond"]), "--prompts", str(folders["prompts"]),
                 "--null-class", "10", "--out", str(tmp_path)]) == 2  # fmt: skip
    assert "--prompts is for text-conditioned pipelines" in caplog.text
    assert main(["bench", "--models", str(folders["text"]), "--prompts", str(folders["prompts"]), "--methods",
                 "rtn,adpdm", "--presets", "w8a8", "--draws", "1", "--num-samples", "2", "--steps", str(K),
                 "--iters", "2", "--calib", '{"num_samples": 2, "calib_steps": 2}', "--eval", '{"inception": false}',
                 "--name", "sd", "--out", str(tmp_path)]) == 0  # fmt: skip
    data = json.loads((tmp_path / "results" / "sd.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"fp32", "rtn", "adpdm"} and data["config"]["prompts"] == ["a red cat", "a blue dog"]
    assert all(rows[m]["psnr"] > 15 and rows[m]["accuracy"] is None for m in ("rtn", "adpdm"))


def test_recording_a_text_pipeline_leaves_the_fp_model_as_it_was(folders):
    from adpdm.pipelines import record_pipeline_calls
    from adpdm.sampling import SamplerConfig

    model = adpdm.models.loading.load_model(str(folders["text"]))
    scheduler = model.pipeline.scheduler
    data = record_pipeline_calls(model, SamplerConfig(num_steps=K, guidance_scale=3.0, seed=1), ["a cat", "a dog"])
    assert data.num_steps == K and len(data) >= 2 * K  # two trajectories of K steps (and their null branch)
    assert model.pipeline.scheduler is scheduler
    assert not model.unet._forward_pre_hooks and not model.unet._forward_hooks  # no step tracker left behind


def test_bench_on_a_class_conditional_folder(folders, tmp_path):
    assert main(["bench", "--quick", "--models", str(folders["cond"]), "--null-class", "10", "--methods", "rtn",
                 "--presets", "w8a8", "--num-samples", "4", "--out", str(tmp_path)]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "results" / "quick.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["fp32", "rtn"]
    assert rows[1]["psnr"] > 0 and rows[1]["fid_fp"] >= 0 and rows[1]["clf_fid_data"] is None


def test_a_ddpm_pipeline_folder(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler
    from pipeline_folders import tiny_unet

    DDPMPipeline(unet=tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(tmp_path / "p")
    q = tmp_path / "q"
    assert main(["quantize", "--model", str(tmp_path / "p"), "--method", "rtn", "--out", str(q), *QUICK]) == 0
    assert read_checkpoint_info(q)[0].scheduler_config["_class_name"] == "DDPMScheduler"
    for scheduler in ("ddim", "ddpm"):
        out = tmp_path / f"{scheduler}.png"
        assert main(["sample", "--quantized", str(q), "--scheduler", scheduler, "--num", "2", "--out", str(out)]) == 0
