import dataclasses

import pytest
import torch
from conftest import make_unet
from diffusers import DDPMScheduler

import adpdm
from adpdm.calib.data import record_trajectories
from adpdm.models.units import find_units
from adpdm.quantize import act_quantizers, quant_layers
from adpdm.recon.capture import execution_order
from adpdm.recon.reconstruct import (
    ReconConfig,
    _rec_loss,
    heldout_trajectories,
    holdout_split,
    reconstruct,
    reconstruct_unit,
    row_weights,
)
from adpdm.sampling import SamplerConfig
from adpdm.tensor.fake_quant import quantize

K = 3
CPU = torch.device("cpu")
CFG = ReconConfig(iters=6, batch_size=4, capture_batch=8)


def _calibrated(wbits=4, groups=1, samples=4):
    """A tiny W{wbits}A8 UNet, calibrated on every step of ``samples`` trajectories, AdaRound enabled."""
    unet = make_unet(attention=False, channels=(8, 16))
    adpdm.quantize_model(unet, adpdm.QuantConfig(wbits=wbits, abits=8, groups=groups, num_steps=K))
    calib = record_trajectories(unet, dict(DDPMScheduler().config), samples, SamplerConfig(num_steps=K),
                                progress=False)  # fmt: skip
    with adpdm.calibrate(unet):
        for rows in calib.batches(8):
            x, t, step, _ = calib.model_inputs(rows, CPU)
            with adpdm.step_context(step):
                unet(x, t)
    for _, layer in quant_layers(unet):
        layer.weight_quant.enable_adaround(layer.weight)
    return unet, calib, execution_order(unet, find_units(unet), calib, CPU)


def test_holdout_split_is_deterministic_disjoint_and_by_trajectory():
    _, calib, _ = _calibrated(samples=4)
    fit, held = holdout_split(calib, 0.25, seed=3)
    fit2, held2 = holdout_split(calib, 0.25, seed=3)
    assert torch.equal(fit, fit2) and torch.equal(held, held2)
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(len(calib)))
    assert set(calib.sample[fit].tolist()).isdisjoint(calib.sample[held].tolist())
    assert len(set(calib.sample[held].tolist())) == 1  # 0.25 of 4 trajectories, all K steps of it
    assert len(held) == K
    others = {tuple(holdout_split(calib, 0.25, seed=s)[1].tolist()) for s in range(8)}
    assert len(others) > 1  # the seed (unit index) changes which trajectory is held out
    one = calib.subset(calib.sample == 0)  # a single trajectory: split by row
    fit, held = holdout_split(one, 0.5, seed=0)
    assert len(fit) + len(held) == K and set(fit.tolist()).isdisjoint(held.tolist())
    fit, held = holdout_split(calib, 0.0, seed=0)
    assert torch.equal(fit, held)


@pytest.mark.parametrize("rounding", ["adaround", "sign"])
def test_sabotaged_unit_is_restored_to_its_start_exactly(rounding):
    unet, calib, units = _calibrated(groups=2)
    unit = next(u for u in units if u.kind == "resnet")
    part = unet.adpdm_partition
    alpha, table = part.alpha.detach().clone(), part.table.clone()
    layers = [m for m in unit.module.modules() if isinstance(m, adpdm.nn.layers.QuantLayer)]
    quantizers = [m for m in unit.module.modules() if isinstance(m, adpdm.nn.act_quant.ActQuantizer)]
    scales = [q.scale.detach().clone() for q in quantizers]
    bad = dataclasses.replace(CFG, rounding=rounding, lr_rounding=1e3, lr_scale=1e3, lr_alpha=1e3)
    loss = reconstruct_unit(unet, unit, 0, calib, bad, len(units), CPU, search_groups=True)
    assert loss.kept == "start" and loss.rec_after == loss.rec_before
    assert loss.heldout_reconstructed > loss.rec_before
    for lay in layers:
        wq = lay.weight_quant
        assert torch.equal(wq.codes(lay.weight), quantize(lay.weight, wq.scale, wq.zero_point, wq.qmin, wq.qmax))
    assert all(torch.equal(q.scale, s) for q, s in zip(quantizers, scales, strict=True))
    assert torch.equal(part.alpha, alpha) and torch.equal(part.table, table)
    idle = dataclasses.replace(bad, iters=1, learn_rounding=False, learn_act_scales=False)
    again = reconstruct_unit(unet, unit, 0, calib, idle, len(units), CPU)
    assert again.rec_before == loss.rec_before  # the restored unit measures exactly as its start


