import dataclasses
import json
import sys
import types

import pytest
import torch
from cli.test_commands import _tiny_mnist_model

from adpdm import compare
from adpdm.bench import ROW_FIELDS, BenchConfig, run_benchmark
from adpdm.bench_figures import frontier
from adpdm.eval import evaluate as evaluate_module
from adpdm.eval.evaluate import EvalConfig
from adpdm.eval.inception import InceptionFeatures
from adpdm.ptq import CalibConfig
from adpdm.recon.reconstruct import ReconConfig


class _PooledFeatures(torch.nn.Module):
    """A cheap stand-in for Inception: 16 pooled pixel features (the FID code path is the same)."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x[:, :1], 4).flatten(1)


@pytest.fixture
def tiny_models(monkeypatch, tmp_path):
    monkeypatch.setenv("ADPDM_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "fake_inception.pt"
    weights.write_bytes(b"stand-in")
    fake = InceptionFeatures(_PooledFeatures(), weights)
    monkeypatch.setattr(evaluate_module, "load_inception", lambda *a, **k: fake)
    monkeypatch.setitem(
        sys.modules, "adpdm.embedded",
        types.SimpleNamespace(load_embedded=lambda name: _tiny_mnist_model(conditional=name.endswith("cond"))),
    )  # fmt: skip


def test_bench_rows_schema_and_same_noise(tiny_models, tmp_path, monkeypatch):
    seen = []
    real = compare.sample_models

    def spy(unets, model, num, sampler, *args, **kwargs):
        seen.append((tuple(unets), num, sampler))
        return real(unets, model, num, sampler, *args, **kwargs)

    monkeypatch.setattr(compare, "sample_models", spy)
    cfg = BenchConfig(
        name="tiny", models=("embedded:mnist", "embedded:mnist-cond"), methods=("rtn", "adpdm"),
        presets=("w8a8", "w4a8"), num_samples=4, steps=3, draws=(1, 2), fp_floor=False,
        calib=CalibConfig(num_samples=2, calib_steps=2, signature_samples=2),
        recon=ReconConfig(iters=2, batch_size=4), eval=EvalConfig(ref_num=16), groups=2,
    )  # fmt: skip
    path = run_benchmark(cfg, tmp_path)
    data = json.loads(path.read_text())
    rows = data["rows"]
    assert len(rows) == 2 * (1 + 2 * 2 * 2)  # models x (fp + draws x presets x methods)
    for row in rows:
        assert set(ROW_FIELDS) <= set(row)
        for key in ("fid_data", "num_samples", "ckpt_bytes"):
            assert row[key] is not None, (row["method"], key)
        if row["method"] != "fp32":
            for key in ("fid_fp", "psnr", "calib_seconds", "peak_mem_mb", "groups", "timesteps"):
                assert row[key] is not None, (row["method"], key)
        assert (row["accuracy"] is None) == (row["model"] == "embedded:mnist")
        assert row["haze"] is None or row["haze"] >= 0  # RMS above black on FP's background (None: no black floor)
        assert row["speckle"] is None or row["speckle"] >= 0  # spread of the background within each image
    # every model of one base model sampled from one sampler config: the same noise
    for spec_guidance in (1.0, 2.0):
        configs = [s for _, _, s in seen if s.guidance_scale == spec_guidance]
        assert len(configs) == 1 + 2 * 2 * 2 and all(c == configs[0] for c in configs) and configs[0].seed == 0
    w4 = {r["method"]: r for r in rows if r["preset"] == "w4a8" and r["model"] == "embedded:mnist" and r["draw"] == 1}
    w8 = {r["method"]: r for r in rows if r["preset"] == "w8a8" and r["model"] == "embedded:mnist" and r["draw"] == 1}
    assert w4["rtn"]["ckpt_bytes"] < w8["rtn"]["ckpt_bytes"]
    assert data["machine"]["cores"] and (tmp_path / "results" / "tiny.md").is_file()
    assert data["wall_seconds"] >= sum(r.get("row_seconds", 0.0) for r in rows) > 0
    assert "Wall time of the run" in (tmp_path / "results" / "tiny.md").read_text()
    assert (tmp_path / "figures" / "tiny_fid_vs_bits.png").is_file()
    assert (tmp_path / "figures" / "tiny_fid_fp_vs_bops.png").is_file()  # quality against bit-operations
    assert list((tmp_path / "figures").glob("tiny_*_ranges.png"))
    # the calibration trajectories of draw d come from noise seed d, never the evaluation seed 0
    for key, report in data["reports"].items():
        assert report["calibration"]["sampler"]["seed"] == int(key.split("|")[3])
    # the summary: every (model, preset, method) over both draws, paired with every other method
    summary = {(s["model"], s["preset"], s["method"]): s for s in data["summary"]}
    assert len(summary) == 2 * 2 * 2
    s = summary[("embedded:mnist", "w4a8", "adpdm")]
    assert s["draws"] == [1, 2] and s["psnr"]["n"] == 2 and s["paired"]["rtn"]["psnr"]["n"] == 2
    assert "| vs adpdm | vs rtn |" in (tmp_path / "results" / "tiny.md").read_text()
    # resuming runs nothing that is already there
    seen.clear()
    assert json.loads(run_benchmark(cfg, tmp_path, resume=True).read_text())["rows"] == rows
    assert all(names == ("fp32",) for names, _, _ in seen)
    # ... also a file of an older version that names deleted settings at the values that live on
    path = tmp_path / "results" / "tiny.json"
    saved = json.loads(path.read_text())
    saved["config"]["recon"].update(row_error="sampler", accept_on="unit")
    path.write_text(json.dumps(saved))
    assert json.loads(run_benchmark(cfg, tmp_path, resume=True).read_text())["rows"] == rows
    saved["config"]["recon"]["row_error"] = "relative"
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="another version.*row_error"):
        run_benchmark(cfg, tmp_path, resume=True)
    # ... and one made before mixed precision was a setting of the run (no layer_bits: none)
    path.write_text(json.dumps({**saved, "config": {k: v for k, v in data["config"].items() if k != "layer_bits"}}))
    assert json.loads(run_benchmark(cfg, tmp_path, resume=True).read_text())["rows"] == rows
    # ... and refuses a file whose rows were made with other settings
    other = dataclasses.replace(cfg, recon=dataclasses.replace(cfg.recon, iters=cfg.recon.iters + 1))
    with pytest.raises(ValueError, match="other settings .*recon"):
        run_benchmark(other, tmp_path, resume=True)
    mixed = dataclasses.replace(cfg, layer_bits=(("down_blocks.0.*", 8, 8),))
    with pytest.raises(ValueError, match="other settings .*layer_bits"):
        run_benchmark(mixed, tmp_path, resume=True)


def test_bench_mixed_precision_rows_state_their_effective_bits(tiny_models, tmp_path):
    cfg = BenchConfig(
        name="mixed", models=("embedded:mnist",), methods=("rtn",), presets=("w4a6",), num_samples=4, steps=3,
        draws=(1,), fp_floor=False, calib=CalibConfig(num_samples=2, calib_steps=2, signature_samples=2),
        eval=EvalConfig(ref_num=16), layer_bits=(("down_blocks.0.*", 8, 8),),
    )  # fmt: skip
    plain = dataclasses.replace(cfg, name="plain", layer_bits=())
    rows, datas = {}, []
    for c in (cfg, plain):
        datas.append(json.loads(run_benchmark(c, tmp_path).read_text()))
        rows[c.name] = next(r for r in datas[-1]["rows"] if r["method"] == "rtn")
    assert frontier(datas, tmp_path / "frontier.png", "psnr") == tmp_path / "frontier.png"
    assert frontier([{"rows": [{**rows["plain"], "gbops": None}]}], tmp_path / "none.png") is None  # older files
    assert rows["plain"]["abits_eff"] > 6 and rows["plain"]["wbits_eff"] > 4  # the 8-bit first and last layers
    assert rows["mixed"]["abits_eff"] > rows["plain"]["abits_eff"] and rows["mixed"]["gbops"] > rows["plain"]["gbops"]
    assert rows["mixed"]["preset"] == "w4a6-mixed" and "| W" in (tmp_path / "results" / "mixed.md").read_text()


def test_quick_config_and_validation():
    quick = BenchConfig.quick()
    assert quick.num_samples < BenchConfig().num_samples and quick.draws == (1,) and BenchConfig().draws == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="held out"):
        BenchConfig(draws=(0, 1))
    with pytest.raises(ValueError, match="unknown method"):
        BenchConfig(methods=("nope",))


def test_prompts_go_to_the_text_models_of_a_run_only():
    cfg = BenchConfig(prompts=("a red cat",))
    assert cfg.compare("sd-folder", text=True).prompts == ("a red cat",)
    assert cfg.compare("embedded:mnist").prompts == ()  # a class or unconditional model beside it takes none
