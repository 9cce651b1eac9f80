import copy
import math

import torch
from conftest import make_unet
from diffusers import DDPMScheduler

import adpdm
from adpdm.calib.data import forward_rows, record_trajectories
from adpdm.quantize import act_quantizers, quant_layers, quantization_disabled
from adpdm.recon.start import SampleJudge, SamplerCheck, minmax_act_ranges, score_starts, set_start
from adpdm.sampling import SamplerConfig

K = 3
CPU = torch.device("cpu")
SCHED = dict(DDPMScheduler().config)


def _calibrated(init="lp", unet=None):
    unet = unet if unet is not None else make_unet(attention=False, channels=(8, 16))
    qcfg = adpdm.QuantConfig(wbits=4, abits=6, groups=2, num_steps=K, weight_init=init, act_init=init, lp_norm=2.4)
    adpdm.quantize_model(unet, qcfg)
    calib = record_trajectories(unet, SCHED, 4, SamplerConfig(num_steps=K), progress=False)
    with adpdm.calibrate(unet):
        forward_rows(unet, calib, 8, CPU)
    return unet


def _act_scales(model):
    return [q.scale.detach().clone() for _, q in act_quantizers(model)]


def _weight_scales(model):
    return [lay.weight_quant.scale.clone() for _, lay in quant_layers(model)]


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _twins():
    """The same FP model calibrated on the same rows with Lp and with min-max ranges."""
    fp = make_unet(attention=False, channels=(8, 16))
    torch.manual_seed(0)
    lp = _calibrated("lp", copy.deepcopy(fp))
    torch.manual_seed(0)
    return lp, _calibrated("minmax", fp)


def test_minmax_ranges_come_from_the_statistics_and_leave_the_model_as_it_was():
    lp, minmax = _twins()
    before = _act_scales(lp)
    assert not _equal(before, _act_scales(minmax))
    assert _equal([s for s, _ in minmax_act_ranges(lp)], _act_scales(minmax))
    assert _equal(_act_scales(lp), before)
    assert {q.init for _, q in act_quantizers(lp)} == {"lp"}


def test_both_starts_are_scored_and_either_can_be_set_exactly():
    lp, minmax = _twins()
    recipe_a, recipe_w = _act_scales(lp), _weight_scales(lp)
    scores, ranges = score_starts(lp, lambda: sum(float(s.sum()) for s in _act_scales(lp)))  # the ranges' width
    assert scores["minmax"] > scores["recipe"]  # min-max ranges are the widest
    assert _equal(_act_scales(lp), recipe_a)  # left with the recipe's
    set_start(lp, ranges, "minmax")
    assert _equal(_act_scales(lp), _act_scales(minmax)) and _equal(_weight_scales(lp), recipe_w)
    assert {q.init for _, q in act_quantizers(lp)} == {"lp"}  # the recipe's settings stay
    set_start(lp, ranges, "recipe")
    assert _equal(_act_scales(lp), recipe_a)


def test_the_sample_judge_scores_samples_against_fp_on_fixed_noise():
    unet = _calibrated()
    judge = SampleJudge(unet, SCHED, SamplerConfig(num_steps=K, seed=5), num=3, first=4)
    assert judge.reference.shape[0] == 3
    score = judge()
    assert math.isfinite(score) and score == judge()  # the same noise every time
    with quantization_disabled(unet):
        assert judge() == math.inf  # the FP model is its own reference
    for _, q in act_quantizers(unet):  # coarser activations: further from FP
        q.scale.data.mul_(8)
    assert judge() < score


def test_the_check_keeps_a_result_only_if_it_scores_at_least_its_start():
    lp, minmax = _twins()
    for choose, start in ((True, "minmax"), (False, "recipe")):
        for result, kept in ((1.5, None), (2.5, "reconstructed")):
            model = copy.deepcopy(lp)
            scores = iter([1.0, 2.0, result])  # recipe, min-max, then the reconstructed model
            check = SamplerCheck(lambda scores=scores: next(scores), choose=choose)
            check.begin(model)
            assert check.start == start
            at_start = copy.deepcopy(model.state_dict())
            for _, q in act_quantizers(model):  # "reconstruction" changes the model
                q.scale.data.mul_(1.1)
            report = check.end(model)
            expected = kept or ("reconstructed" if result >= (2.0 if choose else 1.0) else start)
            assert report == {"start": start, "psnr": {"recipe": 1.0, "minmax": 2.0, "reconstructed": result},
                              "kept": expected}  # fmt: skip
            restored = all(torch.equal(v, model.state_dict()[k]) for k, v in at_start.items())
            assert restored == (expected != "reconstructed")