@pytest.mark.parametrize("rounding", ["adaround", "sign"])
def test_no_unit_ends_worse_than_its_start(rounding):
    unet, calib, units = _calibrated(groups=2)
    losses = reconstruct(unet, units, calib, dataclasses.replace(CFG, rounding=rounding), CPU, progress=False,
                         search_groups=True)  # fmt: skip
    assert len(losses) == len(units)
    for loss in losses:
        assert loss.rec_after <= loss.rec_before, loss
        assert loss.kept in ("start", "reconstructed")
        assert loss.rec_after == (loss.heldout_reconstructed if loss.kept == "reconstructed" else loss.rec_before)
        assert 0.0 <= loss.undecided <= 1.0
        if rounding == "sign":
            assert loss.undecided == 0.0
    assert any(loss.kept == "reconstructed" for loss in losses)
    # what is kept is what freezes: the frozen model's unit outputs are those the errors were measured on
    assert all(lay.weight_quant.rounding_mode == "adaround" for _, lay in quant_layers(unet))
    assert all(not q.scale.requires_grad for _, q in act_quantizers(unet))


def test_hard_evaluation_is_what_freeze_deploys():
    unet, calib, units = _calibrated(groups=2)
    reconstruct(unet, units, calib, CFG, CPU, progress=False, search_groups=True)
    x, t, step, _ = calib.model_inputs(torch.arange(6), CPU)
    with torch.no_grad(), adpdm.step_context(step):
        before = unet(x, t).sample
        adpdm.freeze(unet)
        after = unet(x, t).sample
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_config_validates_rounding_and_holdout():
    with pytest.raises(ValueError, match="rounding"):
        ReconConfig(rounding="nearest")
    with pytest.raises(ValueError, match="holdout"):
        ReconConfig(holdout=1.0)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="search_fraction"):
            ReconConfig(search_fraction=bad)
    with pytest.raises(ValueError, match="start"):
        ReconConfig(start="rtn")
    with pytest.raises(ValueError, match="sample_judge"):
        ReconConfig(sample_judge=-1)


def test_the_group_search_runs_on_its_share_of_the_iterations_then_fits_the_hard_table(monkeypatch):
    mixtures = []  # one entry per quantizer call that used the soft mixture
    real = adpdm.nn.act_quant.ActQuantizer._mixture
    monkeypatch.setattr(adpdm.nn.act_quant.ActQuantizer, "_mixture",
                        lambda self, x, step: mixtures.append(1) or real(self, x, step))  # fmt: skip
    hardened = []  # alpha at every hardening
    real_harden = adpdm.recon.group_search.GroupSearch.harden

    def harden(self):
        hardened.append(self.parts[0].alpha.detach().clone())
        real_harden(self)

    monkeypatch.setattr(adpdm.recon.group_search.GroupSearch, "harden", harden)
    counts = {}
    for fraction in (0.5, 1.0):
        mixtures.clear()
        hardened.clear()
        unet, calib, units = _calibrated(groups=2)
        unit = next(u for u in units if u.kind == "resnet")
        cfg = dataclasses.replace(CFG, iters=8, search_fraction=fraction)
        reconstruct_unit(unet, unit, 0, calib, cfg, len(units), CPU, search_groups=True)
        counts[fraction] = len(mixtures)
        part = unet.adpdm_partition
        assert len(hardened) == (2 if fraction < 1 else 1)  # mid-run (then the hard table), and after the unit
        assert torch.equal(hardened[0], hardened[-1])  # after the mid-run hardening nothing moves alpha
        assert not part.searching and torch.equal(part.table, hardened[-1].argmax(1))
    assert 0 < 2 * counts[0.5] == counts[1.0]  # half the iterations searched


