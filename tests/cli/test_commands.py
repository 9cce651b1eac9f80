import json
import sys
import types

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

import adpdm
from adpdm.cli.main import main


def _tiny_mnist_model(conditional: bool = False):
    torch.manual_seed(0)  # the same weights at every load, as a real model's
    unet = UNet2DModel(
        sample_size=32, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, norm_num_groups=4, num_class_embeds=11 if conditional else None,
    ).eval()  # fmt: skip
    return types.SimpleNamespace(
        unet=unet, scheduler_config=dict(DDPMScheduler(num_train_timesteps=1000).config),
        num_classes=10 if conditional else None, null_class=10 if conditional else None,
    )  # fmt: skip


@pytest.fixture
def tiny_embedded(monkeypatch):
    calls = []

    def load_embedded(name):
        calls.append(name)
        return _tiny_mnist_model(conditional=name.endswith("cond"))

    monkeypatch.setitem(sys.modules, "adpdm.embedded", types.SimpleNamespace(load_embedded=load_embedded))
    return calls


QUICK = ["--steps", "4", "--num-samples", "2", "--calib-steps", "2", "--iters", "2", "--batch-size", "4"]


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in ("demo", "quantize", "sample", "evaluate"):
        assert name in text


def test_a_command_reads_its_commit_before_it_works(monkeypatch):
    """Results name the commit a run started from (read once, cached), not the one at its end."""
    import adpdm.cli.main as cli_main

    calls = []
    monkeypatch.setattr(cli_main, "source_commit", lambda: calls.append("commit"))
    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_with(lambda args: calls.append("work")))
    assert main(["job"]) == 0
    assert calls == ["commit", "work"]


def _parser_with(func):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--verbose", action="store_true")
    sub = parser.add_subparsers()
    sub.add_parser("job").set_defaults(func=func)
    return parser


