import dataclasses
import json

import pytest
import torch
from conftest import make_unet
from diffusers import DDPMScheduler

import adpdm
import adpdm.ptq as ptq
from adpdm.methods import METHODS, get_method
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
    assert get_method("qdiffusion").quant_config(base, groups=8).groups == 1
    assert get_method("adpdm").quant_config(base, groups=8).groups == 8
    assert get_method("adpdm-perstep").quant_config(base).groups == 100
    assert get_method("adpdm-perlayer").quant_config(base, 2).partition == "per_layer"
    with pytest.raises(ValueError, match="unknown method"):
        get_method("brecq")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_and_reports(tmp_path, method):
    unet = make_unet()
    calib, recon = _cfgs()
    res = run_ptq(unet, SCHED, method, adpdm.QuantConfig.preset("w8a8", num_steps=K), calib, recon,
                  groups=2, out_dir=tmp_path, progress=False)  # fmt: skip
    assert adpdm.get_state(res.model) == adpdm.QuantState.FROZEN
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["method"] == method
    assert len(report["selected_steps"]) == 2 and len(set(report["selected_steps"])) == 2
    assert report["calib_seconds"] > 0 and report["peak_mem_mb"] > 0
    assert bool(report["unit_losses"]) == get_method(method).reconstruct
    for loss in report["unit_losses"]:
        assert loss["rec_after"] >= 0
    out = sample(res.model, SCHED, 2, SamplerConfig(num_steps=K), progress=False).images
    assert torch.isfinite(out).all()


def test_adpdm_reports_srm_selection_and_partition():
    unet = make_unet()
    calib, recon = _cfgs(steps=3)
    res = run_ptq(unet, SCHED, "adpdm", adpdm.QuantConfig.preset("w4a8", num_steps=K), calib, recon,
                  groups=2, progress=False)  # fmt: skip
    sel = res.report["selection"]
    assert sel["steps"] == res.report["selected_steps"] and "mmd2" in sel and len(sel["risk"]) == K
    table = res.report["partition"]
    assert len(table) == K and set(table) <= {0, 1}


def test_trajectory_risk_weights_steps_by_the_sampler_and_ranges_cover_all_steps(monkeypatch):
    """srm_risk="trajectory" scales each step's risk by eps_sensitivity^2; range_steps="all" observes every step."""
    risks, observed = [], []
    real_select, real_observe = ptq.ts.srm_select, ptq._observe

    def select(features, risk, n, gamma):
        risks.append(risk)
        return real_select(features, risk, n, gamma)

    def observe(model, data, batch, device):
        observed.append(sorted(set(data.step.tolist())))
        return real_observe(model, data, batch, device)

    monkeypatch.setattr(ptq.ts, "srm_select", select)
    monkeypatch.setattr(ptq, "_observe", observe)
    calib, recon = _cfgs(steps=2)
    qcfg = adpdm.QuantConfig.preset("w4a8", num_steps=K)
    for risk, ranges in (("output", "selected"), ("trajectory", "all")):
        cfg = dataclasses.replace(calib, srm_risk=risk, range_steps=ranges)
        run_ptq(_copy(UNET), SCHED, "adpdm", qcfg, cfg, recon, groups=2, progress=False)
    sens = ptq.eps_sensitivity(SCHED, calib.sampler)
    torch.testing.assert_close(risks[1], risks[0] * sens.to(risks[0]).pow(2))
    # SRM signatures see every step; the ranges then the selected steps only, or every step
    assert observed[0] == observed[2] == list(range(K))
    assert len(observed[1]) == 2 and observed[3] == list(range(K))


def test_reconstruction_lowers_the_block_error():
    unet = make_unet()
    calib, _ = _cfgs(steps=4)
    res = run_ptq(unet, SCHED, "qdiffusion", adpdm.QuantConfig.preset("w4a8", num_steps=K), calib,
                  ReconConfig(iters=30, batch_size=8), progress=False)  # fmt: skip
    losses = res.report["unit_losses"]
    improved = sum(u["rec_after"] < u["rec_before"] for u in losses)
    assert improved >= 0.8 * len(losses)


def test_resume_after_interruption_is_identical(tmp_path, monkeypatch):
    base = make_unet()
    calib, recon = _cfgs(steps=3)
    qcfg = adpdm.QuantConfig.preset("w4a8", num_steps=K)
    full = run_ptq(_copy(base), SCHED, "adpdm", qcfg, calib, recon, groups=2, progress=False).model

    real = recon_module.reconstruct_unit
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recon_module, "reconstruct_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_ptq(_copy(base), SCHED, "adpdm", qcfg, calib, recon, groups=2, out_dir=tmp_path, progress=False)
    progress = json.loads((tmp_path / ".resume" / "progress.json").read_text())
    assert progress["next_unit"] == 5
    monkeypatch.setattr(recon_module, "reconstruct_unit", real)
    resumed = run_ptq(_copy(base), SCHED, "adpdm", qcfg, calib, recon, groups=2, out_dir=tmp_path,
                      resume=True, progress=False).model  # fmt: skip
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_bad_arguments_fail_before_work():
    calib, recon = _cfgs()
    with pytest.raises(ValueError, match="num_steps"):
        run_ptq(make_unet(), SCHED, "adpdm", adpdm.QuantConfig.preset("w8a8", num_steps=K + 1), calib, recon)
    with pytest.raises(ValueError, match="calib_steps"):
        CalibConfig(calib_steps=0)
    with pytest.raises(ValueError, match="srm_risk"):
        CalibConfig(srm_risk="loss")
    with pytest.raises(ValueError, match="range_steps"):
        CalibConfig(range_steps="some")
    with pytest.raises(ValueError, match="unobserved"):
        CalibConfig(unobserved="random")
    with pytest.raises(ValueError, match="ReconConfig.iters"):
        ReconConfig(iters=0)
    with pytest.raises(ValueError, match="resume"):
        run_ptq(make_unet(), SCHED, "rtn", adpdm.QuantConfig.preset("w8a8", num_steps=K), calib, recon, resume=True)