def test_rows_count_by_their_relative_error_times_their_steps_weight():
    target = torch.randn(4, 3, 5, 5) * torch.tensor([1.0, 10.0, 100.0, 0.1]).view(4, 1, 1, 1)
    out = target * 1.1  # the same 10% relative error on every row

    def per_row(weights):
        return torch.tensor([float(_rec_loss(out[i : i + 1], target[i : i + 1], weights[i : i + 1])) for i in range(4)])

    alike = row_weights(target)  # no step weights: every row counts by its relative error
    assert alike.mean().item() == pytest.approx(1.0)
    assert per_row(alike).max().item() == pytest.approx(per_row(alike).min().item(), rel=1e-5)  # squared: 1e8 apart
    steps, step_weights = torch.tensor([0, 1, 1, 2]), torch.tensor([0.36, 0.04, 1e-4])
    weights = row_weights(target, steps, step_weights)
    assert weights.mean().item() == pytest.approx(1.0)
    errors = per_row(weights)
    torch.testing.assert_close(errors / errors[0], step_weights[steps] / step_weights[0])
    with pytest.raises(ValueError, match="steps"):
        row_weights(target, None, step_weights)


def test_held_out_trajectories_cover_every_step_and_fit_rows_only_the_calibration_steps():
    _, calib, _ = _calibrated(samples=4)
    rows, held = heldout_trajectories(calib, [0], 0.25, seed=1)
    assert set(rows.step[held].tolist()) == set(range(K)) and len(set(rows.sample[held].tolist())) == 1
    assert set(rows.step[~held].tolist()) == {0} and len(rows.step[~held]) == 3  # 3 fit trajectories, step 0
    assert set(rows.sample[held].tolist()).isdisjoint(rows.sample[~held].tolist())
    again, held2 = heldout_trajectories(calib, [0], 0.25, seed=1)
    assert torch.equal(held, held2) and torch.equal(rows.x, again.x)
    rows, none = heldout_trajectories(calib, [0, 2], 0.0, seed=1)
    assert none is None and set(rows.step.tolist()) == {0, 2}


def test_a_unit_is_judged_on_the_given_held_out_rows():
    unet, calib, units = _calibrated(samples=4)
    rows, held = heldout_trajectories(calib, [1], 0.25, seed=0)
    loss = reconstruct_unit(unet, units[0], 0, rows, CFG, len(units), CPU, held_rows=held)
    assert loss.rec_after <= loss.rec_before and loss.kept in ("start", "reconstructed")


def test_the_model_judge_on_some_steps_is_their_share_of_the_whole_error():
    from adpdm.ptq import _model_judge

    unet, calib, _ = _calibrated(samples=2)
    judge = _model_judge(unet, calib, torch.linspace(0.6, 0.1, K), 8, CPU)
    whole = judge()
    assert whole > 0
    parts = [judge(torch.tensor([k])) for k in range(K)]
    assert sum(parts) == pytest.approx(whole, rel=1e-6)  # table changes compare only the steps that moved
    assert judge(torch.arange(K)) == pytest.approx(whole, rel=1e-6)


def test_named_budgets():
    from adpdm.recon.reconstruct import BUDGETS, ReconConfig

    assert [ReconConfig.budget(name).iters for name in ("fast", "default", "thorough")] == [50, 200, 1000]
    assert ReconConfig.budget("default", seed=3).seed == 3 and ReconConfig().iters == BUDGETS["default"]
    with pytest.raises(ValueError, match="unknown reconstruction budget"):
        ReconConfig.budget("huge")