def test_quantize_writes_checkpoint_and_report(tiny_embedded, tmp_path):
    out = tmp_path / "q"
    rc = main(
        ["quantize", "--model", "embedded:mnist", "--method", "adpdm", "--groups", "2", "--out", str(out), *QUICK]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "adpdm" and len(report["partition"]) == 4
    assert {"selected_steps", "unit_losses", "calib_seconds", "peak_mem_mb", "selection"} <= set(report)
    assert report["quant_config"]["first_last_bits"] == 8 and "first and last layer" in report["protocol"]
    qunet = adpdm.load_quantized(out)
    assert adpdm.get_state(qunet) == adpdm.QuantState.FROZEN
    # the report's recipe runs again to the same model; flags beside --recipe are refused
    again = tmp_path / "again"
    recipe = str(out / "report.json")
    assert main(["quantize", "--model", "embedded:mnist", "--recipe", recipe, "--out", str(again)]) == 0
    for (name, a), (_, b) in zip(qunet.state_dict().items(), adpdm.load_quantized(again).state_dict().items(),
                                 strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    bad = ["quantize", "--recipe", str(out / "report.json"), "--iters", "3", "--out", str(tmp_path / "x")]
    assert main(bad) == 2


def test_strict_protocol_from_the_command_line(tiny_embedded, tmp_path):
    for flags, expected in ((["--preset", "w8a6-strict"], None), (["--first-last-bits", "none"], None),
                            (["--first-last-bits", "6"], 6)):  # fmt: skip
        out = tmp_path / "_".join(flags)
        assert main(["quantize", "--method", "rtn", *flags, "--out", str(out), *QUICK]) == 0
        assert json.loads((out / "report.json").read_text())["quant_config"]["first_last_bits"] == expected


def test_bad_arguments_fail_before_any_work(tiny_embedded, tmp_path, caplog):
    assert main(["quantize", "--out", str(tmp_path / "q"), "--calib-steps", "0"]) == 2
    assert main(["quantize", "--out", str(tmp_path / "q"), "--groups", "500"]) == 2
    assert main(["quantize", "--method", "rtn", "--groups", "4", "--out", str(tmp_path / "q")]) == 2
    assert "'rtn' fixes QuantConfig.groups = 1, but the config sets 4: drop --groups or choose another" in caplog.text
    assert main(["quantize", "--recipe", str(tmp_path / "missing.json"), "--out", str(tmp_path / "q")]) == 2
    assert main(["quantize", "--budget", "fast", "--iters", "3", "--out", str(tmp_path / "q")]) == 2
    assert "give --budget or --iters, not both" in caplog.text
    (tmp_path / "file").write_text("x")
    assert main(["quantize", "--out", str(tmp_path / "file")]) == 2
    assert tiny_embedded == []  # the model was never loaded


def test_evaluate_and_demo_without_inception(tiny_embedded, tmp_path, capsys):
    q = tmp_path / "q"
    assert main(["quantize", "--model", "embedded:mnist-cond", "--method", "rtn", "--out", str(q), *QUICK]) == 0
    js = tmp_path / "eval.json"
    rc = main(["evaluate", "--model", "embedded:mnist-cond", "--quantized", str(q), "--num-samples", "4",
               "--steps", "4", "--ref-num", "50", "--no-inception", "--json", str(js)])  # fmt: skip
    assert rc == 0
    rows = {r["model"]: r for r in json.loads(js.read_text())["rows"]}
    assert rows["fp32"]["accuracy"] is not None and rows["quantized"]["psnr"] is not None
    assert rows["quantized"]["clf_fid_fp"] >= 0 and rows["fp32"]["fid_data"] is None
    demo = tmp_path / "demo"
    rc = main(["demo", "--methods", "rtn", "--presets", "w8a8", "--num", "4", "--steps", "3", "--iters", "2",
               "--ref-num", "50", "--no-inception", "--out", str(demo)])  # fmt: skip
    assert rc == 0
    assert (demo / "grid.png").is_file()
    result = json.loads((demo / "results.json").read_text())
    assert [r["model"] for r in result["rows"]] == ["fp32", "rtn W8A8"]
    assert "| model" in capsys.readouterr().out
    assert torch.isfinite(torch.tensor(result["rows"][1]["psnr"]))


def test_quantize_a_pipeline_folder(tmp_path):
    from diffusers import DDIMPipeline, DDIMScheduler

    torch.manual_seed(0)
    _tiny_mnist_model().unet.save_pretrained(tmp_path / "pipe" / "unet")
    DDIMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path / "pipe" / "scheduler")
    index = {"_class_name": "DDIMPipeline", "unet": ["diffusers", "UNet2DModel"],
             "scheduler": ["diffusers", "DDIMScheduler"]}  # fmt: skip
    (tmp_path / "pipe" / "model_index.json").write_text(json.dumps(index))
    out = tmp_path / "q"
    assert main(["quantize", "--model", str(tmp_path / "pipe"), "--method", "rtn", "--preset", "w8a8",
                 "--device", "cpu", "--out", str(out), *QUICK]) == 0  # fmt: skip
    pipe = DDIMPipeline.from_pretrained(tmp_path / "pipe")
    pipe.unet = adpdm.load_quantized(out)
    from adpdm.pipelines import track_steps

    track_steps(pipe)
    images = pipe(batch_size=1, num_inference_steps=4, output_type="np").images
    assert images.shape == (1, 32, 32, 1)


def test_quantize_pipeline_errors(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["quantize", "--model", "nobody/no-such-model", "--out", str(tmp_path / "a"), *QUICK]) != 0
    assert "cannot load the pipeline" in caplog.text
    (tmp_path / "p.txt").write_text("\n  \n")
    assert main(["quantize", "--model", "x/y", "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "b")]) != 0
    assert "holds no prompt" in caplog.text


def test_an_embedded_checkpoint_refuses_another_embedded_model(tiny_embedded, tmp_path, caplog):
    q = tmp_path / "q"
    assert main(["quantize", "--model", "embedded:mnist", "--method", "rtn", "--out", str(q), *QUICK]) == 0
    out = tmp_path / "x.png"
    assert main(["sample", "--quantized", str(q), "--model", "embedded:mnist-cond", "--out", str(out)]) == 2
    assert "is not the model" in caplog.text and "pass --model embedded:mnist" in caplog.text
    assert main(["sample", "--quantized", str(q), "--steps", "10", "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["sample", "--quantized", str(q), "--num", "2", "--out", str(out)]) == 0  # K and model from DIR


def test_a_checkpoint_without_its_source_samples_with_the_default_model(tiny_embedded, tmp_path, caplog):
    q = tmp_path / "q"
    assert main(["quantize", "--method", "rtn", "--out", str(q), *QUICK]) == 0
    meta = json.loads((q / "quant_config.json").read_text())
    del meta["source"]  # as written before checkpoints recorded their model
    (q / "quant_config.json").write_text(json.dumps(meta))
    assert main(["sample", "--quantized", str(q), "--num", "2", "--out", str(tmp_path / "x.png")]) == 0
    assert "does not record its model; assuming embedded:mnist" in caplog.text
    assert main(["sample", "--quantized", str(q), "--steps", "5", "--out", str(tmp_path / "x.png")]) == 2
