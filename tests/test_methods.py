import dataclasses
import json

import pytest
import torch
from conftest import make_unet
from diffusers import DDPMScheduler

import adpdm
import adpdm.ptq as ptq
from adpdm.methods import DEFAULT_GROUPS, METHODS, get_method
from adpdm.ptq import CalibConfig, run_ptq
from adpdm.recon import reconstruct as recon_module
from adpdm.recon.reconstruct import ReconConfig
from adpdm.sampling import SamplerConfig, sample

SCHED = dict(DDPMScheduler(num_train_timesteps=1000).config)
K = 4


def _cfgs(steps=2):
    sampler = SamplerConfig(num_steps=K, batch_size=4)
    calib = CalibConfig(num_samples=3, calib_steps=steps, sampler=sampler, signature_samples=2)
    return calib, ReconConfig(iters=4, batch_size=4, capture_batch=8)


UNET = make_unet()


def _copy(unet):
    new = type(unet).from_config(unet.config).eval()
    new.load_state_dict(unet.state_dict())
    return new


def test_registry_matches_the_method_table():
    assert {"rtn", "ptq4dm", "qdiffusion", "adpdm"} <= set(METHODS)
    base = adpdm.QuantConfig.preset("w4a8", num_steps=100)
    assert get_method("rtn").quant_config(base).weight_init == "minmax"
    assert get_method("ptq4dm").quant_config(base).lp_norm == 2.0
    assert get_method("qdiffusion").quant_config(base).groups == 1
    assert get_method("adpdm").quant_config(base).groups == DEFAULT_GROUPS
    assert get_method("adpdm").quant_config(dataclasses.replace(base, groups=8)).groups == 8
    assert get_method("adpdm-perstep").quant_config(base).groups == 100
    assert get_method("adpdm-perlayer").quant_config(base).partition == "per_layer"
    with pytest.raises(ValueError, match="unknown method"):
        get_method("brecq")


def test_a_setting_that_conflicts_with_the_recipe_is_an_error_not_replaced():
    base = adpdm.QuantConfig.preset("w4a8", num_steps=10)
    with pytest.raises(ValueError, match=r"'rtn' fixes QuantConfig.groups = 1.*adpdm"):
        get_method("rtn").quant_config(dataclasses.replace(base, groups=4))
    with pytest.raises(ValueError, match=r"'adpdm' fixes QuantConfig.weight_init = 'lp'.*rtn"):
        get_method("adpdm").quant_config(dataclasses.replace(base, weight_init="minmax"))
    with pytest.raises(ValueError, match="split_skip"):
        get_method("qdiffusion").quant_config(dataclasses.replace(base, split_skip=False))
    # the recipe's own values, set explicitly (as in a report read back), are accepted
    resolved = get_method("rtn").quant_config(base)
    assert get_method("rtn").quant_config(resolved) == resolved
    # the layer protocol is the user's, alike for every method
    strict = adpdm.QuantConfig.preset("w4a8-strict", num_steps=10)
    assert {get_method(m).quant_config(strict).first_last_bits for m in METHODS} == {None}
    assert {get_method(m).quant_config(base).first_last_bits for m in METHODS} == {8}


def test_the_report_recipe_reruns_to_the_same_model(tmp_path):
    calib, recon = _cfgs()
    qcfg = adpdm.QuantConfig.preset("w4a8", num_steps=K, groups=2)
    first = run_ptq(_copy(UNET), SCHED, "adpdm", qcfg, calib, recon, out_dir=tmp_path, progress=False)
    spec, qcfg2, calib2, recon2 = ptq.settings_from_report(json.loads((tmp_path / "report.json").read_text()))
    assert spec == get_method("adpdm") and qcfg2.groups == 2 and calib2 == calib and recon2 == recon
    again = run_ptq(_copy(UNET), SCHED, spec, qcfg2, calib2, recon2, progress=False)
    for (name, a), (_, b) in zip(first.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="not a report"):
        ptq.settings_from_report({"method": "adpdm"})
    # reports of older versions name deleted options: read at the value that lives on, refused at another
    report = json.loads((tmp_path / "report.json").read_text())
    report["reconstruction"].update(row_error="sampler", accept_on="unit")
    assert ptq.settings_from_report(report)[3] == recon
    report["reconstruction"]["row_error"] = "relative"
    with pytest.raises(ValueError, match="row_error.*deleted"):
        ptq.settings_from_report(report)