def test_unobserved_steps_take_the_group_that_quantizes_them_best():
    """With every step observed, a step outside the calibration set goes to its best-fitting group."""
    from adpdm.context import step_context
    from adpdm.nn.act_quant import ActQuantizer
    from adpdm.nn.partition import StepPartition
    from adpdm.state import QuantState

    part = StepPartition(6, 2)  # contiguous: steps 0-2 -> group 0, 3-5 -> group 1
    q = ActQuantizer(4, False, part, own_partition=True)
    q.state = QuantState.CALIBRATING
    for k in range(6):
        with step_context(k):
            q(torch.rand(8, 32) * (10 if k in (3, 5) else 1))  # step 4 is small like steps 0-2
    q.init_ranges()
    model = torch.nn.Sequential(q)
    rules = ptq._fill_unobserved(model, steps=[0, 5], rule="least_error")
    assert rules == {1: "least error", 2: "least error", 3: "least error", 4: "least error"}
    assert part.table.tolist() == [0, 0, 0, 1, 0, 1]  # step 4 joins the small-range group, not its neighbours'
    q.stats.clear()  # nothing observed: the nearest calibrated step's group
    part.set_table(torch.tensor([0, 0, 0, 1, 1, 1]))
    assert set(ptq._fill_unobserved(model, steps=[0, 5], rule="least_error").values()) == {"nearest"}
    assert part.table.tolist() == [0, 0, 0, 1, 1, 1]


def test_sampler_step_weighting_weights_rows_by_their_step(monkeypatch):
    out, target = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    loss = recon_module._rec_loss
    torch.testing.assert_close(loss(out, target, torch.ones(3)), loss(out, target))
    torch.testing.assert_close(loss(out, target, torch.tensor([3.0, 0.0, 0.0])), loss(out[:1], target[:1]))
    with pytest.raises(ValueError, match="step_weighting"):
        ReconConfig(step_weighting="loss")
    seen = []
    real = ptq._reconstruct

    def spy(*args):
        seen.append(args[7])  # the row weights
        return real(*args)

    monkeypatch.setattr(ptq, "_reconstruct", spy)
    calib, recon = _cfgs(steps=2)
    res = run_ptq(_copy(UNET), SCHED, "qdiffusion", adpdm.QuantConfig.preset("w8a8", num_steps=K), calib,
                  dataclasses.replace(recon, step_weighting="sampler"), progress=False)  # fmt: skip
    sens = ptq.eps_sensitivity(SCHED, calib.sampler).pow(2)
    steps = res.report["selected_steps"]
    weights = seen[0]
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights.max() / weights.min() == pytest.approx(float(sens[steps].max() / sens[steps].min()), rel=1e-4)


def test_least_error_fill_observes_every_step_after_reconstruction_and_keeps_ranges(monkeypatch):
    calib, recon = _cfgs(steps=2)
    qcfg = adpdm.QuantConfig.preset("w4a8", num_steps=K)
    scales = []
    real = ptq._fill_unobserved

    def spy(model, steps, rule, **kw):
        scales.append([q.scale.detach().clone() for _, q in adpdm.quantize.act_quantizers(model)])
        return real(model, steps, rule, **kw)

    monkeypatch.setattr(ptq, "_fill_unobserved", spy)
    res = run_ptq(_copy(UNET), SCHED, "adpdm", qcfg, dataclasses.replace(calib, unobserved="least_error"), recon,
                  groups=2, progress=False)  # fmt: skip
    rules = res.report["selection"]["unobserved_steps"]
    assert sorted(int(k) for k in rules) == sorted(set(range(K)) - set(res.report["selected_steps"]))
    assert set(rules.values()) == {"least error"}
    frozen = [q.scale for _, q in adpdm.quantize.act_quantizers(res.model)]
    assert all(torch.equal(a, b) for a, b in zip(scales[0], frozen, strict=True))  # re-observing kept the ranges


def test_output_error_fill_picks_the_group_with_the_least_output_error(monkeypatch):
    calib, recon = _cfgs(steps=2)
    qcfg = adpdm.QuantConfig.preset("w4a8", num_steps=K)
    seen = {}
    real = ptq._output_errors

    def spy(model, part, step, **kw):
        seen[step] = real(model, part, step, **kw)
        return seen[step]

    monkeypatch.setattr(ptq, "_output_errors", spy)
    res = run_ptq(_copy(UNET), SCHED, "adpdm", qcfg, dataclasses.replace(calib, unobserved="output_error"), recon,
                  groups=2, progress=False)  # fmt: skip
    table = res.report["partition"]
    assert set(seen) == set(range(K)) - set(res.report["selected_steps"])
    assert all(table[k] == int(err.argmin()) and err.min() < err.max() for k, err in seen.items())
    assert set(res.report["selection"]["unobserved_steps"].values()) == {"output error"}
