import json
import sys
import types

import pytest
import torch
from cli.test_commands import _tiny_mnist_model

from adpdm import bench
from adpdm.bench import ROW_FIELDS, BenchConfig, run_benchmark
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
    real = bench.sample_models

    def spy(unets, scheduler_config, num, sampler, *args, **kwargs):
        seen.append((tuple(unets), num, sampler))
        return real(unets, scheduler_config, num, sampler, *args, **kwargs)

    monkeypatch.setattr(bench, "sample_models", spy)
    cfg = BenchConfig(
        name="tiny", models=("embedded:mnist", "embedded:mnist-cond"), methods=("rtn", "adpdm"),
        presets=("w8a8", "w4a8"), num_samples=4, steps=3,
        calib=CalibConfig(num_samples=2, calib_steps=2, signature_samples=2),
        recon=ReconConfig(iters=2, batch_size=4), eval=EvalConfig(ref_num=16), groups=2,
    )  # fmt: skip
    path = run_benchmark(cfg, tmp_path)
    data = json.loads(path.read_text())
    rows = data["rows"]
    assert len(rows) == 2 * (1 + 2 * 2)  # models x (fp + presets x methods)
    for row in rows:
        assert set(ROW_FIELDS) <= set(row)
        for key in ("fid_data", "num_samples", "ckpt_bytes"):
            assert row[key] is not None, (row["method"], key)
        if row["method"] != "fp32":
            for key in ("fid_fp", "psnr", "calib_seconds", "peak_mem_mb", "groups", "timesteps"):
                assert row[key] is not None, (row["method"], key)
        assert (row["accuracy"] is None) == (row["model"] == "embedded:mnist")
    # every model of one base model sampled from one sampler config: the same noise
    for spec_guidance in (1.0, 2.0):
        configs = [s for _, _, s in seen if s.guidance_scale == spec_guidance]
        assert len(configs) == 1 + 2 * 2 and all(c == configs[0] for c in configs)
    w4 = {r["method"]: r for r in rows if r["preset"] == "w4a8" and r["model"] == "embedded:mnist"}
    w8 = {r["method"]: r for r in rows if r["preset"] == "w8a8" and r["model"] == "embedded:mnist"}
    assert w4["rtn"]["ckpt_bytes"] < w8["rtn"]["ckpt_bytes"]
    assert data["machine"]["cores"] and (tmp_path / "results" / "tiny.md").is_file()
    assert data["wall_seconds"] >= sum(r.get("row_seconds", 0.0) for r in rows) > 0
    assert "Wall time of the run" in (tmp_path / "results" / "tiny.md").read_text()
    assert (tmp_path / "figures" / "tiny_fid_vs_bits.png").is_file()
    assert list((tmp_path / "figures").glob("tiny_*_ranges.png"))


def test_quick_config_and_validation():
    quick = BenchConfig.quick()
    assert quick.num_samples < BenchConfig().num_samples and quick.calib.sampler.num_steps == quick.steps
    with pytest.raises(ValueError, match="unknown method"):
        BenchConfig(methods=("nope",))
