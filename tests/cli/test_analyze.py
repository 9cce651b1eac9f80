"""``adpdm analyze`` on tiny pipeline folders: the files it writes, and what it refuses."""

from __future__ import annotations

import json

import pytest
from pipeline_folders import ddim_folder, sd_folder

from adpdm.analysis import SensitivityReport
from adpdm.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")

QUICK = ["--steps", "3", "--num-samples", "2", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"


def test_analyze_writes_json_and_figures_and_refuses_a_used_folder(tmp_path, capsys) -> None:
    model = ddim_folder(tmp_path / "cond", num_class_embeds=11)
    out = tmp_path / "analysis"
    args = ["analyze", "--model", str(model), "--null-class", "10", "--guidance", "2", "--preset", "w4a8",
            "--suggest", "0.05", "--top", "3", "--out", str(out), *QUICK]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "heatmap.png", "ranges.png"]
    assert all((out / f).read_bytes()[:8] == PNG for f in ("heatmap.png", "ranges.png"))
    data = json.loads((out / "analysis.json").read_text())
    assert data["_type"] == "adpdm.SensitivityReport" and data["preset"] == "w4a8" and data["model"] == str(model)
    assert data["settings"]["guidance"] == 2.0 and data["settings"]["rows"] == 2 * 2 * 3  # both branches
    assert {"cpu", "torch"} <= set(data["machine"]) and len(data["all_layers"]["per_step"]) == 3
    report = SensitivityReport.load(out / "analysis.json")
    assert report.ranges and all(len(r.max) == 3 for r in report.ranges)
    assert report.code["adpdm_version"] and all(u.macs > 0 for u in report.layers if u.kind != "attention")
    printed = capsys.readouterr().out
    assert "| layer" in printed and '--layer-bits "' in printed and "layer_bits=((" in printed

    before = (out / "analysis.json").read_bytes()
    assert main(args) == 2  # a non-empty --out is refused before any work
    assert (out / "analysis.json").read_bytes() == before


def test_analyze_text_model_needs_prompts(tmp_path) -> None:
    pytest.importorskip("transformers")
    model = sd_folder(tmp_path / "sd")
    assert main(["analyze", "--model", str(model), *QUICK]) == 2
    (tmp_path / "prompts.txt").write_text("a red cat\n")
    out = tmp_path / "a"
    args = ["analyze", "--model", str(model), "--prompts", str(tmp_path / "prompts.txt"), "--guidance", "3",
            "--layers", "conv_in,down_blocks.0.attentions.0*", "--out", str(out), *QUICK]  # fmt: skip
    assert main(args) == 0
    report = SensitivityReport.load(out / "analysis.json")
    names = [u.name for u in report.layers]
    assert names[:2] == ["conv_in", "down_blocks.0.attentions.0.proj_in"]
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn2" in names  # the cross-attention block
    assert report.settings["rows"] == 2 * 2 * 3


def test_analyze_suggests_within_a_bit_operation_budget(tmp_path, capsys) -> None:
    model = ddim_folder(tmp_path / "uncond")
    assert main(["analyze", "--model", str(model), "--preset", "w6a6", "--suggest", "25%", "--suggest-by", "bops",
                 *QUICK]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "extra BOPs per sample" in printed and '--layer-bits "' in printed and "A8" in printed


def test_analyze_refuses_a_bytes_budget_with_8_bit_weights(tmp_path, caplog) -> None:
    args = ["analyze", "--model", str(tmp_path / "never-loaded"), "--preset", "w8a6", "--suggest", "0.05", *QUICK]
    assert main(args) == 2  # refused before the model is loaded
    assert "--suggest-by bops" in caplog.text and "never-loaded" not in caplog.text
