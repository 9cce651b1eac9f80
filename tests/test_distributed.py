"""Sampling sharded over processes gives exactly the samples of one process."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import make_unet
from diffusers import DDPMScheduler
from safetensors.torch import load_file

from adpdm.calib.data import CalibrationSet, record_trajectories
from adpdm.distributed import record_distributed, sample_distributed, shard
from adpdm.sampling import SamplerConfig, sample

SCHED = dict(DDPMScheduler(num_train_timesteps=1000).config)
CFG = SamplerConfig(num_steps=3, batch_size=3, guidance_scale=2.0)


def test_shards_cover_the_batches_in_order() -> None:
    for world in (1, 2, 3, 5):
        ranges = [r for rank in range(world) for r in shard(10, 3, rank, world)]
        assert ranges == [(0, 3), (3, 3), (6, 3), (9, 1)]
    with pytest.raises(ValueError):
        shard(10, 3, 2, 2)


def test_shards_concatenate_to_the_whole_run() -> None:
    torch.manual_seed(0)
    unet = make_unet(num_class_embeds=11)
    kw = dict(num_classes=10, null_class=10, progress=False)
    whole = sample(unet, SCHED, 7, CFG, **kw)
    parts = [sample(unet, SCHED, n, CFG, first=f, **kw) for f, n in shard(7, 3, 0, 1)]
    assert torch.equal(torch.cat([p.images for p in parts]), whole.images)
    assert torch.equal(torch.cat([p.labels for p in parts]), whole.labels)
    assert torch.equal(sample_distributed(unet, SCHED, 7, CFG, **kw).images, whole.images)  # one process


def _same_calib(a, b) -> bool:
    keys = ("x", "timestep", "step", "sample", "branch")
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in keys) and torch.equal(
        a.cond["class_labels"], b.cond["class_labels"]
    )


SCRIPT = """
import sys, torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import save_file
from adpdm.distributed import record_distributed, sample_distributed
from adpdm.sampling import SamplerConfig
from adpdm.distributed import process_state

torch.set_num_threads(1)
state = process_state()
assert state.num_processes == 2
unet = UNet2DModel.from_pretrained(sys.argv[1]).eval()
cfg = SamplerConfig(num_steps=3, batch_size=3, guidance_scale=2.0)
out = sample_distributed(unet, dict(DDPMScheduler(num_train_timesteps=1000).config), 7, cfg, state=state,
                         num_classes=10, null_class=10)
calib = record_distributed(unet, dict(DDPMScheduler(num_train_timesteps=1000).config), 7, cfg, 10, 10, state=state)
if state.is_main_process:
    save_file({"images": out.images, "labels": out.labels}, sys.argv[2])
    calib.save(sys.argv[3])
state.wait_for_everyone()
# an undestroyed gloo group can abort a rank at exit ("terminate called without an active exception")
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_samples_of_one(tmp_path) -> None:
    pytest.importorskip("accelerate")
    torch.manual_seed(0)
    unet = make_unet(num_class_embeds=11)
    unet.save_pretrained(tmp_path / "unet")
    (tmp_path / "run.py").write_text(textwrap.dedent(SCRIPT))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(tmp_path / "run.py"), str(tmp_path / "unet"), str(tmp_path / "out.safetensors"),
           str(tmp_path / "calib")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = load_file(tmp_path / "out.safetensors")
    whole = sample(unet, SCHED, 7, CFG, num_classes=10, null_class=10, progress=False)
    assert torch.equal(got["images"], whole.images) and torch.equal(got["labels"], whole.labels)
    one = record_trajectories(unet, SCHED, 7, CFG, 10, 10, progress=False)
    assert _same_calib(CalibrationSet.load(tmp_path / "calib"), one)


def test_recorded_shards_concatenate_to_the_whole_recording() -> None:
    from adpdm.calib.data import concat

    torch.manual_seed(0)
    unet = make_unet(num_class_embeds=11)
    whole = record_trajectories(unet, SCHED, 7, CFG, 10, 10, progress=False)
    parts = [record_trajectories(unet, SCHED, n, CFG, 10, 10, progress=False, first=f) for f, n in shard(7, 3, 0, 1)]
    assert _same_calib(concat(parts), whole)
    assert _same_calib(record_distributed(unet, SCHED, 7, CFG, 10, 10), whole)


def _launch(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
           "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "--module", "adpdm.cli.main", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_sample_command_under_accelerate_launch_writes_the_one_process_grid(tmp_path) -> None:
    pytest.importorskip("accelerate")
    from adpdm.cli.main import main

    common = ["sample", "--model", "embedded:mnist", "--num", "4", "--steps", "2", "--batch-size", "2"]
    assert main([*common, "--out", str(tmp_path / "one.png")]) == 0
    proc = _launch(tmp_path, *common, "--out", str(tmp_path / "two.png"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "process 1/2 drew 2 samples" in proc.stderr  # the work was shared
    assert (tmp_path / "two.png").read_bytes() == (tmp_path / "one.png").read_bytes()
