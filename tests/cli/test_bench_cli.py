"""``adpdm bench``'s arguments become the BenchConfig the run gets (no run here)."""

from __future__ import annotations

import pytest

import adpdm.cli.bench as bench_cli
from adpdm.cli.main import main


@pytest.fixture
def configs(monkeypatch, tmp_path):
    """The BenchConfig of every ``adpdm bench`` call, instead of running it."""
    seen = []

    def fake_run(cfg, out, resume=False):
        seen.append(cfg)
        path = tmp_path / "results" / f"{cfg.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".md").write_text("table\n")
        return path

    monkeypatch.setattr(bench_cli, "run_benchmark", fake_run)
    return seen


def test_an_ablation_named_on_the_command_line_runs_on_every_model_and_preset_of_the_run(configs, tmp_path):
    assert main(["bench", "--methods", "adpdm,adpdm-g1", "--presets", "w8a6,w4a6", "--out", str(tmp_path)]) == 0
    cfg = configs[-1]
    assert cfg.methods == ("adpdm", "adpdm-g1")
    assert all(cfg.runs(model, preset, "adpdm-g1") for model in cfg.models for preset in ("w8a6", "w4a6"))
    # without naming ablations, the configured places stay (the default run has none)
    assert main(["bench", "--presets", "w8a6", "--out", str(tmp_path)]) == 0
    assert configs[-1].ablation_presets == ("w4a8",)


def test_deleted_reconstruction_settings_are_a_clear_error(configs, tmp_path, caplog):
    assert main(["bench", "--recon", '{"row_error": "relative"}', "--out", str(tmp_path)]) == 2
    assert "--recon" in caplog.text and "row_error" in caplog.text and not configs


def test_eval_overrides_reach_the_benchmark_and_unknown_fields_are_refused(configs, tmp_path, caplog):
    assert main(["bench", "--eval", '{"inception": false}', "--out", str(tmp_path)]) == 0
    assert configs[-1].eval.inception is False and configs[-1].eval.ref_num == 2000  # the rest kept
    assert main(["bench", "--eval", '{"incepton": false}', "--out", str(tmp_path)]) == 2
    assert "--eval" in caplog.text and "incepton" in caplog.text
