import torch
from conftest import make_unet
from diffusers import DDPMScheduler

from adpdm.calib.data import CalibrationSet, record_trajectories, relative_error
from adpdm.sampling import SamplerConfig

SCHED = dict(DDPMScheduler(num_train_timesteps=1000).config)


def test_records_every_step_of_every_trajectory_and_both_guidance_branches(tmp_path):
    unet = make_unet(num_class_embeds=11)
    cfg = SamplerConfig(num_steps=3, batch_size=2, guidance_scale=2.0)
    calib = record_trajectories(unet, SCHED, 3, cfg, num_classes=10, null_class=10, progress=False)
    assert len(calib) == 3 * 3 * 2  # samples x steps x branches
    assert calib.num_steps == 3
    for i in range(3):
        for k in range(3):
            rows = (calib.sample == i) & (calib.step == k)
            assert sorted(calib.branch[rows].tolist()) == [0, 1]
            labels = calib.cond["class_labels"][rows & (calib.branch == 1)]
            assert labels.tolist() == [10]  # the unconditional branch carries the null label
            # both branches of one call see the same x_k
            xs = calib.x[rows]
            assert torch.equal(xs[0], xs[1])
    # the timesteps decrease along the trajectory
    t = [int(calib.timestep[calib.step == k][0]) for k in range(3)]
    assert t == sorted(t, reverse=True)
    # shards round trip
    calib.save(tmp_path, shard_rows=5)
    back = CalibrationSet.load(tmp_path)
    assert torch.equal(back.x, calib.x) and torch.equal(back.cond["class_labels"], calib.cond["class_labels"])


def test_recording_is_seeded_and_selects_steps():
    unet = make_unet()
    cfg = SamplerConfig(num_steps=4, batch_size=3)
    a = record_trajectories(unet, SCHED, 3, cfg, progress=False)
    b = record_trajectories(unet, SCHED, 3, cfg, progress=False)
    assert torch.equal(a.x, b.x)
    sel = a.select_steps([1, 3])
    assert set(sel.step.tolist()) == {1, 3} and len(sel) == 6


def test_relative_error_is_per_row_and_scale_free():
    ref = torch.randn(3, 2, 4, 4)
    out = ref + 0.1 * torch.randn_like(ref)
    err = relative_error(out, ref)
    assert err.shape == (3,)
    expected = torch.stack([((o - r).pow(2).sum() / r.pow(2).sum()) for o, r in zip(out, ref, strict=True)])
    torch.testing.assert_close(err, expected)
    torch.testing.assert_close(relative_error(10 * out, 10 * ref), err)  # the size of a row does not count
    assert relative_error(ref, ref).eq(0).all() and relative_error(out, torch.zeros_like(ref)).isfinite().all()