def _qcfg(method, preset="w8a8", groups=2):
    return adpdm.QuantConfig.preset(preset, num_steps=K, groups=groups if get_method(method).takes_groups else None)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_and_reports(tmp_path, method):
    unet = make_unet()
    calib, recon = _cfgs()
    res = run_ptq(unet, SCHED, method, _qcfg(method), calib, recon, out_dir=tmp_path, progress=False)
    assert adpdm.get_state(res.model) == adpdm.QuantState.FROZEN
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["method"] == method
    assert len(report["selected_steps"]) == 2 and len(set(report["selected_steps"])) == 2
    assert report["calib_seconds"] > 0 and report["peak_mem_mb"] > 0
    cost = report["cost"]  # the bits of every layer averaged over the multiply-accumulates, between the presets'
    qcfg = _qcfg(method)
    assert qcfg.wbits <= cost["wbits"] <= 8 and qcfg.abits <= cost["abits"] <= 8 and cost["bops"] > 0
    assert bool(report["unit_losses"]) == get_method(method).reconstruct
    for loss in report["unit_losses"]:
        assert loss["rec_after"] >= 0
    out = sample(res.model, SCHED, 2, SamplerConfig(num_steps=K), progress=False).images
    assert torch.isfinite(out).all()


def test_adpdm_reports_srm_selection_and_partition():
    unet = make_unet()
    calib, recon = _cfgs(steps=3)
    res = run_ptq(unet, SCHED, "adpdm", _qcfg("adpdm", "w4a8"), calib, recon, progress=False)
    sel = res.report["selection"]
    assert sel["steps"] == res.report["selected_steps"] and "mmd2" in sel and len(sel["risk"]) == K
    table = res.report["partition"]
    assert len(table) == K and set(table) <= {0, 1}
    initial = sel["initial_partition"]["shared"]
    assert sorted(initial) == initial and set(initial) == {0, 1}  # contiguous segments, both groups used
    # a step outside the calibration set keeps the group whose range was fitted with its own data
    assert all(table[k] == initial[k] for k in range(K) if k not in sel["steps"])
    assert res.report["protocol"].startswith("first and last layer W8A8")
    # every unit searched the table, and the whole model decided each change (unit losses say which)
    assert {u["table"] for u in res.report["unit_losses"]} <= {"unchanged", "kept", "reverted"}


def test_adpdm_ranges_see_every_step_and_the_peers_their_calibration_steps(monkeypatch):
    observed = []
    real_observe = ptq._observe

    def observe(model, data, batch, device):
        observed.append(sorted(set(data.step.tolist())))
        return real_observe(model, data, batch, device)

    monkeypatch.setattr(ptq, "_observe", observe)
    calib, recon = _cfgs(steps=2)
    for method in ("adpdm", "qdiffusion", "adpdm-g1"):
        run_ptq(_copy(UNET), SCHED, method, _qcfg(method, "w4a8"), calib, recon, progress=False)
    assert observed[0] == list(range(K))  # adpdm: every step, once (SRM scores that model)
    assert len(observed[1]) == 2  # qdiffusion: its uniform calibration steps
    assert observed[2] == list(range(K)) and len(observed[3]) == 2  # adpdm-g1: SRM's model, then its steps


def test_reconstruction_lowers_the_block_error_and_never_the_held_out_error():
    unet = make_unet()
    calib, _ = _cfgs(steps=4)
    res = run_ptq(unet, SCHED, "qdiffusion", adpdm.QuantConfig.preset("w4a8", num_steps=K), calib,
                  ReconConfig(iters=30, batch_size=8), progress=False)  # fmt: skip
    losses = res.report["unit_losses"]
    improved = sum(u["fit_after"] < u["fit_before"] for u in losses)
    assert improved >= 0.8 * len(losses)
    # each result is judged on held-out trajectories, never kept if worse
    assert all(u["rec_after"] <= u["rec_before"] for u in losses)
    assert all((u["kept"] == "reconstructed") == (u["heldout_reconstructed"] < u["rec_before"]) for u in losses)


def test_resume_after_interruption_is_identical(tmp_path, monkeypatch):
    base = make_unet()
    calib, recon = _cfgs(steps=3)
    qcfg = _qcfg("adpdm", "w4a8")
    full = run_ptq(_copy(base), SCHED, "adpdm", qcfg, calib, recon, progress=False).model

    real = recon_module.reconstruct_unit
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recon_module, "reconstruct_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_ptq(_copy(base), SCHED, "adpdm", qcfg, calib, recon, out_dir=tmp_path, progress=False)
    progress = json.loads((tmp_path / ".resume" / "progress.json").read_text())
    assert progress["next_unit"] == 5
    monkeypatch.setattr(recon_module, "reconstruct_unit", real)
    resumed = run_ptq(_copy(base), SCHED, "adpdm", qcfg, calib, recon, out_dir=tmp_path,
                      resume=True, progress=False).model  # fmt: skip
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_bad_arguments_fail_before_work():
    calib, recon = _cfgs()
    with pytest.raises(ValueError, match="num_steps"):
        run_ptq(make_unet(), SCHED, "adpdm", adpdm.QuantConfig.preset("w8a8", num_steps=K + 1), calib, recon)
    with pytest.raises(ValueError, match="calib_steps"):
        CalibConfig(calib_steps=0)
    with pytest.raises(ValueError, match="ReconConfig.iters"):
        ReconConfig(iters=0)
    with pytest.raises(ValueError, match="resume"):
        run_ptq(make_unet(), SCHED, "rtn", adpdm.QuantConfig.preset("w8a8", num_steps=K), calib, recon, resume=True)


def test_a_run_never_ends_below_its_start_on_the_samplers_output(monkeypatch):
    """The whole reconstructed model is kept only if its samples are at least as close to FP as the
    start's; a reconstruction that wrecks the model ends as its start, exactly."""
    base = make_unet()
    calib, recon = _cfgs(steps=2)
    qcfg = _qcfg("qdiffusion", "w4a8")

    def idle(model, *args, **kwargs):
        return []

    def wreck(model, *args, **kwargs):
        for _, q in adpdm.quantize.act_quantizers(model):
            q.scale.data.mul_(50)
        return []

    monkeypatch.setattr(ptq, "reconstruct", idle)
    start = run_ptq(_copy(base), SCHED, "qdiffusion", qcfg, calib, recon, progress=False)
    monkeypatch.setattr(ptq, "reconstruct", wreck)
    wrecked = run_ptq(_copy(base), SCHED, "qdiffusion", qcfg, calib, recon, progress=False)
    outcome = wrecked.report["outcome"]
    assert outcome["start"] in ("recipe", "minmax") and set(outcome["psnr"]) == {"recipe", "minmax", "reconstructed"}
    assert outcome["kept"] == outcome["start"] and outcome["psnr"]["reconstructed"] < outcome["psnr"][outcome["start"]]
    for (name, a), (_, b) in zip(start.model.state_dict().items(), wrecked.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert start.report["outcome"]["kept"] == "reconstructed"  # no change is kept (a tie)
    off = run_ptq(_copy(base), SCHED, "qdiffusion", qcfg, calib, dataclasses.replace(recon, sample_judge=0,
                  start="recipe"), progress=False)  # fmt: skip
    assert off.report["outcome"] is None
    with pytest.raises(ValueError, match="sample_judge"):
        ReconConfig(sample_judge=0)


@pytest.mark.parametrize("method", ["rtn", "adpdm"])
def test_smoothing_is_a_lever_of_every_method(method):
    calib, recon = _cfgs()
    qcfg = dataclasses.replace(_qcfg(method, "w6a6"), smoothing=True)
    res = run_ptq(_copy(UNET), SCHED, method, qcfg, calib, recon, progress=False)
    chosen = res.report["smoothing"]
    layers = dict(adpdm.quantize.quant_layers(res.model))
    assert chosen and all(layers[n].smoothed == (a is not None) for n, a in chosen.items())
    assert res.report["quant_config"]["smoothing"] is True
    assert run_ptq(_copy(UNET), SCHED, method, _qcfg(method, "w6a6"), calib, recon, progress=False).report[
        "smoothing"] is None  # fmt: skip
